//! Evaluation and inference: a validation snapshot of the model over whole splits.

use std::time::Instant;

use super::adapt::host_f64;
use super::base::Predictions;
use super::report::{progress_bar, split_result};
use super::{Platform, Runner, RunnerError, Targets, Task};
use crate::config::Sections;
use crate::data::Workers;
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
        let workers = self.start_workers()?;
        let mut record = Record::new();
        for i in indices {
            let result = self.evaluate_split(&workers, i)?;
            record.insert(self.splits[i].name.clone(), result);
        }
        Ok(record)
    }

    /// Loss and metrics of one split, with those of the averaged weights beside them (`ema_loss`,
    /// `ema_{metric}`) in a run with `ema`.
    pub(super) fn evaluate_split(&self, workers: &Workers, split: usize) -> Result<SplitResult, RunnerError> {
        // One pass for both models: each batch is fetched and collated once.
        let models: Vec<T::Model> = std::iter::once(self.eval_model())
            .chain(self.eval_ema())
            .collect();
        let mut results = self.evaluate_with(workers, &models, split)?.into_iter();
        let mut result = results.next().unwrap_or_default();
        for (name, value) in results.next().unwrap_or_default() {
            if !crate::results::is_wall_clock(&name) {
                result.insert(format!("{EMA_METRIC_PREFIX}{name}"), value);
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
        let workers = self.start_workers()?;
        let batches: Vec<Vec<usize>> = self
            .order(i, false)
            .chunks(self.batch_size())
            .map(<[usize]>::to_vec)
            .collect();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let mut stream = self.stream(&workers, i, batches);
        for rows in sizes {
            let batch = self.next_batch(i, &mut stream, rows, &device)?;
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

    /// Loss and metrics of one split for each of `models` (validation snapshots), in one pass over
    /// its batches.
    fn evaluate_with(
        &self,
        workers: &Workers,
        models: &[T::Model],
        split: usize,
    ) -> Result<Vec<SplitResult>, RunnerError> {
        let device = self.platform.device().clone();
        let mut meters: Vec<(AverageMeter, _)> = models
            .iter()
            .map(|_| (AverageMeter::default(), self.task.metric_set()))
            .collect();
        let order = self.order(split, false);
        let bar = progress_bar(
            self.config.progress,
            self.batches(split),
            &format!("eval {}", self.splits[split].name),
        );
        let start = Instant::now();
        // Each rank evaluates its shard of every global batch; the results are over all of them.
        let shards: Vec<Vec<usize>> = order
            .chunks(self.global_batch())
            .map(|global| self.platform.shard(global).to_vec())
            .collect();
        let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
        let mut stream = self.stream(
            workers,
            split,
            shards.into_iter().filter(|r| !r.is_empty()).collect(),
        );
        for &rows in &sizes {
            bar.inc(1);
            if rows == 0 {
                continue;
            }
            let batch = self.next_batch(split, &mut stream, rows, &device)?;
            for (model, (loss, metrics)) in models.iter().zip(&mut meters) {
                let out = self.task.evaluate_step(model, &batch);
                loss.update(f64::from(out.loss.into_scalar::<f32>()), rows as f64);
                if let (Some(outputs), Some(targets)) = (&out.outputs, &out.targets) {
                    metrics.update_tensors(outputs, targets);
                }
            }
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        meters
            .into_iter()
            .map(|(loss, metrics)| {
                let (loss, metrics) = self.merge_ranks(loss, metrics)?;
                Ok(split_result(&loss, &metrics, &[], sizes.len(), seconds))
            })
            .collect()
    }
}
