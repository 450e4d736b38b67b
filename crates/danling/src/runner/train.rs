//! The training half of the loop: one pass over a train split in groups of `accum_steps` global
//! batches, each group one optimizer step (`step.rs`), with the step checkpoints and log lines between
//! them.

use std::time::Instant;

use tracing::info;

use super::base::LATEST;
use super::pending::Pending;
use super::platform::all_gather_json;
use super::report::{progress_bar, split_result, step_line};
use super::session::Session;
use super::timing::Times;
use super::{EpochProgress, Platform, Runner, RunnerError, Task};
use crate::config::Sections;
use crate::data::Workers;
use crate::metrics::{AverageMeter, MetricSet, MetricStates};
use crate::optim::LrScheduler;
use crate::results::{Record, SplitResult};
use crate::signals::Stop;
use crate::state::RankProgress;
use crate::workspace::Point;

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// One pass over a train split (or until the step `limit`), in groups of `accum_steps` batches.
    ///
    /// Returns the split's result and the number of samples trained in this call.
    ///
    /// Resumes the split from `state.progress` when a checkpoint was written inside it. Writes `latest`
    /// every `save_steps` optimizer steps, and when a stop signal arrives (then returns
    /// [`RunnerError::Interrupted`]).
    pub(super) fn train_epoch(
        &mut self,
        workers: &Workers,
        split: usize,
        scheduler: &mut LrScheduler,
        limit: Option<u64>,
        session: &Session,
        finished: &Record,
    ) -> Result<(SplitResult, usize), RunnerError> {
        let order = self.order(split, self.config.data.shuffle);
        // Global batches: each rank trains its shard of every one.
        let batches: Vec<&[usize]> = order.chunks(self.global_batch()).collect();
        let label = format!("epoch {} {}", self.state.epoch + 1, self.splits[split].name);
        let bar = progress_bar(self.config.progress, batches.len(), &label);
        let log_interval = self.log_interval();
        let accum = self.config.accum_steps as usize;
        // `cursor`: the batches of this split trained so far.
        let (mut metrics, mut loss, skipped_before, mut cursor) = match self.state.progress.take() {
            Some(progress) if progress.split == split => {
                self.hooks.scalars = progress.scalars.clone();
                let (loss, metrics) = self.own_progress(progress.loss, progress.metrics, progress.ranks)?;
                (metrics, loss, progress.skipped_before, progress.cursor as usize)
            }
            _ => (
                self.task.metric_set(),
                AverageMeter::default(),
                self.state.skipped,
                0,
            ),
        };
        // Checkpoints are written between optimizer steps, so the cursor is at a group boundary; only
        // the split's last group may be short, so it counts whole when the cursor is past it.
        let resumed_groups = cursor.div_ceil(accum);
        // This rank's shard of every batch left, in the order the steps read them.
        let shards: Vec<Vec<usize>> = batches
            .chunks(accum)
            .skip(resumed_groups)
            .flatten()
            .map(|global| self.platform.shard(global).to_vec())
            .filter(|rows| !rows.is_empty())
            .collect();
        let mut stream = self.stream(workers, split, shards);
        self.times = Times::default();
        bar.inc(cursor as u64);
        let mut pending = Pending::default();
        let mut done = 0usize;
        let mut samples = 0usize;
        let start = Instant::now();
        // The samples of the split before a resume are not this attempt's: its rate leaves them out.
        let counted_before = loss.count;

        for group in batches.chunks(accum).skip(resumed_groups) {
            if limit.is_some_and(|steps| self.state.attempts() >= steps) {
                break;
            }
            let cursor_before = cursor;
            let (lr, step_before, pending_before) = (scheduler.lr(), self.state.step, pending.len());
            let stepped = self.step(split, group, &mut stream, scheduler, &mut pending);
            if stepped.is_ok() {
                // Before a log line reads the pending losses: the step's are the last ones.
                let updated = self.state.step > step_before;
                let loss_of_step = || pending.mean_since(pending_before);
                self.step_event(lr, updated, &loss_of_step);
            }
            cursor += group.len();
            done += group.len();
            bar.inc(group.len() as u64);
            // A log line when the group passed a multiple of `log_interval` batches.
            if cursor_before / log_interval != cursor / log_interval {
                pending.flush(&mut loss, &mut metrics);
                let elapsed = start.elapsed();
                let line = step_line(
                    &label,
                    cursor,
                    batches.len(),
                    loss.avg(),
                    scheduler.lr(),
                    elapsed / done.max(1) as u32,
                    (loss.count - counted_before) / elapsed.as_secs_f64(),
                );
                bar.suspend(|| info!("{line}"));
                let (step, epoch, name) = (self.state.step, self.state.epoch, &self.splits[split].name);
                session.log_points(&[
                    Point::now(step, epoch, name, "step_loss", loss.avg()),
                    Point::now(step, epoch, name, "step_lr", scheduler.lr()),
                ])?;
            }
            // The pending outputs go into the live meters, not into copies: a checkpoint must not
            // change what the epoch reports, whenever it is written.
            let progress = |pending: &mut Pending, loss: &mut AverageMeter, metrics: &mut MetricSet| {
                pending.flush(loss, metrics);
                EpochProgress {
                    split,
                    cursor: cursor as u64,
                    record: finished.clone(),
                    loss: *loss,
                    metrics: metrics.snapshot(),
                    skipped_before,
                    ranks: Vec::new(),
                    scalars: Record::new(),
                }
            };
            let trained = match stepped {
                Err(error @ RunnerError::NonFinite { .. }) => {
                    // `nonfinite: stop` keeps what was trained: the run can be inspected or resumed.
                    let mut progress = self.with_ranks(progress(&mut pending, &mut loss, &mut metrics))?;
                    progress.scalars = self.hooks.scalars.clone();
                    self.save_full(session, scheduler, Some(progress), LATEST)?;
                    return Err(error);
                }
                stepped => stepped?,
            };
            samples += trained;
            let callback_stop = match self.hooks.is_empty() {
                true => None,
                false => {
                    let local = self.hooks.take_stop();
                    self.agreed_callback_stop(local)?
                }
            };
            let due = self
                .config
                .save_steps
                .is_some_and(|every| self.state.step.is_multiple_of(every));
            let stop = self.stop_requested()?;
            if due || stop.is_some() || callback_stop.is_some() {
                let saving = Instant::now();
                let mut progress = self.with_ranks(progress(&mut pending, &mut loss, &mut metrics))?;
                progress.scalars = self.hooks.scalars.clone();
                self.save_full(session, scheduler, Some(progress.clone()), LATEST)?;
                if due {
                    let name = format!("step-{}", self.state.step);
                    self.save_full(session, scheduler, Some(progress), &name)?;
                    self.prune(session)?;
                }
                self.times.checkpoint += saving.elapsed();
            }
            if let Some(reason) = callback_stop {
                bar.finish_and_clear();
                info!(
                    "stopped by a callback at step {}: {reason}; wrote the latest checkpoint",
                    self.state.step
                );
                return Err(RunnerError::CallbackStop {
                    reason,
                    step: self.state.step,
                });
            }
            if let Some(signal) = stop {
                bar.finish_and_clear();
                match signal {
                    Stop::Preempt => info!(
                        "preempted at step {}; wrote the latest checkpoint",
                        self.state.step
                    ),
                    _ => info!(
                        "stopped by {signal:?} at step {}; wrote the latest checkpoint",
                        self.state.step
                    ),
                }
                return Err(RunnerError::Interrupted {
                    signal,
                    step: self.state.step,
                });
            }
        }
        pending.flush(&mut loss, &mut metrics);
        bar.finish_and_clear();
        // Every rank trained its part of each batch: the split's loss and metrics are over all of them.
        let (loss, metrics) = self.merge_ranks(loss, metrics)?;
        let extra = [
            ("lr", scheduler.lr()),
            ("skipped", (self.state.skipped - skipped_before) as f64),
        ];
        let wall = start.elapsed().as_secs_f64();
        let mut result = split_result(&loss, &metrics, &extra, done, wall);
        result.extend(self.times.results(wall));
        Ok((result, samples))
    }
}

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// `progress` (this rank's) with the other ranks' loss and metrics beside it, for a checkpoint.
    /// Every rank calls it at the same step; a rank whose progress cannot be read fails the gather,
    /// never drops out of the checkpoint.
    fn with_ranks(&self, mut progress: EpochProgress) -> Result<EpochProgress, RunnerError> {
        if self.platform.world_size() <= 1 {
            return Ok(progress);
        }
        let mine = RankProgress {
            loss: progress.loss,
            metrics: progress.metrics.clone(),
        };
        let all = all_gather_json(&self.platform, "the epoch's progress", &mine)?;
        progress.ranks = all.into_iter().skip(1).collect();
        Ok(progress)
    }

    /// This rank's part of a checkpoint's split in progress: its own loss and metrics when the
    /// checkpoint had as many ranks; otherwise (another world size) rank 0 takes every rank's, merged,
    /// and the others start afresh, so that the split's result over all ranks is the same.
    fn own_progress(
        &self,
        loss: AverageMeter,
        metrics: MetricStates,
        ranks: Vec<RankProgress>,
    ) -> Result<(AverageMeter, MetricSet), RunnerError> {
        let (rank, world) = (self.platform.rank(), self.platform.world_size());
        let restore = |from: usize, states: &MetricStates, into: &mut MetricSet| {
            into.merge(&states.0)
                .map_err(|source| RunnerError::Metrics { rank: from, source })
        };
        let mut set = self.task.metric_set();
        if ranks.len() + 1 == world {
            return match rank {
                0 => restore(0, &metrics, &mut set).map(|()| (loss, set)),
                r => match ranks.into_iter().nth(r - 1) {
                    Some(own) => restore(r, &own.metrics, &mut set).map(|()| (own.loss, set)),
                    None => Ok((AverageMeter::default(), set)),
                },
            };
        }
        if rank != 0 {
            return Ok((AverageMeter::default(), set));
        }
        let mut merged = loss;
        restore(0, &metrics, &mut set)?;
        for (i, other) in ranks.iter().enumerate() {
            merged.merge(&other.loss);
            restore(i + 1, &other.metrics, &mut set)?;
        }
        Ok((merged, set))
    }
}
