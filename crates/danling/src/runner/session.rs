//! A run's files for the life of one training process: the locked run directory, `runner.yaml`,
//! `run.log`, TensorBoard, and the results files.

use std::path::Path;

use super::RunnerError;
use crate::config::{Config, Sections};
use crate::fs::PendingFiles;
use crate::identity::Identity;
use crate::log::tensorboard::{EventWriter, HParam, SessionStatus};
use crate::log::{Console, LogGuard, init_logging, log_header};
use crate::results::{Record, Results, Scoring};
use crate::workspace::mlflow::{RunInfo, Tracker};
use crate::workspace::{
    Keep, MetricsLog, Point, RunDir, RunState, RunStatus, StartMode, WorkspaceError, files, last_write,
};

/// Where a process stands in a (possibly multi-process) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// Only the main process writes files.
    pub is_main: bool,
    /// Where console log lines go.
    pub console: Console,
    /// The processes that train the run (recorded in `runner.yaml`).
    pub world_size: usize,
    /// The device that trains it (recorded in `runner.yaml`).
    pub device: Option<crate::config::Device>,
}

impl Default for Role {
    fn default() -> Self {
        Self {
            is_main: true,
            console: Console::Stdout,
            world_size: 1,
            device: None,
        }
    }
}

/// Everything a run writes, opened for one attempt (a fresh start or a resume).
///
/// Opening it locks the run directory, writes `runner.yaml`, appends an attempt header to `run.log`
/// (unless `log: false`) and opens a TensorBoard event file (if `tensorboard: true`). Logging is
/// installed for the calling thread until this value is dropped, which also releases the lock. On a
/// process that is not the main one, nothing is written.
#[derive(Debug)]
pub struct Session {
    identity: Identity,
    scoring: Scoring,
    patience: Option<u64>,
    results: Results,
    tensorboard: Option<EventWriter>,
    /// `status.json` as this attempt wrote it on entering the run directory.
    status: Option<RunStatus>,
    /// `metrics.jsonl`, once [`open_metrics`](Self::open_metrics) opened it (on the main process).
    metrics: Option<std::sync::Mutex<MetricsLog>>,
    /// The MLflow run to report to, with `mlflow` set (on the main process), until
    /// [`open_metrics`](Self::open_metrics) starts its tracker.
    mlflow: Option<RunInfo>,
    /// Sends the points to MLflow, once `metrics.jsonl` is open.
    tracker: Option<Tracker>,
    attempt: std::time::Instant,
    // Dropped in declaration order: the log goes first, the lock last.
    _log: LogGuard,
    dir: Option<RunDir>,
}

/// What recording a result found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The recorded index is now the best.
    pub is_best: bool,
    /// Early stopping says to stop.
    pub should_stop: bool,
}

/// The `status.json` of the run's previous attempt, if any, and the seconds the run had trained by
/// its end: as recorded when it ended; up to its last write when it was killed (its status still
/// says `running`, and no process holds the lock, which this attempt is about to take).
fn earlier_attempt(identity: &Identity) -> Option<(RunStatus, f64)> {
    let path = identity.dir.join(files::STATUS);
    // No readable status (a run from before `status.json`, or one killed as it wrote it): the
    // attempt starts the status afresh. It is what `danling runs` shows; training never reads it.
    let earlier: RunStatus = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let written = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .map(chrono::DateTime::<chrono::Utc>::from);
    let last = last_write(&identity.dir, Some(&identity.checkpoint_dir));
    let trained = earlier.observe(false, written, last, chrono::Utc::now()).seconds;
    Some((earlier, trained))
}

impl Session {
    /// Opens the run's files for this attempt.
    pub fn open<S: Sections>(
        config: &Config<S>,
        identity: Identity,
        mode: StartMode,
        role: Role,
    ) -> Result<Self, RunnerError> {
        Self::open_continued(config, identity, mode, role, None)
    }

