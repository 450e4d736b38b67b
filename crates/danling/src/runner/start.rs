//! How a training run starts: the checks that need no file, the state it starts from (a checkpoint,
//! pretrained weights or nothing), the attempt's files, and the plan of its steps. Everything here
//! happens once per `train`, before the first step; `fit.rs` runs the epochs.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use tracing::{info, warn};

use super::base::LATEST;
use super::ema::Ema;
use super::session::{Role, Session};
use super::timing::Times;
use super::{Platform, Runner, RunnerError, Task};
use crate::config::{Budget, Precision, Resume, Sections};
use crate::identity::Identity;
use crate::log::Console;
use crate::optim::{LrScheduler, ParamGroups};
use crate::results::{Results, ScoreMode};
use crate::workspace::{Keep, StartMode};

/// What the epochs of a run follow: its train splits, its budget, and the scheduler.
pub(super) struct Plan {
    pub(super) train: Vec<usize>,
    pub(super) budget: Budget,
    pub(super) scheduler: LrScheduler,
    pub(super) start: Instant,
    /// Where the train splits' time went, over the whole call, and their wall time in seconds.
    pub(super) times: Times,
    pub(super) train_wall: f64,
}

/// The state a run starts from, loaded before any file of the run is touched.
pub(super) struct Start {
    /// The checkpoint resumed from, with its results, the identity that wrote it and a note.
    resumed: Option<(PathBuf, Results, Identity, Option<String>)>,
    pretrained: Option<PathBuf>,
    warnings: Vec<String>,
    /// The average starts afresh at a checkpoint that held none.
    fresh_average: bool,
}

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// The checks that need no file: a train split, none empty, metric names that do not clash,
    /// and an optimizer the config and the program agree on, whose groups all find parameters.
    /// Returns the train splits.
    pub(super) fn check_ready(&mut self) -> Result<Vec<usize>, RunnerError> {
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
        self.groups = ParamGroups::resolve(&self.config.optim, names).map_err(RunnerError::Optimizer)?;
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
        Ok(train)
    }

    /// Loads what the run starts from, before the run directory is touched, so that a bad file
    /// leaves nothing behind. Precedence: `checkpoint` > `resume` > `pretrained`.
    pub(super) fn load_start(&mut self) -> Result<Start, RunnerError> {
        let (resume_from, warnings) = self.resume_source()?;
        self.ema = None;
        let mut resumed = None;
        let pretrained = self.config.pretrained.clone().filter(|_| resume_from.is_none());
        if let Some(path) = resume_from {
            let (results, source, note) = self.restore(&path)?;
            resumed = Some((path, results, source, note));
        } else if let Some(path) = &pretrained {
            self.load_weights(path)?;
        }
        // The average starts at the weights the run starts from, unless the checkpoint kept one.
        let fresh_average = match (&self.config.ema, &self.ema) {
            (Some(config), None) => {
                self.ema = Some(Ema::new(config.decay, self.model().valid()));
                resumed.is_some()
            }
            _ => false,
        };
        // An f16 run scales its loss; a checkpoint of another precision carries no scaler, or one
        // this run has no use for.
        self.state.scaler = match self.config.precision {
            Precision::F16 => Some(self.state.scaler.unwrap_or_default()),
            Precision::F32 | Precision::Bf16 => None,
        };
        Ok(Start {
            resumed,
            pretrained,
            warnings,
            fresh_average,
        })
    }

    /// Opens the attempt's files (run directory, `runner.yaml`, `run.log`, TensorBoard, results) and
    /// tells the log where the run starts from.
    pub(super) fn open_session(&mut self, start: &Start) -> Result<Session, RunnerError> {
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
        let continued = start
            .resumed
            .as_ref()
            .map(|(path, ..)| (path.as_path(), self.state.step));
        let mut session =
            Session::open_continued(&self.config, self.identity.clone(), mode, role, continued)?;
        // A metric says whether higher is better: the default `score_mode` of its name (the
        // average's `ema_{metric}` as the metric's).
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
        for warning in &start.warnings {
            warn!("{warning}");
        }
        if start.fresh_average {
            info!("the checkpoint holds no averaged weights (ema): the average starts at its weights");
        }
        match &start.resumed {
            Some((path, results, source, note)) => {
                if let Some(note) = note {
                    info!("{note}");
                }
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
                session.restore(results.clone()).map_err(RunnerError::Save)?;
            }
            None => match self.config.resume {
                Resume::On => warn!(
                    "resume: true, but {} has no latest checkpoint: starting fresh",
                    self.identity.checkpoint_dir.display()
                ),
                Resume::Auto => info!(
                    "resume: auto, and {} holds no checkpoint: starting fresh",
                    self.identity.checkpoint_dir.display()
                ),
                Resume::Off => {}
            },
        }
        if let Some(path) = &start.pretrained {
            info!("loaded pretrained weights from {}", path.display());
        }
        // `metrics.jsonl` holds what was logged up to the checkpoint the run resumes from.
        let up_to = Keep::UpTo {
            step: self.state.step,
            epoch: self.state.epoch,
        };
        let keep = match &start.resumed {
            None => Keep::Nothing,
            Some((_, _, source, _)) if !same_dir(&source.dir, &self.identity.dir) => up_to,
            Some(_) => self.state.metrics_log.map_or(up_to, Keep::Bytes),
        };
        // The length describes the checkpoint's file, not the run in memory: a checkpoint written
        // later records its own.
        self.state.metrics_log = None;
        if self.config.metrics_log {
            session.open_metrics(keep)?;
        }
        Ok(session)
    }

    /// The plan of the steps: the budget in optimizer steps and the scheduler where the run stands.
    /// Restores the callbacks' state, writes `latest` into a run directory the run moved into, and
    /// starts the callbacks.
    pub(super) fn plan(
        &mut self,
        train: Vec<usize>,
        session: &Session,
        start: &Start,
    ) -> Result<Plan, RunnerError> {
        let batches_per_epoch: u64 = train.iter().map(|&i| self.batches(i) as u64).sum();
        let steps_per_epoch = batches_per_epoch.div_ceil(self.config.accum_steps);
        let budget = self.config.budget();
        let total_steps = match budget {
            Budget::Epochs(epochs) => epochs * steps_per_epoch,
            Budget::Steps(steps) => steps,
        };
        let mut scheduler = LrScheduler::new(&self.config.sched, self.config.optim.lr, total_steps)?;
        scheduler.set_steps_taken(self.state.step);
        self.hooks.restore(&self.state.callbacks)?;
        // Continued from another run dir's checkpoint (or under another id).
        let moved = start.resumed.as_ref().is_some_and(|(_, _, source, _)| {
            source.id != self.identity.id || !same_dir(&source.dir, &self.identity.dir)
        });
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
        self.run_start_event(total_steps);
        Ok(Plan {
            train,
            budget,
            scheduler,
            start: Instant::now(),
            times: Times::default(),
            train_wall: 0.0,
        })
    }
}

/// Whether two run directories are one, as far as the file system can tell.
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
