//! The training half of the loop: one pass over a train split in groups of `accum_steps`
//! micro-batches, and the optimizer step that ends each group.

use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use tracing::{info, warn};

use super::base::LATEST;
use super::base::{STEP_STREAM, mix};
use super::grads;
use super::report::{progress_bar, split_result, step_line};
use super::{EpochProgress, Runner, RunnerError, StepOutput, Targets, Task};
use crate::config::{NonFinite, Sections};
use crate::metrics::{AverageMeter, Metrics};
use crate::optim::LrScheduler;
use crate::results::{Record, SplitResult};
use crate::signals;
use crate::workspace::Workspace;

impl<T: Task, S: Sections> Runner<T, S> {
    /// One pass over a train split (or until the step `limit`), in groups of `accum_steps` batches.
    ///
    /// Returns the split's result and the number of samples trained in this call.
    ///
    /// Resumes the split from `state.progress` when a checkpoint was written inside it. Writes `latest`
    /// every `save_steps` optimizer steps, and when a stop signal arrives (then returns
    /// [`RunnerError::Interrupted`]).
    pub(super) fn train_epoch(
        &mut self,
        split: usize,
        scheduler: &mut LrScheduler,
        limit: Option<u64>,
        workspace: &Workspace,
        finished: &Record,
    ) -> Result<(SplitResult, usize), RunnerError> {
        let order = self.order(split, self.shuffle);
        let batches: Vec<&[usize]> = order.chunks(self.batch_size).collect();
        let label = format!("epoch {} {}", self.state.epoch + 1, self.splits[split].name);
        let bar = progress_bar(self.config.progress, batches.len(), &label);
        let device = self.platform.train_device();
        let log_interval = self.log_interval();
        let accum = self.config.accum_steps as usize;
        let (mut metrics, mut loss, skipped_before) = match self.state.progress.take() {
            Some(progress) if progress.split == split => {
                (progress.metrics, progress.loss, progress.skipped_before)
            }
            _ => {
                self.state.cursor = 0;
                (
                    Metrics::new(self.task.metrics(), self.metric_mode),
                    AverageMeter::default(),
                    self.state.skipped,
                )
            }
        };
        // Checkpoints are written between optimizer steps, so the cursor is at a group boundary; only
        // the split's last group may be short, so it counts whole when the cursor is past it.
        let resumed_groups = (self.state.cursor as usize).div_ceil(accum);
        bar.inc(self.state.cursor);
        let mut pending = Pending::default();
        let mut done = 0usize;
        let mut samples = 0usize;
        let start = Instant::now();

        for group in batches.chunks(accum).skip(resumed_groups) {
            if limit.is_some_and(|steps| self.state.step + self.state.skipped >= steps) {
                break;
            }
            let group_samples: usize = group.iter().map(|rows| rows.len()).sum();
            let mut accumulator = GradientsAccumulator::new();
            let mut group_loss: Option<Tensor<1>> = None;
            for rows in group {
                device.seed(mix(self.config.seed, STEP_STREAM, self.state.iter));
                let batch = self.collate(split, rows, &device)?;
                let out: StepOutput = self.task.train_step(self.model(), &batch);
                let batch_loss = out.loss.clone().detach();
                group_loss = Some(match group_loss {
                    Some(sum) => sum + batch_loss.clone(),
                    None => batch_loss.clone(),
                });
                // Weighting each micro-batch by its share of the group makes the accumulated gradient
                // the gradient of the mean loss over the whole group, as one big batch would give.
                let gradients = if rows.len() == group_samples {
                    out.loss.backward()
                } else {
                    out.loss
                        .mul_scalar(rows.len() as f64 / group_samples as f64)
                        .backward()
                };
                accumulator.accumulate(self.model(), GradientsParams::from_grads(gradients, self.model()));
                pending.push(
                    batch_loss,
                    rows.len(),
                    out.outputs.map(Tensor::detach),
                    out.targets,
                );
                done += 1;
                samples += rows.len();
                self.state.iter += 1;
                self.state.cursor += 1;
                bar.inc(1);
                if (self.state.cursor as usize).is_multiple_of(log_interval) {
                    pending.flush(&mut loss, &mut metrics);
                    let elapsed = start.elapsed();
                    let line = step_line(
                        &label,
                        self.state.cursor as usize,
                        batches.len(),
                        loss.avg(),
                        scheduler.lr(),
                        elapsed / done as u32,
                        loss.count / elapsed.as_secs_f64(),
                    );
                    bar.suspend(|| info!("{line}"));
                }
            }
            let stepped = self.optimizer_step(accumulator.grads(), group_loss, scheduler);
            // The pending outputs go into the live meters, not into copies: a checkpoint must not
            // change what the epoch reports, whenever it is written.
            let progress = |pending: &mut Pending, loss: &mut AverageMeter, metrics: &mut Metrics| {
                pending.flush(loss, metrics);
                EpochProgress {
                    split,
                    record: finished.clone(),
                    loss: *loss,
                    metrics: metrics.clone(),
                    skipped_before,
                }
            };
            if let Err(error @ RunnerError::NonFinite { .. }) = stepped {
                // `nonfinite: stop` keeps what was trained: the run can be inspected or resumed.
                let progress = progress(&mut pending, &mut loss, &mut metrics);
                self.save_full(workspace, scheduler, Some(progress), LATEST)?;
                return Err(error);
            }
            stepped?;
            let due = self
                .config
                .save_steps
                .is_some_and(|every| self.state.step.is_multiple_of(every));
            let stop = signals::requested();
            if due || stop.is_some() {
                let progress = progress(&mut pending, &mut loss, &mut metrics);
                self.save_full(workspace, scheduler, Some(progress.clone()), LATEST)?;
                if due {
                    let name = format!("step-{}", self.state.step);
                    self.save_full(workspace, scheduler, Some(progress), &name)?;
                    self.prune(workspace)?;
                }
            }
            if let Some(signal) = stop {
                bar.finish_and_clear();
                info!(
                    "stopped by {signal:?} at step {}; wrote the latest checkpoint",
                    self.state.step
                );
                return Err(RunnerError::Interrupted {
                    signal,
                    step: self.state.step,
                });
            }
        }
        pending.flush(&mut loss, &mut metrics);
        self.state.cursor = 0;
        bar.finish_and_clear();
        let extra = [
            ("lr", scheduler.lr()),
            ("skipped", (self.state.skipped - skipped_before) as f64),
        ];
        let result = split_result(&loss, &metrics, &extra, done, start.elapsed().as_secs_f64());
        Ok((result, samples))
    }

