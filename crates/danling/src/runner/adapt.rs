//! Feeding metrics from burn tensors, as the runner does: the adapter between the runner's outputs and
//! the metrics, which know nothing of burn (as burn-train's metric `Adaptor` sits with the learner).
//! Each batch's outputs and targets are copied to the host once, for every metric of the set.

use burn::tensor::{Tensor, TensorData};

use super::Targets;
use crate::metrics::{MetricBatch, MetricSet, Metrics, TargetSlice};

/// A batch's outputs `[n, k]` and targets on the host, and the metrics fed from them.
fn with_host_batch(outputs: &Tensor<2>, targets: &Targets, feed: impl FnOnce(&MetricBatch<'_>)) {
    let width = outputs.dims()[1];
    let outputs = host_f64(outputs.clone().into_data());
    match targets {
        Targets::Classes(labels) => {
            let labels = host_i64(labels.clone().into_data());
            feed(&MetricBatch {
                outputs: &outputs,
                width,
                targets: TargetSlice::Labels(&labels),
            });
        }
        Targets::Values(values) => {
            let values = host_f64(values.clone().into_data());
            feed(&MetricBatch {
                outputs: &outputs,
                width,
                targets: TargetSlice::Values(&values),
            });
        }
    }
}

impl MetricSet {
    /// Adds a batch of model outputs `[n, k]` and targets to every metric (the host copy is made
    /// once). Nothing is copied for a set without metrics.
    pub fn update_tensors(&mut self, outputs: &Tensor<2>, targets: &Targets) {
        if self.is_empty() {
            return;
        }
        with_host_batch(outputs, targets, |batch| self.update(batch));
    }
}

impl Metrics {
    /// Adds a batch of model outputs `[n, k]` and targets ([`Metrics::update_batch`]).
    pub fn update_tensors(&mut self, outputs: &Tensor<2>, targets: &Targets) {
        if self.kind() == crate::metrics::MetricKind::None {
            return;
        }
        with_host_batch(outputs, targets, |batch| self.update_batch(batch));
    }
}

/// A tensor's values on the host, as f64: every one of them, element by element where its bytes
/// cannot be read at once (an empty vector would be a batch the metrics silently never see).
pub(super) fn host_f64(data: TensorData) -> Vec<f64> {
    let data = data.convert::<f64>();
    data.try_to_vec::<f64>()
        .unwrap_or_else(|_| data.iter::<f64>().collect())
}

fn host_i64(data: TensorData) -> Vec<i64> {
    let data = data.convert::<i64>();
    data.try_to_vec::<i64>()
        .unwrap_or_else(|_| data.iter::<i64>().collect())
}
