//! The step outputs the host has not read yet: what a step leaves for the epoch's loss and metrics,
//! read in batches so that a step never waits for the device.

use burn::tensor::Tensor;

use super::Targets;
use crate::metrics::{AverageMeter, MetricSet};

/// Losses and metric inputs of steps the host has not read yet. They are read at `log_interval`,
/// before a checkpoint and at the end of the split, in step order, so a step never waits for the
/// device and the averages are the same bits as if each step had been read at once.
#[derive(Default)]
pub(super) struct Pending {
    steps: Vec<(Tensor<1>, usize, Option<Tensor<2>>, Option<Targets>)>,
}

impl Pending {
    pub(super) fn push(
        &mut self,
        loss: Tensor<1>,
        samples: usize,
        outputs: Option<Tensor<2>>,
        targets: Option<Targets>,
    ) {
        self.steps.push((loss, samples, outputs, targets));
    }

    /// Micro-batches pushed and not read yet.
    pub(super) fn len(&self) -> usize {
        self.steps.len()
    }

    /// The sample-weighted mean loss of the micro-batches pushed since there were `start` (reads them
    /// from the device; NaN when there are none).
    pub(super) fn mean_since(&self, start: usize) -> f64 {
        let (mut sum, mut samples) = (0.0, 0.0);
        for (loss, n, ..) in self.steps.iter().skip(start) {
            sum += f64::from(loss.clone().into_scalar::<f32>()) * *n as f64;
            samples += *n as f64;
        }
        sum / samples
    }

    pub(super) fn flush(&mut self, loss: &mut AverageMeter, metrics: &mut MetricSet) {
        if self.steps.is_empty() {
            return;
        }
        let losses: Vec<Tensor<1>> = self.steps.iter().map(|(l, ..)| l.clone()).collect();
        // Read element by element in whatever dtype the device gave: a failed slice view cannot
        // drop the losses.
        let values = Tensor::cat(losses, 0).into_data();
        for ((_, samples, outputs, targets), value) in self.steps.drain(..).zip(values.iter::<f32>()) {
            loss.update(f64::from(value), samples as f64);
            if let (Some(outputs), Some(targets)) = (&outputs, &targets) {
                metrics.update_tensors(outputs, targets);
            }
        }
    }
}