    /// Opens the run's files for an attempt that continues the checkpoint `continued` (its file and
    /// step), which the attempt's `run.log` header names.
    pub fn open_continued<S: Sections>(
        config: &Config<S>,
        identity: Identity,
        mode: StartMode,
        role: Role,
        continued: Option<(&Path, u64)>,
    ) -> Result<Self, RunnerError> {
        // How the previous attempt left the directory, read before this one writes to it: a
        // `running` status then means it was killed without a word, and the time it trained runs to
        // its last write.
        let before = role.is_main.then(|| earlier_attempt(&identity));
        let dir = if role.is_main {
            Some(RunDir::open(&identity, mode)?)
        } else {
            None
        };
        let log_file = dir.as_ref().filter(|_| config.log).map(|d| d.file(files::LOG));
        let header = log_header(&identity.id, continued);
        let log = init_logging(role.console, log_file.as_deref().map(|p| (p, header.as_str())))?;
        let mut tensorboard = None;
        let mut status = None;
        if let Some(dir) = &dir {
            dir.write_runner(&config.to_value(), &identity, role.world_size, role.device)?;
            if config.tensorboard {
                let mut writer = EventWriter::create(&dir.file(files::TENSORBOARD))?;
                writer.add_session_start(
                    &hparams(&config.to_value()),
                    config.group.as_deref().unwrap_or(""),
                )?;
                tensorboard = Some(writer);
            }
            // The first attempt's start and the time trained so far carry over from an earlier one,
            // a killed one's included.
            let (earlier, trained) = before.flatten().unzip();
            let now = chrono::Utc::now();
            let running = RunStatus {
                status: RunState::Running,
                reason: None,
                started: earlier.as_ref().map_or_else(
                    || now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    |e| e.started.clone(),
                ),
                // To the millisecond: a killed attempt's time is measured from it.
                attempt_started: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ended: None,
                seconds: trained.unwrap_or(0.0),
                pid: std::process::id(),
                world_size: role.world_size,
            };
            // Strings and numbers: always serialisable.
            dir.write_json(files::STATUS, &serde_json::to_value(&running).unwrap_or_default())?;
            status = Some(running);
        }
        let mlflow = dir
            .as_ref()
            .and_then(|_| RunInfo::new(&config.to_value(), &identity));
        Ok(Self {
            identity,
            scoring: config.scoring(),
            patience: config.patience,
            results: Results::new(),
            tensorboard,
            status,
            metrics: None,
            mlflow,
            tracker: None,
            attempt: std::time::Instant::now(),
            _log: log,
            dir,
        })
    }

    /// Records in `status.json` how this attempt ended (on the main process): `state` and `reason`.
    pub fn finish(&mut self, state: RunState, reason: Option<String>) -> Result<(), RunnerError> {
        if let Some(writer) = &mut self.tensorboard {
            // The best result's values, for the HParams table beside the final ones, then the end.
            if let Some((index, record)) = self.results.best(&self.scoring) {
                let step = i64::try_from(index).unwrap_or(i64::MAX);
                let tags: Vec<(String, f64)> = record
                    .iter()
                    .flat_map(|(split, metrics)| {
                        metrics
                            .iter()
                            .map(move |(m, v)| (format!("best/{split}/{m}"), *v))
                    })
                    .collect();
                writer.add_scalars(step, tags.iter().map(|(t, v)| (t.as_str(), *v)))?;
            }
            let status = match state {
                RunState::Finished => SessionStatus::Success,
                RunState::Failed => SessionStatus::Failure,
                RunState::Running | RunState::Stopped | RunState::Pruned | RunState::Preempted => {
                    SessionStatus::Unknown
                }
            };
            let step = self
                .results
                .latest()
                .map_or(0, |(index, _)| i64::try_from(index).unwrap_or(i64::MAX));
            writer.add_session_end(status, step)?;
            writer.sync()?;
        }
        let (Some(dir), Some(status)) = (&self.dir, &mut self.status) else {
            return Ok(());
        };
        status.status = state;
        status.reason = reason;
        status.ended = Some(crate::workspace::timestamp());
        status.seconds += self.attempt.elapsed().as_secs_f64();
        // Strings and numbers: always serialisable.
        let written = dir.write_json(files::STATUS, &serde_json::to_value(&*status).unwrap_or_default());
        // A run that ended before `metrics.jsonl` was opened still reports how it ended.
        if let Some(tracker) = self
            .tracker
            .take()
            .or_else(|| self.mlflow.take().map(Tracker::start))
        {
            for warning in tracker.finish(state) {
                tracing::warn!("{warning}");
            }
        }
        Ok(written?)
    }

    /// Opens `metrics.jsonl` (on the main process), cut back as `keep` says.
    pub fn open_metrics(&mut self, keep: Keep) -> Result<(), RunnerError> {
        if let Some(dir) = &self.dir {
            let log = MetricsLog::open(&dir.file(files::METRICS), keep).map_err(WorkspaceError::from)?;
            self.metrics = Some(std::sync::Mutex::new(log));
        }
        // Only now: the tracker reads `metrics.jsonl` from where it stands, and a resume has just
        // cut it back to the checkpoint. Read before the cut, the lines past it would shift the
        // count of lines sent, and points would be skipped. Started after `runner.yaml` and
        // `status.json` are written, whose time is the MLflow run's start.
        self.tracker = self.mlflow.take().map(Tracker::start);
        Ok(())
    }

    /// Appends `points` to `metrics.jsonl` (when it is open).
    pub fn log_points(&self, points: &[Point]) -> Result<(), RunnerError> {
        let Some(log) = &self.metrics else {
            return Ok(());
        };
        let mut log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.append(points)
            .map_err(|error| RunnerError::Save(WorkspaceError::from(error)))?;
        if let Some(tracker) = &self.tracker {
            tracker
                .wake()
                .iter()
                .for_each(|warning| tracing::warn!("{warning}"));
        }
        Ok(())
    }

