//! Reading run directories: every run under a project root, found by its `runner.yaml`, with how it
//! stands and what it scored. A file that cannot be read makes its run `damaged`, with the reason;
//! it never stops the listing.

use std::path::{Path, PathBuf};

use danling::Results;
use danling::fs::lock_holder;
use danling::results::{Record, ScoreMode, Scoring};
use danling::workspace::{RunState, RunStatus, Standing, files, last_write};
use rayon::prelude::*;
use serde_json::Value;

/// How a run stands, as `danling runs` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Finished,
    Stopped,
    Failed,
    /// Its process was killed before it could say how it ended.
    Killed,
    Damaged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Killed => "killed",
            Status::Damaged => "damaged",
        }
    }
}

/// One score: the index it is at and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub index: u64,
    pub value: f64,
}

/// One run directory, read.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub name: String,
    pub id: String,
    pub status: Status,
    /// Why it ended, or why it is damaged.
    pub reason: Option<String>,
    /// The resolved config tree (`Null` when runner.yaml is damaged).
    pub config: Value,
    pub results: Results,
    /// The score's name, mode and split as this run's config resolves them.
    pub score_name: String,
    pub score_split: Option<String>,
    pub mode: ScoreMode,
    pub best: Option<Score>,
    pub last: Option<Score>,
    /// `(done, budget, "epoch" | "step")`.
    pub progress: Option<(u64, u64, &'static str)>,
    /// The git commit (the experiment id of a run in a git tree), short, and whether it was dirty.
    pub commit: Option<String>,
    pub dirty: bool,
    pub started: Option<String>,
    pub seconds: Option<f64>,
    pub parent: Option<String>,
    pub group: Option<String>,
}

impl Run {
    /// The best result's record.
    pub fn best_record(&self) -> Option<&Record> {
        self.best.and_then(|best| self.results.get(best.index))
    }

    /// A config value by dotted key (`optim.lr`).
    pub fn config_value(&self, key: &str) -> Option<&Value> {
        key.split('.')
            .try_fold(&self.config, |value, part| value.get(part))
    }
}

/// Every run directory directly under `root` (or `root` itself, when it is one), sorted by path.
pub fn scan(root: &Path) -> anyhow::Result<Vec<Run>> {
    if root.join(files::RUNNER).exists() {
        return Ok(vec![read_run(root)]);
    }
    let entries = std::fs::read_dir(root)
        .map_err(|e| anyhow::anyhow!("cannot read project root {}: {e}", root.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join(files::RUNNER).is_file())
        .collect();
    dirs.sort();
    Ok(dirs.par_iter().map(|dir| read_run(dir)).collect())
}

/// A run directory read; what cannot be read makes it damaged, with the first reason.
pub fn read_run(dir: &Path) -> Run {
    let fallback = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut run = Run {
        dir: dir.to_owned(),
        name: fallback,
        id: String::new(),
        status: Status::Damaged,
        reason: None,
        config: Value::Null,
        results: Results::new(),
        score_name: "loss".to_owned(),
        score_split: None,
        mode: ScoreMode::Min,
        best: None,
        last: None,
        progress: None,
        commit: None,
        dirty: false,
        started: None,
        seconds: None,
        parent: None,
        group: None,
    };
    if let Err(reason) = fill(&mut run) {
        run.status = Status::Damaged;
        run.reason = Some(reason);
    }
    run
}

fn read_text(dir: &Path, name: &str) -> Result<Option<String>, String> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{name} is not UTF-8")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {name}: {e}")),
    }
}

fn read_json(dir: &Path, name: &str) -> Result<Option<Value>, String> {
    match read_text(dir, name)? {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{name} is not JSON: {e}")),
        None => Ok(None),
    }
}

