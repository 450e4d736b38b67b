//! Reading run directories: every run under a project root, found by its `runner.yaml`, with how it
//! stands and what it scored. A file that cannot be read makes its run `damaged`, with the reason;
//! it never stops the listing.

use std::path::{Path, PathBuf};

use crate::fs::lock_holder;
use crate::results::{Record, ScoreMode, Scoring};
use crate::workspace::{RunState, RunStatus, Standing, files, last_write};
use crate::{Budget, Config, Identity, Results};
use rayon::prelude::*;
use serde_json::Value;

/// The config of a run of any app: danling's keys typed, the app's sections as they are.
pub type AnyConfig = Config<std::collections::BTreeMap<String, Value>>;

/// How a run stands, as `danling runs` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its process holds the run directory's lock.
    Running,
    /// It trained its budget, or stopped early on its score.
    Finished,
    /// A stop signal or a callback stopped it; it can be resumed.
    Stopped,
    /// It failed, with the reason.
    Failed,
    /// A search sweep stopped it at a rung (the reason says which); a promotion resumes it.
    Pruned,
    /// A preemption signal stopped it; it is requeued, or waits to be.
    Preempted,
    /// Its process was killed before it could say how it ended.
    Killed,
    /// A file of it cannot be read; the reason says which.
    Damaged,
}

impl Status {
    /// The status as the listing writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Pruned => "pruned",
            Status::Preempted => "preempted",
            Status::Killed => "killed",
            Status::Damaged => "damaged",
        }
    }
}

/// One score: the index it is at and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The index (epoch or step) of the result.
    pub index: u64,
    /// The score's value.
    pub value: f64,
}

/// One run directory, read.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run directory.
    pub dir: PathBuf,
    /// The run's name ([`Identity::name`]), or its directory's name when runner.yaml is damaged.
    pub name: String,
    /// The run's id ([`Identity::id`]).
    pub id: String,
    /// How it stands.
    pub status: Status,
    /// Why it ended, or why it is damaged.
    pub reason: Option<String>,
    /// The resolved config tree (`Null` when runner.yaml is damaged).
    pub config: Value,
    /// Its results (`results.json`).
    pub results: Results,
    /// The score's name, mode and split as this run's config resolves them.
    pub score_name: String,
    /// The split the score is read from.
    pub score_split: Option<String>,
    /// Whether a lower or a higher score is better.
    pub mode: ScoreMode,
    /// The best score and its index.
    pub best: Option<Score>,
    /// The latest score and its index.
    pub last: Option<Score>,
    /// `(done, budget, "epoch" | "step")`.
    pub progress: Option<(u64, u64, &'static str)>,
    /// The git commit (the experiment id of a run in a git tree), short, and whether it was dirty.
    pub commit: Option<String>,
    /// Whether the git tree had uncommitted changes.
    pub dirty: bool,
    /// When the latest attempt started (`status.json`).
    pub started: Option<String>,
    /// Seconds trained, over every attempt.
    pub seconds: Option<f64>,
    /// The id of the run it was continued from.
    pub parent: Option<String>,
    /// Its `group` (a sweep's name).
    pub group: Option<String>,
}

impl Run {
    /// The best result's record.
    pub fn best_record(&self) -> Option<&Record> {
        self.best.and_then(|best| self.results.get(best.index))
    }

    /// The run's id, or its directory's name when runner.yaml is damaged: what names it in
    /// messages and anchors.
    pub fn label(&self) -> String {
        if self.id.is_empty() {
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            self.id.clone()
        }
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
    let (Some(tree), Some(identity)) = (document.get("config"), document.get("identity")) else {
        return Err("runner.yaml has no `config` and `identity`".to_owned());
    };
    // Read through the types that wrote it: danling's keys typed, the app's sections as they are.
    let config = AnyConfig::from_written(tree.clone())
        .map_err(|e| format!("runner.yaml's config: {}", first_line(&e)))?;
    let identity: Identity = serde_json::from_value(identity.clone())
        .map_err(|e| format!("runner.yaml's identity: {}", first_line(&e)))?;
    run.config = tree.clone();
    run.name.clone_from(&identity.name);
    run.id.clone_from(&identity.id);
    run.dirty = identity.git_dirty;
    run.commit = Some(&identity.experiment_id)
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|id| id.chars().take(8).collect());
    run.parent = identity.parent.as_ref().map(|parent| parent.id.clone());
    run.group.clone_from(&config.group);

    // Scoring, as the config resolves it.
    run.score_name.clone_from(&config.score_name);
    let scoring = Scoring::new(
        config.score_split.clone(),
        config.score_name.clone(),
        config.score_mode,
    );
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
    let done = run.results.latest().map_or(0, |(index, _)| index);
    run.progress = Some(match config.budget() {
        Budget::Steps(steps) => (done, steps, "step"),
        Budget::Epochs(epochs) => (done, epochs, "epoch"),
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
            let own = !identity.checkpoint_dir.starts_with(&identity.dir);
            last_write(&dir, own.then_some(identity.checkpoint_dir.as_path()))
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
        Standing::Pruned => (Status::Pruned, status.reason.clone()),
        Standing::Preempted => (Status::Preempted, status.reason.clone()),
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
