//! Feeding metrics from burn tensors, as the runner does: the adapter between the runner's outputs and
//! the metrics, which know nothing of burn (as burn-train's metric `Adaptor` sits with the learner).

use burn::tensor::{Tensor, TensorData};

use super::Targets;
use crate::metrics::{MetricKind, Metrics, TargetSlice};

impl Metrics {
    /// Adds a batch of model outputs `[n, k]` and targets. For binary metrics, two-column outputs are
    /// two logits and the positive class's probability is `sigmoid(l1 - l0)`; one column is taken as is.
    pub fn update_tensors(&mut self, outputs: &Tensor<2>, targets: &Targets) {
        if self.kind() == MetricKind::None {
            return;
        }
        let width = outputs.dims()[1];
        let mut preds = host_f64(outputs.clone().into_data());
        if self.kind() == MetricKind::Binary && width == 2 {
            preds = preds
                .chunks_exact(2)
                .map(|row| 1.0 / (1.0 + (row[0] - row[1]).exp()))
                .collect();
        }
        match targets {
            Targets::Classes(labels) => {
                let labels = host_i64(labels.clone().into_data());
                self.update(&preds, TargetSlice::Labels(&labels));
            }
            Targets::Values(values) => {
                let values = host_f64(values.clone().into_data());
                if matches!(self.kind(), MetricKind::Multilabel(_)) {
                    let labels: Vec<i64> = values.iter().map(|&v| v as i64).collect();
                    self.update(&preds, TargetSlice::Labels(&labels));
                } else {
                    self.update(&preds, TargetSlice::Values(&values));
                }
            }
        }
    }
}

/// A tensor's values on the host, as f64.
pub(super) fn host_f64(data: TensorData) -> Vec<f64> {
    data.convert::<f64>().try_to_vec::<f64>().unwrap_or_default()
}

fn host_i64(data: TensorData) -> Vec<i64> {
    data.convert::<i64>().try_to_vec::<i64>().unwrap_or_default()
}
