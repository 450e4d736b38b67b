//! The run directory and the files danling writes into it.
//!
//! ```text
//! {dir}/
//!   checkpoints/      latest.safetensors, best.safetensors, epoch-{N}.safetensors
//!   run.log           appended across attempts
//!   runner.yaml       {config, identity}
//!   results.json      {name, id, timestamp, results: {index: {split: {metric: value}}}}
//!   latest.json       {name, id, timestamp, index, split: {...}, ...}
//!   best.json         the same shape, for the best index
//!   status.json       how the run stands, or how it ended
//!   metrics.jsonl     one JSON line per logged scalar
//!   mlflow.json       the MLflow run it reports to (with `mlflow` set)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::WorkspaceError;
use crate::config::Device;
use crate::fs::{PendingFiles, RunLock, sync_dir, write_atomic};
use crate::identity::Identity;
use crate::results::{Results, Scoring};

/// File names inside a run directory.
pub mod files {
    /// The resolved config and identity.
    pub const RUNNER: &str = "runner.yaml";
    /// The lock a training process holds (`crate::fs::RunLock`).
    pub const LOCK: &str = crate::fs::LOCK_FILE;
    /// The log, appended across attempts.
    pub const LOG: &str = "run.log";
    /// The whole results history.
    pub const RESULTS: &str = "results.json";
    /// The latest result.
    pub const LATEST: &str = "latest.json";
    /// The best result.
    pub const BEST: &str = "best.json";
    /// How the run stands, or how it ended.
    pub const STATUS: &str = "status.json";
    /// One JSON line per logged scalar.
    pub const METRICS: &str = "metrics.jsonl";
    /// The MLflow run this run reports to, and how far its points were sent.
    pub const MLFLOW: &str = "mlflow.json";
    /// TensorBoard event files go in this subdirectory.
    pub const TENSORBOARD: &str = "tensorboard";
    /// Checkpoint files end in this extension.
    pub const CHECKPOINT_EXTENSION: &str = "safetensors";
}

/// How a training process enters its run directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// A new run: refused if the directory already holds checkpoints.
    Fresh,
    /// Continue from a checkpoint: existing files are kept.
    Resume,
    /// Start again: existing checkpoints are moved aside to `{checkpoint_dir}.old-{timestamp}`.
    Overwrite,
}

/// An open run directory, locked for the life of this value.
#[derive(Debug)]
pub struct RunDir {
    dir: PathBuf,
    checkpoint_dir: PathBuf,
    _lock: RunLock,
}

