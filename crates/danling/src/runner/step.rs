//! The optimizer step, in one place: forward and backward over a group of `accum_steps` global
//! batches (this rank's shard of each), the platform's all-reduce, then clipping, the non-finite
//! check, the optimizer and the scheduler. And the collective decisions the loops take between steps.

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use tracing::warn;

use super::train::Pending;
use super::{Platform, ReduceOp, Runner, RunnerError, StepOutput, Task, grads};
use crate::config::{NonFinite, Sections};
use crate::metrics::{AverageMeter, Metrics};
use crate::optim::LrScheduler;
use crate::signals::{self, Stop};

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// Rows in one global batch: `batch_size` on each rank.
    pub(super) fn global_batch(&self) -> usize {
        self.batch_size * self.platform.world_size().max(1)
    }

    /// One optimizer step over `group` (global batches of split `split`): this rank's shard of each
    /// is trained, its outputs pushed to `pending`. Returns the rows this rank trained.
    ///
    /// Each shard's loss is weighted by its share of the whole group's rows, so that the gradients
    /// summed over micro-batches and ranks are the gradient of the mean loss over the group, as one
    /// big batch on one process would give.
    pub(super) fn step(
        &mut self,
        split: usize,
        group: &[&[usize]],
        scheduler: &mut LrScheduler,
        pending: &mut Pending,
    ) -> Result<usize, RunnerError> {
        let device = self.platform.train_device();
        let group_rows: usize = group.iter().map(|rows| rows.len()).sum();
        let mut accumulator = GradientsAccumulator::new();
        let mut group_loss: Option<Tensor<1>> = None;
        let mut trained = 0;
        for global in group {
            let rows = self.platform.shard(global);
            device.seed(self.platform.step_seed(self.config.seed, self.state.iter));
            self.state.iter += 1;
            if rows.is_empty() {
                continue; // a last global batch with fewer rows than ranks
            }
            let batch = self.collate(split, rows, &device)?;
            let out: StepOutput = self.task.train_step(self.model(), &batch);
            let batch_loss = out.loss.clone().detach();
            group_loss = Some(match group_loss {
                Some(sum) => sum + batch_loss.clone(),
                None => batch_loss.clone(),
            });
            let gradients = if rows.len() == group_rows {
                out.loss.backward()
            } else {
                out.loss
                    .mul_scalar(rows.len() as f64 / group_rows as f64)
                    .backward()
            };
            accumulator.accumulate(self.model(), GradientsParams::from_grads(gradients, self.model()));
            pending.push(
                batch_loss,
                rows.len(),
                out.outputs.map(Tensor::detach),
                out.targets,
            );
            trained += rows.len();
        }
        let gradients = self
            .platform
            .all_reduce_gradients(self.model(), accumulator.grads());
        self.optimizer_step(gradients, group_loss, scheduler)?;
        Ok(trained)
    }

    /// Clipping, the non-finite check, the optimizer step and the scheduler step, once per group, on
    /// the all-reduced gradients.
    ///
    /// Reads one number back from the device: the sum of the group's losses and of a reduction of
    /// every gradient (the global norm when clipping by norm, else the plain sum), which is finite
    /// exactly when all of them are (barring a sum that overflows f32, which would be no trainable
    /// update either). Every rank takes the decision of all: one non-finite loss skips (or stops) the
    /// step everywhere.
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
        let mut flag = [f64::from(u8::from(!finite))];
        self.platform.all_reduce(&mut flag, ReduceOp::Max);
        if flag[0] > 0.0 {
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

    /// The stop signal any rank received, agreed by all (SIGTERM over SIGINT when both came).
    pub(super) fn stop_requested(&self) -> Option<Stop> {
        let local = signals::requested();
        if self.platform.world_size() <= 1 {
            return local;
        }
        let code = |stop: Option<Stop>| match stop {
            None => 0.0,
            Some(Stop::Interrupt) => 1.0,
            Some(Stop::Terminate) => 2.0,
        };
        let mut agreed = [code(local)];
        self.platform.all_reduce(&mut agreed, ReduceOp::Max);
        match agreed[0] {
            c if c >= 2.0 => Some(Stop::Terminate),
            c if c >= 1.0 => Some(Stop::Interrupt),
            _ => None,
        }
    }

    /// A split's loss and metrics over every rank's shard: the loss sums and counts added, the metric
    /// states gathered and merged in rank order, the same on every rank. The identity on one process.
    pub(super) fn merge_ranks(&self, loss: AverageMeter, metrics: Metrics) -> (AverageMeter, Metrics) {
        if self.platform.world_size() <= 1 {
            return (loss, metrics);
        }
        let mut sums = [loss.sum, loss.count];
        self.platform.all_reduce(&mut sums, ReduceOp::Sum);
        let merged_loss = AverageMeter {
            val: loss.val,
            sum: sums[0],
            count: sums[1],
        };
        let state = serde_json::to_vec(&metrics).unwrap_or_default();
        let mut merged: Option<Metrics> = None;
        for (rank, bytes) in self.platform.all_gather(state).into_iter().enumerate() {
            let theirs: Metrics = match serde_json::from_slice(&bytes) {
                Ok(theirs) => theirs,
                Err(error) => {
                    warn!("the metrics of rank {rank} cannot be read, left out: {error}");
                    continue;
                }
            };
            match &mut merged {
                Some(all) => {
                    all.merge(&theirs);
                }
                None => merged = Some(theirs),
            }
        }
        (merged_loss, merged.unwrap_or(metrics))
    }
}
