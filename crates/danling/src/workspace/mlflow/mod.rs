//! MLflow tracking over its REST API: a run creates (or reuses) its MLflow experiment and run, logs
//! its config as params and every point of `metrics.jsonl` as a metric, and its final status.
//!
//! `metrics.jsonl` is the spool. `mlflow.json` in the run directory names the MLflow run and counts
//! the lines of `metrics.jsonl` already sent (`sent`); whatever the server did not take stays in the
//! file, and the next attempt (or `danling mlflow sync DIR`) sends it. A resume cuts `metrics.jsonl`
//! back to its checkpoint and logs those points again; the lines below `sent` are never sent twice,
//! so the MLflow run holds each point once. A batch is written down (`sending`) before it goes: a
//! process killed between the server's answer and the next write of `mlflow.json` leaves the
//! question open, and the next connection asks the server whether it holds the batch's last point.
//! The tracker starts reading only once a resume has cut `metrics.jsonl` back.
//!
//! The [`Tracker`] sends from a thread of its own: training never waits on the server. A server that
//! is down or answers an error is reported once per attempt, and tried again every
//! [`RETRY`] seconds.

mod client;
mod tracker;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use client::{Client, MAX_METRICS, MAX_PARAM_VALUE, MAX_PARAMS, Metric, MlflowError};
pub use tracker::Tracker;

use super::{Point, RunState, files};
use crate::config::MlflowConfig;
use crate::fs::write_atomic;

/// Seconds between tries after the server failed.
pub const RETRY: u64 = 30;

/// `mlflow.json`: the MLflow run a danling run reports to, and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The server.
    pub uri: String,
    /// The experiment's name and id.
    pub experiment: String,
    /// See `experiment`.
    pub experiment_id: String,
    /// The MLflow run.
    pub run_id: String,
    /// Where the run's artifacts go.
    #[serde(default)]
    pub artifact_uri: String,
    /// Lines of `metrics.jsonl` sent.
    pub sent: usize,
    /// A batch on its way, written down before it is sent: a run killed before the answer came
    /// asks the server, at the next connection, whether the batch was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending: Option<Sending>,
    /// The config was logged as params.
    pub params: bool,
    /// The final status sent, once one was.
    #[serde(default)]
    pub status: Option<String>,
}

/// A batch of points sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sending {
    /// `sent` once the batch is stored.
    pub upto: usize,
    /// The batch's last metric. MLflow stores a batch whole or not at all, and no point logged
    /// later has its key, step and millisecond: the server holds it exactly when it took the batch.
    pub last: Metric,
}

/// What a run tells MLflow about itself, read from its config and identity.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run directory.
    pub dir: PathBuf,
    /// The `mlflow` section.
    pub mlflow: MlflowConfig,
    /// The experiment when `mlflow.experiment` is unset: `experiment_name`.
    pub experiment_name: String,
    /// danling's `name`, `id`, `group` and commit (`experiment_id`).
    pub name: String,
    /// See `name`.
    pub id: String,
    /// See `name`.
    pub group: Option<String>,
    /// See `name`.
    pub commit: String,
    /// The resolved config tree, logged as params.
    pub config: Value,
}

impl RunInfo {
    /// What a training process tells MLflow: its config tree (with its `mlflow` section) and
    /// identity. `None` without an `mlflow` section.
    pub fn new(config: &Value, identity: &crate::identity::Identity) -> Option<Self> {
        let mlflow: MlflowConfig = serde_json::from_value(config.get("mlflow")?.clone()).ok()?;
        Some(Self {
            dir: identity.dir.clone(),
            mlflow,
            experiment_name: config["experiment_name"].as_str().unwrap_or_default().to_owned(),
            name: identity.name.clone(),
            id: identity.id.clone(),
            group: config["group"].as_str().map(str::to_owned),
            commit: identity.experiment_id.clone(),
            config: config.clone(),
        })
    }

