//! `train`: the epochs of a run, from where it resumes to the end of its budget or early stopping,
//! with the run's files opened around them.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use tracing::{info, warn};

use super::base::{LATEST, Trained};
use super::report::epoch_line;
use super::session::{Role, Session};
use super::{Platform, ReduceOp, Runner, RunnerError, Task};
use crate::config::{Budget, Precision, Sections};
use crate::log::Console;
use crate::optim::LrScheduler;
use crate::results::{Record, ScoreMode};
use crate::workspace::{RunState, StartMode};

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// Trains for the configured budget, evaluating after each epoch, writing results and checkpoints.
    ///
    /// Unless [`handle_signals(false)`](Runner::handle_signals) was set, SIGINT and SIGTERM stop the
    /// run gracefully: the step in progress finishes, `latest` is written, `status.json` says
    /// `stopped`, and `train` returns [`RunnerError::Interrupted`] (exit with its signal's
    /// [`exit_code`](crate::signals::Stop::exit_code)). A second signal exits at once.
    pub fn train(&mut self) -> Result<Trained, RunnerError> {
        if self.handle_signals {
            crate::signals::install().map_err(RunnerError::Signals)?;
        }
        let mut session = None;
        let trained = self.train_loop(&mut session);
        // Every checkpoint is on disk when training returns, whichever way it ends, and no rank
        // returns before rank 0 has written them. A failure of this rank alone returns at once: the
        // other ranks are not at this barrier, and the program ends the whole job
        // ([`super::end_world`]).
        let written = self.finish_writes();
        let trained = match written {
            Ok(()) => trained,
            Err(error) => trained.and(Err(error)),
        };
        if let Some(session) = &mut session {
            let (state, reason) = match &trained {
                Ok(Trained {
                    stopped: Some(reason),
                    ..
                }) => (RunState::Stopped, reason.clone()),
                Ok(trained) if trained.stopped_early => (RunState::Finished, "early stopping".to_owned()),
                Ok(_) => (RunState::Finished, "budget".to_owned()),
                Err(RunnerError::Interrupted { signal, step }) => {
                    (RunState::Stopped, format!("{signal:?} at step {step}"))
                }
                Err(error) => (RunState::Failed, error.to_string()),
            };
            if let Err(error) = session.finish(state, Some(reason)) {
                warn!("{error}");
            }
        }
        drop(session);
        let outcome = match &trained {
            Ok(Trained { stopped: Some(_), .. }) | Err(RunnerError::Interrupted { .. }) => "stopped",
            Ok(_) => "finished",
            Err(_) => "failed",
        };
        let end = super::callback::RunEnd {
            step: self.state.step,
            outcome,
        };
        for callback in &mut self.callbacks {
            callback.on_run_end(&end);
        }
        if trained.as_ref().is_err_and(|error| !error.is_collective()) {
            return trained;
        }
        self.platform.barrier()?;
        trained
    }

    /// The run, with the attempt's files opened into `slot` (so that `train` can record how it ended
    /// before they close).
    fn train_loop(&mut self, slot: &mut Option<Session>) -> Result<Trained, RunnerError> {
        let train: Vec<usize> = (0..self.splits.len()).filter(|&i| self.splits[i].train).collect();
        if train.is_empty() {
            return Err(RunnerError::NoTrainSplit);
        }
        if let Some(name) = self.task.metric_set().clash() {
            return Err(RunnerError::MetricName(name));
        }
        // The config and the program agree on the optimizer (an error names what to change), and
        // every parameter group finds its parameters.
        let names = crate::checkpoint::path::trainable_names(self.model());
        self.groups =
            crate::optim::ParamGroups::resolve(&self.config.optim, names).map_err(RunnerError::Optimizer)?;
        let fresh = self.fresh_optimizer()?;
        if !self.groups.is_empty() {
            self.optimizer = fresh;
        }
        if let Some(split) = train
            .iter()
            .map(|&i| &self.splits[i])
            .find(|s| s.dataset.is_empty())
        {
            return Err(RunnerError::EmptySplit {
                split: split.name.clone(),
            });
        }
        // Files load before the run directory is touched, so a bad one leaves nothing behind.
        // Precedence: `checkpoint` > `resume` > `pretrained`.
        let (resume_from, resume_warnings) = self.resume_source()?;
        self.ema = None;
        let mut restored = None;
        let pretrained = self.config.pretrained.clone().filter(|_| resume_from.is_none());
        if let Some(path) = &resume_from {
            restored = Some(self.restore(path)?);
        } else if let Some(path) = &pretrained {
            self.load_weights(path)?;
        }
        // The average starts at the weights the run starts from, unless the checkpoint kept one.
        let fresh_average = match (&self.config.ema, &self.ema) {
            (Some(config), None) => {
                self.ema = Some(super::ema::Ema::new(config.decay, self.model().valid()));
                resume_from.is_some()
            }
            _ => false,
        };
        // An f16 run scales its loss; a checkpoint of another precision carries no scaler, or one
        // this run has no use for.
        self.state.scaler = match self.config.precision {
            Precision::F16 => Some(self.state.scaler.unwrap_or_default()),
            Precision::F32 | Precision::Bf16 => None,
        };
        let role = Role {
            is_main: self.platform.is_main(),
            // The other ranks print only their warnings and errors, named by rank.
            console: match self.platform.rank() {
                0 => self.console,
                rank => Console::Rank(rank),
            },
            world_size: self.platform.world_size(),
            device: Some(self.platform.kind()),
        };
        let mode = StartMode::from_config(&self.config, self.overwrite);
        let continued = resume_from.as_deref().map(|path| (path, self.state.step));
        let session = slot.insert(Session::open_continued(
            &self.config,
            self.identity.clone(),
            mode,
            role,
            continued,
        )?);
        // A metric says whether higher is better: the default `score_mode` of its name.
        let score_name = &self.config.score_name;
        let scored = match self.config.ema {
            Some(_) => score_name
                .strip_prefix(super::EMA_METRIC_PREFIX)
                .unwrap_or(score_name),
            None => score_name,
        };
        let higher = self.task.metric_set().higher_is_better(scored);
        if let (None, Some(higher)) = (self.config.score_mode, higher) {
            session.set_score_mode(if higher { ScoreMode::Max } else { ScoreMode::Min });
        }
        for warning in resume_warnings {
            warn!("{warning}");
        }
        if fresh_average {
            info!("the checkpoint holds no averaged weights (ema): the average starts at its weights");
        }
        if let Some((_, _, Some(note))) = &restored {
            info!("{note}");
        }
        // Continued from another run dir's checkpoint (or under another id).
        let moved = restored.as_ref().is_some_and(|(_, source, _)| {
            source.id != self.identity.id || !same_dir(&source.dir, &self.identity.dir)
        });
        if let (Some(path), Some((_, source, _))) = (&resume_from, &restored) {
            info!(
                "resuming from {} at epoch {}, step {}",
                path.display(),
                self.state.epoch,
                self.state.step
            );
            if source.id != self.identity.id {
                info!(
                    "the config differs from that of run {} in hashed keys: continuing it as the new \
                     run {}, with its results history",
                    source.id, self.identity.id
                );
            } else if !same_dir(&source.dir, &self.identity.dir) {
                info!(
                    "run {} continues in {}, with its results history (the checkpoint names {})",
                    self.identity.id,
                    self.identity.dir.display(),
                    source.dir.display()
                );
            }
        } else if self.config.resume {
            warn!(
                "resume: true, but {} has no latest checkpoint: starting fresh",
                self.identity.checkpoint_dir.display()
            );
        }
        if let Some((results, ..)) = restored {
            session.restore(results).map_err(RunnerError::Save)?;
        }
        if let Some(path) = pretrained {
            info!("loaded pretrained weights from {}", path.display());
        }

        let batches_per_epoch: u64 = train.iter().map(|&i| self.batches(i) as u64).sum();
        let steps_per_epoch = batches_per_epoch.div_ceil(self.config.accum_steps);
        let budget = self.config.budget();
        let total_steps = match budget {
            Budget::Epochs(epochs) => epochs * steps_per_epoch,
            Budget::Steps(steps) => steps,
        };
        let mut scheduler = LrScheduler::new(&self.config.sched, self.config.optim.lr, total_steps)?;
        scheduler.set_steps_taken(self.state.step);
        self.restore_callbacks()?;
        if moved {
            // The new run dir holds the state it continues from before anything else, so that it can
            // be resumed on its own (and has a `latest` even when there was nothing left to train).
            let progress = self.state.progress.clone();
            self.save_full(session, &scheduler, progress, LATEST)?;
        }
        info!(
            "run {} in {}: {} optimizer steps ({} per epoch), device {}{}",
            self.identity.id,
            session.dir().map(|d| d.display().to_string()).unwrap_or_default(),
            total_steps,
            steps_per_epoch,
            self.platform.description(),
            match self.config.precision {
                Precision::F32 => String::new(),
                Precision::F16 => ", precision f16 (f32 master weights, dynamic loss scaling)".to_owned(),
                Precision::Bf16 => ", precision bf16 (f32 master weights)".to_owned(),
            }
        );

        let mut control = super::Control::default();
        let mut callbacks = std::mem::take(&mut self.callbacks);
        let run = super::callback::RunStart {
            model: self.model(),
            epoch: self.state.epoch,
            step: self.state.step,
            total_steps,
        };
        for callback in &mut callbacks {
            callback.on_run_start(&run, &mut control);
        }
        self.callbacks = callbacks;
        control.take_scalars(&mut self.scalars);
        self.callback_stop = self.callback_stop.take().or(control.stop);

        // A run that early stopping ended stays ended when resumed.
        let mut stopped_early = session
            .results()
            .should_stop(session.scoring(), self.config.patience);
        let mut stopped = None;
        let start = Instant::now();
        let mut trained_samples = 0usize;
        // An epoch in progress is finished (evaluated and recorded) even when its last step spent
        // the budget: a step budget can end inside an epoch, after the step checkpoint.
        'epochs: while !stopped_early && (self.state.progress.is_some() || !self.budget_spent(budget)) {
            let epoch = self.state.epoch;
            let limit = match budget {
                Budget::Steps(steps) => Some(steps),
                Budget::Epochs(_) => None,
            };
            let (mut record, first) = match &self.state.progress {
                Some(progress) => (progress.record.clone(), progress.split),
                None => (Record::new(), 0),
            };
            for &i in train.iter().filter(|&&i| i >= first) {
                let (result, samples) = match self.train_epoch(i, &mut scheduler, limit, session, &record) {
                    Err(RunnerError::CallbackStop { reason, .. }) => {
                        stopped = Some(reason);
                        break 'epochs;
                    }
                    other => other?,
                };
                trained_samples += samples;
                record.insert(self.splits[i].name.clone(), result);
            }
            for i in (0..self.splits.len()).filter(|&i| !self.splits[i].train) {
                let result = self.evaluate_split(i)?;
                record.insert(self.splits[i].name.clone(), result);
            }
            self.state.epoch = epoch + 1;
            let index = match budget {
                Budget::Epochs(_) => self.state.epoch,
                Budget::Steps(_) => self.state.step,
            };
            let evaluation_stop = self.evaluation_event(index, &mut record)?;
            let label = match budget {
                Budget::Epochs(epochs) => format!("epoch {}/{epochs}", self.state.epoch),
                Budget::Steps(steps) => format!("step {}/{steps}", self.state.step),
            };
            let (recorded, results) = session
                .record_deferred(index, record.clone())
                .map_err(RunnerError::saving)?;
            self.save_checkpoints(session, &scheduler, recorded.is_best, results)?;
            info!("{}", epoch_line(&label, &record, recorded.is_best));
            if recorded.should_stop {
                info!(
                    "early stopping: {} evaluations without improvement",
                    session.results().stale_count(session.scoring())
                );
                stopped_early = true;
                break;
            }
            if let Some(reason) = self.agreed_callback_stop(evaluation_stop)? {
                info!("stopped by a callback after {label}: {reason}");
                stopped = Some(reason);
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        // Samples over every rank.
        let mut total = [trained_samples as f64];
        self.platform.all_reduce(&mut total, ReduceOp::Sum)?;
        let trained_samples = total[0] as usize;
        let reducing = match self.platform.world_size() {
            1 => String::new(),
            ranks => {
                let reduce = self.platform.gradient_reduce_time().as_secs_f64();
                format!(
                    "; {ranks} ranks, the gradient all-reduce {reduce:.3} s ({:.1}% of the time)",
                    100.0 * reduce / seconds
                )
            }
        };
        let scaling = match self.state.scaler {
            Some(scaler) => format!(
                "; f16 loss scale {} after {} overflowed updates",
                scaler.scale, scaler.overflows
            ),
            None => String::new(),
        };
        info!(
            "trained {trained_samples} samples in {seconds:.3} s ({:.0} samples/s, evaluation and \
             checkpoints included{reducing}{scaling})",
            trained_samples as f64 / seconds
        );
        let results = session.results().clone();
        let best = results.best(session.scoring()).map(|(index, _)| index);
        Ok(Trained {
            dir: session.dir().map(Path::to_owned),
            results,
            best,
            state: self.state.clone(),
            stopped_early,
            stopped,
        })
    }

    fn budget_spent(&self, budget: Budget) -> bool {
        match budget {
            Budget::Epochs(epochs) => self.state.epoch >= epochs,
            Budget::Steps(steps) => self.state.attempts() >= steps,
        }
    }
}

/// Whether two run directories are one, as far as the file system can tell.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