    /// Appends every value of `record` to `metrics.jsonl`, at `step` and `epoch`.
    pub fn log_record(&self, step: u64, epoch: u64, record: &Record) -> Result<(), RunnerError> {
        let points: Vec<Point> = record
            .iter()
            .flat_map(|(split, metrics)| {
                metrics
                    .iter()
                    .map(move |(name, value)| Point::now(step, epoch, split, name, *value))
            })
            .collect();
        self.log_points(&points)
    }

    /// The length of `metrics.jsonl`, flushed to disk, for a checkpoint taken now to record.
    pub fn metrics_len(&self) -> Result<Option<u64>, RunnerError> {
        let Some(log) = &self.metrics else {
            return Ok(None);
        };
        let log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.sync()
            .map_err(|error| RunnerError::Save(WorkspaceError::from(error)))?;
        Ok(Some(log.len()))
    }

    /// The run's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The run directory, on the main process.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(RunDir::path)
    }

    /// The checkpoint directory, on the main process.
    pub fn checkpoint_dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(RunDir::checkpoint_dir)
    }

    /// The results so far.
    pub fn results(&self) -> &Results {
        &self.results
    }

    /// How results are scored.
    pub fn scoring(&self) -> &Scoring {
        &self.scoring
    }

    /// Scores with `mode`: the direction the metric of `score_name` gives, when the config sets no
    /// `score_mode`. Call it before the results are restored or recorded.
    pub fn set_score_mode(&mut self, mode: crate::results::ScoreMode) {
        self.scoring.mode = mode;
    }

    /// Replaces the results history (on resume), and rewrites the results files from it.
    pub fn restore(&mut self, results: Results) -> Result<(), WorkspaceError> {
        self.results = results;
        self.write_results()
    }

    /// Records the result of `index` (merging into an earlier one of the same index), writes the
    /// results files and TensorBoard scalars `{split}/{metric}`, and says whether it is the best and
    /// whether early stopping fires.
    pub fn record(&mut self, index: u64, record: Record) -> Result<Recorded, RunnerError> {
        let (recorded, files) = self.record_deferred(index, record)?;
        files.write()?;
        Ok(recorded)
    }

    /// [`record`](Self::record), except that the results files are returned rendered but unwritten,
    /// for the caller to [`write`](PendingFiles::write) when it chooses (the runner writes them on its
    /// background writer, beside the epoch's checkpoint).
    pub fn record_deferred(
        &mut self,
        index: u64,
        record: Record,
    ) -> Result<(Recorded, PendingFiles), RunnerError> {
        if let Some(writer) = &mut self.tensorboard {
            let step = i64::try_from(index).unwrap_or(i64::MAX);
            let tags: Vec<(String, f64)> = record
                .iter()
                .flat_map(|(split, metrics)| metrics.iter().map(move |(m, v)| (format!("{split}/{m}"), *v)))
                .collect();
            writer.add_scalars(step, tags.iter().map(|(t, v)| (t.as_str(), *v)))?;
        }
        self.results.insert(index, record);
        let files = match &self.dir {
            Some(dir) => dir.results_files(&self.results, &self.scoring, &self.identity)?,
            None => PendingFiles::default(),
        };
        let is_best = self
            .results
            .best(&self.scoring)
            .is_some_and(|(best, _)| best == index);
        let recorded = Recorded {
            is_best,
            should_stop: self.results.should_stop(&self.scoring, self.patience),
        };
        Ok((recorded, files))
    }

    fn write_results(&self) -> Result<(), WorkspaceError> {
        match &self.dir {
            Some(dir) => dir.write_results(&self.results, &self.scoring, &self.identity),
            None => Ok(()),
        }
    }
}

impl StartMode {
    /// The mode a config asks for: `checkpoint` or `resume` continue the run; otherwise a fresh start,
    /// or an overwrite when the user says so.
    pub fn from_config<S>(config: &Config<S>, overwrite: bool) -> Self {
        if config.checkpoint.is_some() || config.resume.is_on() {
            StartMode::Resume
        } else if overwrite {
            StartMode::Overwrite
        } else {
            StartMode::Fresh
        }
    }
}

/// The config's values by dotted key, for TensorBoard's HParams dashboard: numbers, text and flags
/// as they are, lists and the rest as their JSON; nulls left out.
fn hparams(config: &serde_json::Value) -> std::collections::BTreeMap<String, HParam> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut std::collections::BTreeMap<String, HParam>) {
        use serde_json::Value;
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| walk(&key(k), v, out)),
            Value::Null => {}
            Value::Bool(flag) => {
                out.insert(prefix.to_owned(), HParam::Bool(*flag));
            }
            Value::Number(n) => {
                out.insert(prefix.to_owned(), HParam::Number(n.as_f64().unwrap_or(f64::NAN)));
            }
            Value::String(text) => {
                out.insert(prefix.to_owned(), HParam::Text(text.clone()));
            }
            other => {
                out.insert(prefix.to_owned(), HParam::Text(other.to_string()));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", config, &mut out);
    out
}