    /// Clipping, the non-finite check, the optimizer step and the scheduler step, once per group.
    ///
    /// Reads one number back from the device: the sum of the group's losses and of a reduction of
    /// every gradient (the global norm when clipping by norm, else the plain sum), which is finite
    /// exactly when all of them are (barring a sum that overflows f32, which would be no trainable
    /// update either).
    fn optimizer_step(
        &mut self,
        mut gradients: GradientsParams,
        group_loss: Option<Tensor<1>>,
        scheduler: &mut LrScheduler,
    ) -> Result<(), RunnerError> {
        let norm = match self.config.max_grad_norm {
            Some(_) => grads::global_norm(self.model(), &gradients),
            None => None,
        };
        let check = match &norm {
            Some(norm) => Some(norm.clone()),
            None => grads::sum(self.model(), &gradients),
        };
        let check = match (check, group_loss) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        let finite = check.is_none_or(|c| c.into_scalar::<f32>().is_finite());
        if !finite {
            return match self.config.nonfinite {
                NonFinite::Stop => Err(RunnerError::NonFinite {
                    step: self.state.step + 1,
                    epoch: self.state.epoch + 1,
                }),
                NonFinite::Skip => {
                    self.state.skipped += 1;
                    warn!(
                        "skipped a non-finite update at step {} ({} skipped so far)",
                        self.state.step + 1,
                        self.state.skipped
                    );
                    Ok(())
                }
            };
        }
        if let (Some(max_norm), Some(norm)) = (self.config.max_grad_norm, &norm) {
            grads::clip_norm(self.model(), &mut gradients, norm, max_norm);
        }
        if let Some(value) = self.config.max_grad_value {
            grads::clamp(self.model(), &mut gradients, value);
        }
        // Taken, not cloned: with the only handle on the parameters, the optimizer updates them in place.
        if let Some(model) = self.model.take() {
            self.model = Some(self.optimizer.step(scheduler.lr(), model, gradients));
        }
        scheduler.step();
        self.state.step += 1;
        Ok(())
    }
}

/// Losses and metric inputs of steps the host has not read yet. They are read at `log_interval`,
/// before a checkpoint and at the end of the split, in step order, so a step never waits for the
/// device and the averages are the same bits as if each step had been read at once.
#[derive(Default)]
struct Pending {
    steps: Vec<(Tensor<1>, usize, Option<Tensor<2>>, Option<Targets>)>,
}

impl Pending {
    fn push(
        &mut self,
        loss: Tensor<1>,
        samples: usize,
        outputs: Option<Tensor<2>>,
        targets: Option<Targets>,
    ) {
        self.steps.push((loss, samples, outputs, targets));
    }

    fn flush(&mut self, loss: &mut AverageMeter, metrics: &mut Metrics) {
        if self.steps.is_empty() {
            return;
        }
        let losses: Vec<Tensor<1>> = self.steps.iter().map(|(l, ..)| l.clone()).collect();
        let values = Tensor::cat(losses, 0).into_data().convert::<f32>();
        let values = values.as_slice::<f32>().unwrap_or_default();
        for ((_, samples, outputs, targets), value) in self.steps.drain(..).zip(values) {
            loss.update(f64::from(*value), samples as f64);
            if let (Some(outputs), Some(targets)) = (&outputs, &targets) {
                metrics.update_tensors(outputs, targets);
            }
        }
    }
}