impl RunDir {
    /// Creates (if needed) and locks the run directory of `identity`.
    pub fn open(identity: &Identity, mode: StartMode) -> Result<Self, WorkspaceError> {
        let dir = identity.dir.clone();
        let checkpoint_dir = identity.checkpoint_dir.clone();
        fs::create_dir_all(&dir).map_err(WorkspaceError::io("create directory", &dir))?;
        let lock = RunLock::acquire(&dir)?;
        if mode != StartMode::Resume && holds_checkpoints(&checkpoint_dir)? {
            if mode == StartMode::Fresh {
                return Err(WorkspaceError::ExistingCheckpoints { dir, checkpoint_dir });
            }
            set_aside(&checkpoint_dir)?;
        }
        fs::create_dir_all(&checkpoint_dir)
            .map_err(WorkspaceError::io("create directory", &checkpoint_dir))?;
        Ok(Self {
            dir,
            checkpoint_dir,
            _lock: lock,
        })
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint directory.
    pub fn checkpoint_dir(&self) -> &Path {
        &self.checkpoint_dir
    }

    /// A file inside the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `runner.yaml`: the full resolved config tree, the identity, the number of processes
    /// that train the run and the device they train on.
    pub fn write_runner(
        &self,
        config: &Value,
        identity: &Identity,
        world_size: usize,
        device: Option<Device>,
    ) -> Result<(), WorkspaceError> {
        let path = self.file(files::RUNNER);
        let runtime = Runtime {
            world_size: Some(world_size),
            device,
        };
        let text = render_runner(config, identity, runtime).map_err(|message| WorkspaceError::Serialize {
            path: path.clone(),
            message,
        })?;
        Ok(write_atomic(&path, text.as_bytes())?)
    }

    /// Writes `name` in the run directory as pretty JSON, atomically.
    pub fn write_json(&self, name: &str, value: &Value) -> Result<(), WorkspaceError> {
        let mut files = PendingFiles::default();
        self.push_json(&mut files, name, value)?;
        Ok(files.write()?)
    }

    /// Renders `name` as pretty JSON into `files`.
    fn push_json(&self, files: &mut PendingFiles, name: &str, value: &Value) -> Result<(), WorkspaceError> {
        let path = self.file(name);
        let mut text = serde_json::to_string_pretty(value).map_err(|e| WorkspaceError::Serialize {
            path: path.clone(),
            message: e.to_string(),
        })?;
        text.push('\n');
        files.push(path, text.into_bytes());
        Ok(())
    }

    /// Writes `results.json`, `latest.json` and `best.json` from the results history.
    pub fn write_results(
        &self,
        results: &Results,
        scoring: &Scoring,
        identity: &Identity,
    ) -> Result<(), WorkspaceError> {
        self.results_files(results, scoring, identity)?.write()?;
        // A history with no latest or best result (a run continued from before its first one) leaves
        // no file of a later one behind.
        let (name, id) = (identity.name.as_str(), identity.id.as_str());
        let stale = [
            (files::LATEST, results.latest_document(name, id, "").is_none()),
            (
                files::BEST,
                results.best_document(scoring, name, id, "").is_none(),
            ),
        ];
        let mut removed = false;
        for (file, absent) in stale {
            let path = self.file(file);
            if absent && path.exists() {
                fs::remove_file(&path).map_err(WorkspaceError::io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// `results.json`, `latest.json` and `best.json` rendered from the results history, not written yet.
    pub fn results_files(
        &self,
        results: &Results,
        scoring: &Scoring,
        identity: &Identity,
    ) -> Result<PendingFiles, WorkspaceError> {
        let now = timestamp();
        let (name, id) = (identity.name.as_str(), identity.id.as_str());
        let mut files = PendingFiles::default();
        self.push_json(
            &mut files,
            files::RESULTS,
            &results.results_document(name, id, &now),
        )?;
        if let Some(latest) = results.latest_document(name, id, &now) {
            self.push_json(&mut files, files::LATEST, &latest)?;
        }
        if let Some(best) = results.best_document(scoring, name, id, &now) {
            self.push_json(&mut files, files::BEST, &best)?;
        }
        Ok(files)
    }
}

/// The `runner.yaml` document: `{config, identity}`, and beside them the runtime facts of a run
/// (not hashed: the same config has the same id on any number of processes).
#[derive(Serialize)]
struct RunnerDocument<'a> {
    config: &'a Value,
    identity: &'a Identity,
    #[serde(flatten)]
    runtime: Runtime,
}

/// The runtime facts `runner.yaml` records beside the config (a training process knows them).
#[derive(Serialize, Default)]
struct Runtime {
    #[serde(skip_serializing_if = "Option::is_none")]
    world_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Device>,
}

/// Renders the `runner.yaml` document as YAML.
pub fn runner_yaml(config: &Value, identity: &Identity) -> Result<String, String> {
    render_runner(config, identity, Runtime::default())
}

fn render_runner(config: &Value, identity: &Identity, runtime: Runtime) -> Result<String, String> {
    let document = RunnerDocument {
        config,
        identity,
        runtime,
    };
    serde_saphyr::to_string(&document).map_err(|e| e.to_string())
}

/// The `runner.yaml` document as a JSON tree (what `danling config --json` prints).
pub fn runner_tree(config: &Value, identity: &Identity) -> Value {
    let document = RunnerDocument {
        config,
        identity,
        runtime: Runtime::default(),
    };
    // A JSON tree, an identity of strings and numbers, and a runtime of numbers: always serialisable.
    serde_json::to_value(document).unwrap_or(Value::Null)
}

fn holds_checkpoints(checkpoint_dir: &Path) -> Result<bool, WorkspaceError> {
    let entries = match fs::read_dir(checkpoint_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(WorkspaceError::io("read directory", checkpoint_dir)(source));
        }
    };
    // An entry that cannot be read may be a checkpoint: an error, never "no checkpoints here".
    for entry in entries {
        let entry = entry.map_err(WorkspaceError::io("read directory", checkpoint_dir))?;
        if entry
            .path()
            .extension()
            .is_some_and(|ext| ext == files::CHECKPOINT_EXTENSION)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves a checkpoint directory aside, never deleting it.
fn set_aside(checkpoint_dir: &Path) -> Result<PathBuf, WorkspaceError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = checkpoint_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut target = checkpoint_dir.with_file_name(format!("{name}.old-{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = checkpoint_dir.with_file_name(format!("{name}.old-{stamp}-{n}"));
        n += 1;
    }
    fs::rename(checkpoint_dir, &target).map_err(WorkspaceError::io("move aside", checkpoint_dir))?;
    sync_dir(checkpoint_dir.parent().unwrap_or(Path::new(".")))?;
    tracing::warn!(
        "moved the old checkpoints {} to {}",
        checkpoint_dir.display(),
        target.display()
    );
    Ok(target)
}

/// The current time as RFC 3339 UTC with seconds, as written into the results files.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
