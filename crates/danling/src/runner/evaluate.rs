//! Evaluation and inference: a validation snapshot of the model over whole splits.

use std::time::Instant;

use super::adapt::host_f64;
use super::base::Predictions;
use super::report::{progress_bar, split_result};
use super::{Platform, Runner, RunnerError, Targets, Task};
use crate::config::Sections;
use crate::metrics::AverageMeter;
use crate::results::{Record, SplitResult};

/// What the averaged weights' results are called in a split: `ema_loss`, `ema_acc`.
pub const EMA_METRIC_PREFIX: &str = "ema_";

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// Evaluates the named splits (all evaluation splits when empty) with the current model.
    pub fn evaluate(&mut self, names: &[&str]) -> Result<Record, RunnerError> {
        let indices = if names.is_empty() {
            (0..self.splits.len())
                .filter(|&i| !self.splits[i].train)
                .collect()
        } else {
            names
                .iter()
                .map(|name| self.split_index(name))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut record = Record::new();
        for i in indices {
            let result = self.evaluate_split(i)?;
            record.insert(self.splits[i].name.clone(), result);
        }
        Ok(record)
    }

    /// Loss and metrics of one split, with those of the averaged weights beside them (`ema_loss`,
    /// `ema_{metric}`) in a run with `ema`.
    pub(super) fn evaluate_split(&self, split: usize) -> Result<SplitResult, RunnerError> {
        let mut result = self.evaluate_with(&self.eval_model(), split)?;
        if let Some(ema) = self.eval_ema() {
            let averaged = self.evaluate_with(&ema, split)?;
            for (name, value) in averaged {
                if !matches!(name.as_str(), "time" | "samples_per_s") {
                    result.insert(format!("{EMA_METRIC_PREFIX}{name}"), value);
                }
            }
        }
        Ok(result)
    }

    /// The outputs of `infer_step` for every sample of a split, in order.
    pub fn infer(&mut self, name: &str) -> Result<Predictions, RunnerError> {
        let i = self.split_index(name)?;
        let model = self.eval_model();
        let device = self.platform.device().clone();
        let mut predictions = Predictions::default();
        for rows in self.order(i, false).chunks(self.batch_size()) {
            let batch = self.collate(i, rows, &device)?;
            let out = self.task.infer_step(&model, &batch);
            if let Some(outputs) = out.outputs {
                predictions.width = outputs.dims()[1];
                predictions.outputs.extend(host_f64(outputs.into_data()));
            }
            match out.targets {
                Some(Targets::Classes(labels)) => {
                    predictions.target_width = 1;
                    predictions.targets.extend(host_f64(labels.into_data()));
                }
                Some(Targets::Values(values)) => {
                    predictions.target_width = values.dims()[1];
                    predictions.targets.extend(host_f64(values.into_data()));
                }
                None => {}
            }
        }
        Ok(predictions)
    }

    fn split_index(&self, name: &str) -> Result<usize, RunnerError> {
        self.splits
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| RunnerError::UnknownSplit {
                name: name.to_owned(),
                known: self
                    .splits
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Loss and metrics of one split with `model`, a validation snapshot.
    fn evaluate_with(&self, model: &T::Model, split: usize) -> Result<SplitResult, RunnerError> {
        let device = self.platform.device().clone();
        let mut metrics = self.task.metric_set();
        let mut loss = AverageMeter::default();
        let mut done = 0usize;
        let order = self.order(split, false);
        let bar = progress_bar(
            self.config.progress,
            self.batches(split),
            &format!("eval {}", self.splits[split].name),
        );
        let start = Instant::now();
        // Each rank evaluates its shard of every global batch; the results are over all of them.
        for global in order.chunks(self.global_batch()) {
            let rows = self.platform.shard(global);
            done += 1;
            bar.inc(1);
            if rows.is_empty() {
                continue;
            }
            let batch = self.collate(split, rows, &device)?;
            let out = self.task.evaluate_step(model, &batch);
            loss.update(f64::from(out.loss.into_scalar::<f32>()), rows.len() as f64);
            if let (Some(outputs), Some(targets)) = (&out.outputs, &out.targets) {
                metrics.update_tensors(outputs, targets);
            }
        }
        bar.finish_and_clear();
        let (loss, metrics) = self.merge_ranks(loss, metrics)?;
        let result = split_result(&loss, &metrics, &[], done, start.elapsed().as_secs_f64());
        Ok(result)
    }
}