    /// Reads what a run directory's `runner.yaml` says. `None` when the run has no `mlflow` section.
    pub fn read(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(files::RUNNER);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let tree: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("{} is not a runner.yaml: {e}", path.display()))?;
        let config = tree["config"].clone();
        let Some(section) = config.get("mlflow").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let mlflow: MlflowConfig = serde_json::from_value(section.clone())
            .map_err(|e| format!("{}: config.mlflow: {e}", path.display()))?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Ok(Some(Self {
            dir: dir.to_owned(),
            mlflow,
            experiment_name: text(&config["experiment_name"]),
            name: text(&tree["identity"]["name"]),
            id: text(&tree["identity"]["id"]),
            group: config["group"].as_str().map(str::to_owned),
            commit: text(&tree["identity"]["experiment_id"]),
            config,
        }))
    }

    fn experiment(&self) -> String {
        self.mlflow
            .experiment
            .clone()
            .unwrap_or_else(|| self.experiment_name.clone())
    }

    fn tags(&self) -> Vec<(String, String)> {
        let mut tags = vec![
            ("mlflow.runName".to_owned(), self.name.clone()),
            ("mlflow.source.name".to_owned(), "danling".to_owned()),
            ("danling.id".to_owned(), self.id.clone()),
            ("danling.name".to_owned(), self.name.clone()),
            ("danling.dir".to_owned(), self.dir.display().to_string()),
            ("danling.commit".to_owned(), self.commit.clone()),
        ];
        if self.commit.len() == 40 && self.commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            tags.push(("mlflow.source.git.commit".to_owned(), self.commit.clone()));
        }
        if let Some(group) = &self.group {
            tags.push(("danling.group".to_owned(), group.clone()));
        }
        tags
    }
}

/// The MLflow status of a danling status: `FINISHED`, `FAILED`, or `KILLED` for a run that stopped
/// and can go on (stopped, preempted, pruned).
pub fn mlflow_status(state: RunState) -> &'static str {
    match state {
        RunState::Running => "RUNNING",
        RunState::Finished => "FINISHED",
        RunState::Failed => "FAILED",
        RunState::Stopped | RunState::Preempted | RunState::Pruned => "KILLED",
    }
}