fn fill(run: &mut Run) -> Result<(), String> {
    let dir = run.dir.clone();
    let runner = read_text(&dir, files::RUNNER)?.ok_or("runner.yaml is missing")?;
    let document: Value = serde_saphyr::from_str(&runner)
        .map_err(|e| format!("runner.yaml is not YAML: {}", first_line(&e)))?;
    let (Some(config), Some(identity)) = (document.get("config"), document.get("identity")) else {
        return Err("runner.yaml has no `config` and `identity`".to_owned());
    };
    if !config.is_object() || !identity.is_object() {
        return Err("runner.yaml's `config` or `identity` is not a mapping".to_owned());
    }
    run.config = config.clone();
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    run.name = text(identity, "name").unwrap_or_else(|| run.name.clone());
    run.id = text(identity, "id").unwrap_or_default();
    run.dirty = identity
        .get("git_dirty")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    run.commit = text(identity, "experiment_id")
        .filter(|id| id.chars().all(|c| c.is_ascii_hexdigit()) && !id.is_empty())
        .map(|id| id.chars().take(8).collect());
    run.parent = identity
        .get("parent")
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    run.group = text(config, "group");

    // Scoring, as the config resolves it.
    run.score_name = text(config, "score_name").unwrap_or_else(|| "loss".to_owned());
    let mode = text(config, "score_mode").and_then(|m| serde_json::from_value(Value::String(m)).ok());
    let scoring = Scoring::new(text(config, "score_split"), run.score_name.clone(), mode);
    run.mode = scoring.mode;

    if let Some(doc) = read_json(&dir, files::RESULTS)? {
        run.results = Results::from_results_document(&doc).map_err(|e| format!("results.json: {e}"))?;
    }
    run.score_split = run.results.score_split(&scoring);
    run.best = run.results.best(&scoring).and_then(|(index, _)| {
        run.results
            .score(index, &scoring)
            .map(|value| Score { index, value })
    });
    run.last = run.results.latest().and_then(|(index, _)| {
        run.results
            .score(index, &scoring)
            .map(|value| Score { index, value })
    });

    // Progress against the budget.
    let steps = config.get("steps").and_then(Value::as_u64);
    let epochs = config.get("epochs").and_then(Value::as_u64).unwrap_or(10);
    let done = run.results.latest().map_or(0, |(index, _)| index);
    run.progress = Some(match steps {
        Some(steps) => (done, steps, "step"),
        None => (done, epochs, "epoch"),
    });

    // How it stands: status.json, checked against the lock.
    let status: Option<RunStatus> = match read_json(&dir, files::STATUS)? {
        Some(value) => Some(serde_json::from_value(value).map_err(|e| format!("status.json: {e}"))?),
        None => None,
    };
    let live = lock_holder(&dir).is_some();
    let reached = run.progress.is_some_and(|(done, budget, _)| done >= budget);
    let Some(status) = status else {
        (run.status, run.reason) = if live {
            (Status::Running, None)
        } else if reached {
            (Status::Finished, Some("budget".to_owned()))
        } else {
            (
                Status::Failed,
                Some("no status.json: ended before this version recorded it".to_owned()),
            )
        };
        return Ok(());
    };
    // The newest write only matters (and is only looked for) when the process was killed.
    let last = (!live && status.status == RunState::Running)
        .then(|| {
            // A checkpoint dir of its own, outside the run dir (one inside is looked at anyway).
            let path = |key: &str| identity.get(key).and_then(Value::as_str).map(PathBuf::from);
            let checkpoint_dir = match (path("checkpoint_dir"), path("dir")) {
                (Some(c), Some(d)) if c.starts_with(&d) => None,
                (c, _) => c,
            };
            last_write(&dir, checkpoint_dir.as_deref())
        })
        .flatten();
    let written = std::fs::metadata(dir.join(files::STATUS))
        .and_then(|meta| meta.modified())
        .ok()
        .map(chrono::DateTime::<chrono::Utc>::from);
    let seen = status.observe(live, written, last, chrono::Utc::now());
    (run.status, run.reason) = match seen.standing {
        Standing::Running => (Status::Running, None),
        Standing::Finished => (Status::Finished, status.reason.clone()),
        Standing::Stopped => (Status::Stopped, status.reason.clone()),
        Standing::Failed => (Status::Failed, status.reason.clone()),
        Standing::Killed => (
            Status::Killed,
            Some(match &seen.ended {
                Some(ended) => format!(
                    "PID {} ended without writing its status; last write {ended}",
                    status.pid
                ),
                None => format!("PID {} ended without writing its status", status.pid),
            }),
        ),
    };
    run.started = Some(status.started.clone());
    run.seconds = Some(seen.seconds);
    Ok(())
}

fn first_line(error: &impl std::fmt::Display) -> String {
    error.to_string().lines().next().unwrap_or_default().to_owned()
}
