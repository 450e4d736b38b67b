//! The optimizer step, in one place: forward and backward over a group of `accum_steps` global
//! batches (this rank's shard of each), the platform's all-reduce, then clipping, the non-finite
//! check, the optimizer and the scheduler. And the collective decisions the loops take between steps.

use std::time::Instant;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{DType, FloatDType, Tensor};
use tracing::{debug, warn};

use super::pending::Pending;
use super::{Platform, ReduceOp, Runner, RunnerError, StepOutput, Task, grads, mixed};
use crate::config::{NonFinite, Sections};
use crate::data::Batches;
use crate::metrics::{AverageMeter, MetricSet, MetricStates};
use crate::optim::LrScheduler;
use crate::signals::{self, Stop};

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// Rows in one global batch: `batch_size` on each rank.
    pub(super) fn global_batch(&self) -> usize {
        self.batch_size() * self.platform.world_size().max(1)
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
        stream: &mut Batches<'_, T::Item>,
        scheduler: &mut LrScheduler,
        pending: &mut Pending,
    ) -> Result<usize, RunnerError> {
        let device = self.platform.train_device();
        let half = mixed::half(self.config.precision);
        let loss_scale = self.state.scaler.map(|scaler| scaler.scale);
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
            let fetching = Instant::now();
            let batch = self.next_batch(split, stream, rows.len(), &device)?;
            let computing = Instant::now();
            self.times.data += computing - fetching;
            if let Some(tokens) = self.task.tokens(&batch) {
                self.times.tokens += tokens;
            }
            // Mixed precision: a half-precision copy, cast inside the graph from the f32 master.
            let working = half.map(|dtype| mixed::cast(self.model().clone(), dtype));
            let out: StepOutput = self
                .task
                .train_step(working.as_ref().unwrap_or(self.model()), &batch);
            let batch_loss = out.loss.clone().detach();
            let loss_f32 = batch_loss.clone().cast(FloatDType::F32);
            group_loss = Some(match group_loss {
                Some(sum) => sum + loss_f32,
                None => loss_f32,
            });
            let share = rows.len() as f64 / group_rows as f64;
            let gradients = match loss_scale {
                // In f32, so that the scaled loss does not overflow before its backward pass.
                Some(scale) => out
                    .loss
                    .cast(FloatDType::F32)
                    .mul_scalar(share * scale)
                    .backward(),
                None if rows.len() == group_rows => out.loss.backward(),
                None => out.loss.mul_scalar(share).backward(),
            };
            accumulator.accumulate(self.model(), GradientsParams::from_grads(gradients, self.model()));
            pending.push(
                batch_loss,
                rows.len(),
                out.outputs.map(Tensor::detach),
                out.targets,
            );
            trained += rows.len();
            self.times.forward_backward += computing.elapsed();
        }
        let reducing = Instant::now();
        let gradients = self
            .platform
            .all_reduce_gradients(self.model(), accumulator.grads())?;
        let stepping = Instant::now();
        if self.platform.world_size() > 1 {
            self.times.all_reduce += stepping - reducing;
        }
        let updates = self.state.step;
        let stepped = self.optimizer_step(gradients, group_loss, scheduler);
        // The forward passes updated the buffers (BatchNorm's running statistics) whether or not
        // the update was taken: publish them, and give every rank rank 0's. A failed broadcast
        // comes first: it ends the job, where a non-finite stop is every rank's decision.
        self.publish_buffers()?;
        stepped?;
        // The average follows the updates taken (not the skipped ones), with the buffers published.
        if self.state.step > updates
            && let (Some(ema), Some(model)) = (self.ema.as_mut(), self.model.as_ref())
        {
            ema.update(model);
        }
        self.times.optimizer += stepping.elapsed();
        Ok(trained)
    }

    /// Publishes the buffers' pending updates and gives every rank rank 0's (`runner/buffers.rs`):
    /// between steps, the model holds exactly the state the next step uses.
    fn publish_buffers(&mut self) -> Result<(), RunnerError> {
        if let Some(model) = self.model.as_mut() {
            super::buffers::sync(model);
            self.platform.broadcast_buffers(model)?;
        }
        Ok(())
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
        gradients: GradientsParams,
        group_loss: Option<Tensor<1>>,
        scheduler: &mut LrScheduler,
    ) -> Result<(), RunnerError> {
        if let Some(scaler) = self.state.scaler {
            return self.scaled_optimizer_step(gradients, group_loss, scheduler, scaler);
        }
        let (norm, check) = self.gradient_check(&gradients);
        let check = match (check, group_loss) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        let finite = check.is_none_or(|c| c.into_scalar::<f32>().is_finite());
        let mut flag = [f64::from(u8::from(!finite))];
        self.platform.all_reduce(&mut flag, ReduceOp::Max)?;
        if flag[0] > 0.0 {
            return self.nonfinite();
        }
        self.update(gradients, norm, scheduler);
        Ok(())
    }

    /// The global norm when clipping by norm, and the reduction of every gradient that is finite
    /// exactly when they all are: that norm, else their plain sum.
    fn gradient_check(&self, gradients: &GradientsParams) -> (Option<Tensor<1>>, Option<Tensor<1>>) {
        let norm = match self.config.max_grad_norm {
            Some(_) => grads::global_norm(self.model(), gradients),
            None => None,
        };
        let check = match &norm {
            Some(norm) => Some(norm.clone()),
            None => grads::sum(self.model(), gradients),
        };
        (norm, check)
    }

    /// The optimizer step of an f16 run with loss scaling: the gradients are unscaled first; a
    /// non-finite loss is the `nonfinite` policy's, as without scaling, while gradients that
    /// overflowed only in f16 skip the update and halve the scale, as PyTorch's `GradScaler` does.
    fn scaled_optimizer_step(
        &mut self,
        mut gradients: GradientsParams,
        group_loss: Option<Tensor<1>>,
        scheduler: &mut LrScheduler,
        mut scaler: crate::state::LossScaler,
    ) -> Result<(), RunnerError> {
        grads::scale_by(self.model(), &mut gradients, 1.0 / scaler.scale);
        let (norm, check) = self.gradient_check(&gradients);
        // One read back: the loss sum and the gradients' reduction (zero where there is none).
        let device = self.platform.train_device();
        let zero = || Tensor::<1>::zeros([1], (&device, DType::F32));
        let values = Tensor::cat(
            vec![group_loss.unwrap_or_else(zero), check.unwrap_or_else(zero)],
            0,
        )
        .into_data()
        .convert::<f32>()
        // Read as `into_scalar` reads the unscaled check: a failed read is no non-finite step.
        .iter::<f32>()
        .collect::<Vec<f32>>();
        let loss_finite = values.first().is_some_and(|v| v.is_finite());
        let grads_finite = values.iter().all(|v| v.is_finite());
        let mut flags = [
            f64::from(u8::from(!loss_finite)),
            f64::from(u8::from(!grads_finite)),
        ];
        self.platform.all_reduce(&mut flags, ReduceOp::Max)?;
        if flags[0] > 0.0 {
            return self.nonfinite();
        }
        scaler.update(flags[1] > 0.0);
        self.state.scaler = Some(scaler);
        if flags[1] > 0.0 {
            debug!(
                "f16 gradients overflowed at step {}: update skipped, loss scale now {}",
                self.state.step + 1,
                scaler.scale
            );
            return Ok(());
        }
        self.update(gradients, norm, scheduler);
        Ok(())
    }

    /// What the `nonfinite` policy does with a non-finite update: stop, or skip it and count it.
    fn nonfinite(&mut self) -> Result<(), RunnerError> {
        match self.config.nonfinite {
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
        }
    }

    /// Clipping, the optimizer and the scheduler, on gradients known to be finite.
    fn update(
        &mut self,
        mut gradients: GradientsParams,
        norm: Option<Tensor<1>>,
        scheduler: &mut LrScheduler,
    ) {
        if let (Some(max_norm), Some(norm)) = (self.config.max_grad_norm, &norm) {
            grads::clip_norm(self.model(), &mut gradients, norm, max_norm);
        }
        if let Some(value) = self.config.max_grad_value {
            grads::clamp(self.model(), &mut gradients, value);
        }
        // Taken, not cloned: with the only handle on the parameters, the optimizer updates them in place.
        if let Some(model) = self.model.take() {
            let lr = self.groups.learning_rates(scheduler.lr());
            self.model = Some(self.optimizer.step(lr, model, gradients));
        }
        scheduler.step();
        self.state.step += 1;
    }

    /// The stop signal any rank received, agreed by all (a preemption over SIGTERM over SIGINT when
    /// several came).
    pub(super) fn stop_requested(&self) -> Result<Option<Stop>, RunnerError> {
        let local = signals::requested();
        if self.platform.world_size() <= 1 {
            return Ok(local);
        }
        let code = |stop: Option<Stop>| match stop {
            None => 0.0,
            Some(Stop::Interrupt) => 1.0,
            Some(Stop::Terminate) => 2.0,
            Some(Stop::Preempt) => 3.0,
        };
        let mut agreed = [code(local)];
        self.platform.all_reduce(&mut agreed, ReduceOp::Max)?;
        Ok(match agreed[0] {
            c if c >= 3.0 => Some(Stop::Preempt),
            c if c >= 2.0 => Some(Stop::Terminate),
            c if c >= 1.0 => Some(Stop::Interrupt),
            _ => None,
        })
    }

    /// A split's loss and metrics over every rank's shard: the loss sums and counts added, the metric
    /// states gathered and merged in rank order, the same on every rank. The identity on one process.
    pub(super) fn merge_ranks(
        &self,
        loss: AverageMeter,
        metrics: MetricSet,
    ) -> Result<(AverageMeter, MetricSet), RunnerError> {
        if self.platform.world_size() <= 1 {
            return Ok((loss, metrics));
        }
        let mut sums = [loss.sum, loss.count];
        self.platform.all_reduce(&mut sums, ReduceOp::Sum)?;
        let merged_loss = AverageMeter {
            val: loss.val,
            sum: sums[0],
            count: sums[1],
        };
        // JSON values always serialise.
        let state = serde_json::to_vec(&metrics.snapshot()).unwrap_or_default();
        let mut merged = self.task.metric_set();
        for (rank, bytes) in self.platform.all_gather(state)?.into_iter().enumerate() {
            let theirs: MetricStates = serde_json::from_slice(&bytes).map_err(|e| RunnerError::Metrics {
                rank,
                source: e.into(),
            })?;
            merged
                .merge(&theirs.0)
                .map_err(|source| RunnerError::Metrics { rank, source })?;
        }
        Ok((merged_loss, merged))
    }
}