/// The config tree as MLflow params: dotted keys, strings as they are, the rest as JSON; nulls left
/// out, values cut to [`MAX_PARAM_VALUE`] characters.
pub fn params(config: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        let key = |k: &str| match prefix {
            "" => k.to_owned(),
            _ => format!("{prefix}.{k}"),
        };
        let text = match value {
            Value::Object(map) if !map.is_empty() => {
                return map.iter().for_each(|(k, v)| walk(&key(k), v, out));
            }
            Value::Null => return,
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        out.push((prefix.to_owned(), text.chars().take(MAX_PARAM_VALUE).collect()));
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out
}

/// A connection of one danling run to its MLflow run, with where its sending stands.
struct Sender {
    client: Client,
    info: RunInfo,
    link: Link,
    /// Where the unread part of `metrics.jsonl` starts: a byte offset and a line number.
    offset: u64,
    line: usize,
}

impl Sender {
    /// Connects to the run's MLflow run: the one `mlflow.json` names (on the same server), or a new
    /// one. Logs the params if they were not yet, and marks the run `RUNNING` when `running`.
    fn connect(info: RunInfo, running: bool) -> Result<Self, MlflowError> {
        let client = Client::new(&info.mlflow.uri)?;
        let path = info.dir.join(files::MLFLOW);
        let known = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Link>(&bytes).ok())
            .filter(|link| link.uri == client.uri() && link.experiment == info.experiment());
        let fresh = known.is_none();
        let link = match known {
            Some(link) => link,
            None => {
                let experiment = info.experiment();
                let experiment_id = client.experiment(&experiment)?;
                let start = std::fs::metadata(info.dir.join(files::RUNNER))
                    .and_then(|m| m.modified())
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis())
                    .unwrap_or_else(|_| chrono::Utc::now().timestamp_millis());
                let (run_id, artifact_uri) =
                    client.create_run(&experiment_id, &info.name, start, &info.tags())?;
                Link {
                    uri: client.uri().to_owned(),
                    experiment,
                    experiment_id,
                    run_id,
                    artifact_uri,
                    sent: 0,
                    sending: None,
                    params: false,
                    status: None,
                }
            }
        };
        let mut sender = Self {
            client,
            info,
            link,
            offset: 0,
            line: 0,
        };
        if fresh {
            sender.save();
        }
        // Killed while a batch was on its way: its lines count as sent if the server stored it.
        // Sending them again would log their points twice, with the times of their new lines.
        if let Some(sending) = sender.link.sending.clone() {
            let held = match sender.client.holds(&sender.link.run_id, &sending.last) {
                // A server without the call (before MLflow 2.11): sent again, maybe twice.
                Err(MlflowError::Refused { status: 404, .. }) => false,
                held => held?,
            };
            if held {
                sender.link.sent = sender.link.sent.max(sending.upto);
            }
            sender.link.sending = None;
            sender.save();
        }
        if !sender.link.params {
            for chunk in params(&sender.info.config).chunks(MAX_PARAMS) {
                sender.client.log_batch(&sender.link.run_id, &[], chunk, &[])?;
            }
            sender.link.params = true;
            sender.save();
        }
        if running && sender.link.status.is_some() {
            sender.client.update_run(&sender.link.run_id, "RUNNING", None)?;
            sender.link.status = None;
            sender.save();
        }
        Ok(sender)
    }

    /// Writes `mlflow.json`. A write that fails leaves the old one: points may then be sent again
    /// by a later attempt, never lost.
    fn save(&self) {
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.link) {
            let _ = write_atomic(&self.info.dir.join(files::MLFLOW), &bytes);
        }
    }

    /// Sends the lines of `metrics.jsonl` not sent yet. Returns how many points went.
    fn send_new(&mut self) -> Result<usize, MlflowError> {
        let path = self.info.dir.join(files::METRICS);
        // A file shorter than what was read was cut back since: read it again from the start (the
        // lines below `sent` are skipped, as after a resume).
        if std::fs::metadata(&path).is_ok_and(|m| m.len() < self.offset) {
            (self.offset, self.line) = (0, 0);
        }
        let (lines, end) = read_from(&path, self.offset);
        let mut batch: Vec<Metric> = Vec::new();
        let mut sent = 0;
        let mut line = self.line;
        for point in lines {
            line += 1;
            if line <= self.link.sent {
                continue;
            }
            if let Some(metric) = point.as_ref().and_then(metric) {
                batch.push(metric);
            }
            if batch.len() == MAX_METRICS {
                self.send(&batch, line)?;
                sent += batch.len();
                batch.clear();
            }
        }
        if !batch.is_empty() || line > self.link.sent {
            self.send(&batch, line)?;
            sent += batch.len();
        }
        (self.offset, self.line) = (end, line);
        Ok(sent)
    }

    /// Sends `batch`, the points of the lines up to `upto`, and counts those lines as sent.
    /// `mlflow.json` says the batch is on its way first: a run killed before the answer came then
    /// neither loses nor repeats it. A batch sent again in the same attempt (after an error) has the
    /// same points, and MLflow keeps one of each.
    fn send(&mut self, batch: &[Metric], upto: usize) -> Result<(), MlflowError> {
        if let Some(last) = batch.last() {
            self.link.sending = Some(Sending {
                upto,
                last: last.clone(),
            });
            self.save();
            self.client.log_batch(&self.link.run_id, batch, &[], &[])?;
        }
        self.link.sending = None;
        self.link.sent = upto;
        self.save();
        Ok(())
    }

    /// Sends the run's final status (and `best` as an artifact, when asked for).
    fn finish(&mut self, state: RunState) -> Result<(), MlflowError> {
        let status = mlflow_status(state);
        if self.link.status.as_deref() == Some(status) {
            return Ok(());
        }
        self.client.log_batch(
            &self.link.run_id,
            &[],
            &[],
            &[("danling.status".to_owned(), state.as_str().to_owned())],
        )?;
        if state != RunState::Running {
            if self.info.mlflow.artifacts {
                let best = self.best_checkpoint();
                if let Ok(bytes) = std::fs::read(&best) {
                    self.client
                        .upload_artifact(&self.link.artifact_uri, "best.safetensors", &bytes)?;
                }
            }
            self.client.update_run(
                &self.link.run_id,
                status,
                Some(chrono::Utc::now().timestamp_millis()),
            )?;
            self.link.status = Some(status.to_owned());
            self.save();
        }
        Ok(())
    }

    fn best_checkpoint(&self) -> PathBuf {
        let checkpoints = self.info.config["checkpoint_dir"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let name = self.info.config["checkpoint_dir_name"]
                    .as_str()
                    .unwrap_or("checkpoints");
                self.info.dir.join(name)
            });
        checkpoints.join(format!("best.{}", files::CHECKPOINT_EXTENSION))
    }
}

/// A point as an MLflow metric (`{split}/{name}`, milliseconds); `None` for a value that was not
/// finite.
fn metric(point: &Point) -> Option<Metric> {
    Some(Metric {
        key: format!("{}/{}", point.split, point.name),
        value: point.value?,
        timestamp: (point.time * 1e3).round() as i64,
        step: i64::try_from(point.step).unwrap_or(i64::MAX),
    })
}

/// The whole lines of `path` from byte `offset` on, each parsed (or `None`), and the offset after
/// the last whole line.
fn read_from(path: &Path, offset: u64) -> (Vec<Option<Point>>, u64) {
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut bytes)
    });
    if read.is_err() {
        return (Vec::new(), offset);
    }
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..whole]
        .split_inclusive(|&b| b == b'\n')
        .map(|line| serde_json::from_slice(line).ok())
        .collect();
    (lines, offset + whole as u64)
}

/// What `danling mlflow sync` did for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    /// The MLflow run.
    pub run_id: String,
    /// Points sent now.
    pub points: usize,
    /// The status sent, when the run has ended.
    pub status: Option<&'static str>,
}

/// Sends what a run directory holds and its MLflow run lacks: the run itself when it was never
/// created, the params, the points of `metrics.jsonl` not sent yet, and the final status of a run
/// that ended. `Ok(None)` for a run without an `mlflow` section.
pub fn sync(dir: &Path) -> Result<Option<Synced>, String> {
    let Some(info) = RunInfo::read(dir)? else {
        return Ok(None);
    };
    let status: Option<super::RunStatus> = std::fs::read(dir.join(files::STATUS))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let live = crate::fs::lock_holder(dir).is_some();
    let ended = status
        .map(|s| s.status)
        .filter(|s| *s != RunState::Running && !live);
    let mut sender = Sender::connect(info, false).map_err(|e| e.to_string())?;
    let points = sender.send_new().map_err(|e| e.to_string())?;
    if let Some(state) = ended {
        sender.finish(state).map_err(|e| e.to_string())?;
    }
    Ok(Some(Synced {
        run_id: sender.link.run_id.clone(),
        points,
        status: ended.map(mlflow_status),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use serde_json::json;

    #[test]
    fn the_config_becomes_dotted_params_without_nulls() {
        let config = json!({"seed": 1, "optim": {"lr": 0.01, "betas": [0.9, 0.99]}, "name": null,
                            "run_name": "x", "data": {}});
        let listed = params(&config);
        assert_eq!(
            listed,
            [
                ("seed".to_owned(), "1".to_owned()),
                ("optim.lr".to_owned(), "0.01".to_owned()),
                ("optim.betas".to_owned(), "[0.9,0.99]".to_owned()),
                ("run_name".to_owned(), "x".to_owned()),
                ("data".to_owned(), "{}".to_owned()),
            ]
        );
        let long = params(&json!({"text": "a".repeat(10_000)}));
        assert_eq!(long[0].1.len(), MAX_PARAM_VALUE);
    }

    #[test]
    fn points_become_metrics_keyed_by_split_and_name_in_milliseconds() {
        let point = Point {
            step: 7,
            epoch: 1,
            split: "val".into(),
            name: "accuracy".into(),
            value: Some(0.5),
            time: 1764801234.567,
        };
        assert_eq!(
            metric(&point),
            Some(Metric {
                key: "val/accuracy".into(),
                value: 0.5,
                timestamp: 1764801234567,
                step: 7
            })
        );
        assert_eq!(metric(&Point { value: None, ..point }), None);
        assert_eq!(mlflow_status(RunState::Preempted), "KILLED");
    }

    #[test]
    fn a_server_that_is_not_there_is_an_error_not_a_wait() {
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let started = Instant::now();
        let error = client.experiment("x").unwrap_err();
        assert!(matches!(error, MlflowError::Unreachable { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        if !cfg!(feature = "tls") {
            assert!(matches!(
                Client::new("https://example.com"),
                Err(MlflowError::NoTls(_))
            ));
        }
    }
}
