//! `status.json`: how a run stands or how it ended, for the tools that list runs (`danling runs`).
//!
//! A training process writes it when it enters the run directory (`running`) and when it leaves
//! (`finished`, `stopped` or `failed`, with the reason). A `running` file whose process is gone is a
//! run that was killed before it could say so.

use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// A process is training it.
    Running,
    /// The budget was reached, or early stopping ended it.
    Finished,
    /// A stop signal ended it; it can be resumed.
    Stopped,
    /// An error ended it.
    Failed,
    /// A search sweep stopped it at a rung: its score there was not among the best. The reason
    /// names the rung; a later promotion resumes it.
    Pruned,
    /// A preemption signal ended it (SIGUSR1, or `preempt_signal`); it is requeued, or waits to be.
    Preempted,
}

impl RunState {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
            RunState::Pruned => "pruned",
            RunState::Preempted => "preempted",
        }
    }
}

/// The document of `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// How the run stands.
    pub status: RunState,
    /// Why it ended: `budget`, `early stopping`, the signal, or the error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the run's first attempt started (RFC 3339).
    pub started: String,
    /// When the latest attempt started.
    pub attempt_started: String,
    /// When the latest attempt ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Seconds trained by the attempts that ended.
    pub seconds: f64,
    /// The process of the latest attempt (rank 0's).
    pub pid: u32,
    /// The processes that train the run.
    pub world_size: usize,
}

/// How a run stands as a reader sees it: what `status.json` says, checked against the run's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A live process holds the run's lock.
    Running,
    /// The budget was reached, or early stopping ended it.
    Finished,
    /// A stop signal ended it; it can be resumed.
    Stopped,
    /// An error ended it.
    Failed,
    /// A search sweep stopped it at a rung.
    Pruned,
    /// A preemption signal ended it; it is requeued, or waits to be.
    Preempted,
    /// `status.json` says `running`, but no live process holds the lock: the process was killed
    /// (`kill -9`, the OOM killer, a lost node) before it could write how it ended.
    Killed,
}

impl Standing {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Running => "running",
            Standing::Finished => "finished",
            Standing::Stopped => "stopped",
            Standing::Failed => "failed",
            Standing::Pruned => "pruned",
            Standing::Preempted => "preempted",
            Standing::Killed => "killed",
        }
    }
}

/// What a reader makes of a `status.json` ([`RunStatus::observe`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// How the run stands.
    pub standing: Standing,
    /// Seconds trained: the attempts that ended, plus the one in progress so far, or the killed one
    /// up to its last write.
    pub seconds: f64,
    /// When the latest attempt ended: as recorded, or a killed one's last write (RFC 3339).
    pub ended: Option<String>,
}

impl RunStatus {
    /// How the run stands, given whether a live process holds its lock (`held`), when `status.json`
    /// was written (`written`, its modification time), the time of the newest file written in its
    /// directory (`last_write`, [`last_write`]; only read for a killed run) and `now`.
    ///
    /// A `running` status with no live holder is [`Standing::Killed`], and its attempt trained from
    /// its start to the last write: nothing it did after that survives.
    pub fn observe(
        &self,
        held: bool,
        written: Option<DateTime<Utc>>,
        last_write: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Observed {
        let attempt = self.attempt_start(written);
        let since_attempt =
            |end: DateTime<Utc>| attempt.map_or(0.0, |at| (end - at).num_milliseconds().max(0) as f64 / 1e3);
        let recorded = |standing| Observed {
            standing,
            seconds: self.seconds,
            ended: self.ended.clone(),
        };
        match (held, self.status) {
            (true, RunState::Running) => Observed {
                standing: Standing::Running,
                seconds: self.seconds + since_attempt(now),
                ended: None,
            },
            // A new attempt that has the lock and has not written its status yet.
            (true, _) => Observed {
                ended: None,
                ..recorded(Standing::Running)
            },
            (false, RunState::Running) => Observed {
                standing: Standing::Killed,
                seconds: self.seconds + last_write.map_or(0.0, since_attempt),
                ended: last_write.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            },
            (false, RunState::Finished) => recorded(Standing::Finished),
            (false, RunState::Stopped) => recorded(Standing::Stopped),
            (false, RunState::Failed) => recorded(Standing::Failed),
            (false, RunState::Pruned) => recorded(Standing::Pruned),
            (false, RunState::Preempted) => recorded(Standing::Preempted),
        }
    }

    /// When the latest attempt started. `attempt_started` is written to the millisecond; one
    /// recorded to the whole second (an older run) is refined by its file's time `written` when that
    /// falls within the second, since a `running` status is written once, as the attempt starts.
    fn attempt_start(&self, written: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let recorded = DateTime::parse_from_rfc3339(&self.attempt_started)
            .ok()?
            .with_timezone(&Utc);
        if recorded.timestamp_subsec_nanos() != 0 {
            return Some(recorded);
        }
        let within = |t: &DateTime<Utc>| *t >= recorded && *t - recorded < chrono::TimeDelta::seconds(1);
        Some(
            written
                .filter(|t| self.status == RunState::Running && within(t))
                .unwrap_or(recorded),
        )
    }
}

/// Marks the run in `dir` pruned with `reason`, when no process trains it: its `status.json`
/// rewritten atomically with the state, the reason and the time. A run whose lock is held is left as
/// it is (`Ok(false)`).
pub fn mark_pruned(dir: &Path, reason: &str) -> Result<bool, String> {
    let path = dir.join(super::files::STATUS);
    if crate::fs::lock_holder(dir).is_some() {
        return Ok(false);
    }
    let text = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut status: RunStatus =
        serde_json::from_slice(&text).map_err(|e| format!("{} is not a status: {e}", path.display()))?;
    if status.status == RunState::Running {
        return Ok(false);
    }
    status.status = RunState::Pruned;
    status.reason = Some(reason.to_owned());
    let bytes = serde_json::to_vec_pretty(&status).map_err(|e| e.to_string())?;
    crate::fs::write_atomic(&path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(true)
}

/// The time of the newest file written in run directory `dir`, in its subdirectories
/// (`checkpoints/`, `tensorboard/`) and in `checkpoint_dir` when it lies elsewhere. Entries that
/// cannot be read are passed over; `None` when nothing can be.
pub fn last_write(dir: &Path, checkpoint_dir: Option<&Path>) -> Option<DateTime<Utc>> {
    fn newest(dir: &Path, depth: usize) -> Option<SystemTime> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let kind = entry.file_type().ok()?;
                if kind.is_dir() {
                    (depth > 0).then(|| newest(&entry.path(), depth - 1)).flatten()
                } else if kind.is_file() {
                    entry.metadata().ok()?.modified().ok()
                } else {
                    None
                }
            })
            .max()
    }
    let elsewhere = checkpoint_dir
        .filter(|c| !c.starts_with(dir))
        .and_then(|c| newest(c, 0));
    newest(dir, 1).max(elsewhere).map(DateTime::<Utc>::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: RunState, seconds: f64) -> RunStatus {
        RunStatus {
            status: state,
            reason: None,
            started: "2026-12-01T10:00:00Z".into(),
            attempt_started: "2026-12-01T12:00:00Z".into(),
            ended: (state != RunState::Running).then(|| "2026-12-01T12:00:30Z".into()),
            seconds,
            pid: 4242,
            world_size: 1,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_running_status_without_a_holder_is_killed_with_its_time_up_to_the_last_write() {
        let now = at("2026-12-02T09:00:00Z");
        let seen =
            status(RunState::Running, 100.0).observe(false, None, Some(at("2026-12-01T12:00:12.5Z")), now);
        assert_eq!(seen.standing, Standing::Killed);
        assert_eq!(seen.seconds, 112.5);
        assert_eq!(seen.ended.as_deref(), Some("2026-12-01T12:00:12.500Z"));
        assert_eq!(seen.standing.as_str(), "killed");
        // Nothing written since the attempt started (or nothing readable): no time for it.
        let early =
            status(RunState::Running, 100.0).observe(false, None, Some(at("2026-12-01T11:59:00Z")), now);
        assert_eq!((early.standing, early.seconds), (Standing::Killed, 100.0));
        let unknown = status(RunState::Running, 100.0).observe(false, None, None, now);
        assert_eq!(
            (unknown.standing, unknown.seconds, unknown.ended),
            (Standing::Killed, 100.0, None)
        );
    }

    #[test]
    fn a_held_lock_is_running_until_now_and_an_ended_attempt_is_as_recorded() {
        let now = at("2026-12-01T12:01:00Z");
        let last = Some(at("2026-12-01T12:00:10Z"));
        let running = status(RunState::Running, 5.0).observe(true, None, last, now);
        assert_eq!(
            (running.standing, running.seconds, running.ended),
            (Standing::Running, 65.0, None)
        );
        // A new attempt holds the lock before it rewrites the status of the last one.
        let starting = status(RunState::Stopped, 5.0).observe(true, None, last, now);
        assert_eq!((starting.standing, starting.seconds), (Standing::Running, 5.0));
        for (state, standing) in [
            (RunState::Finished, Standing::Finished),
            (RunState::Stopped, Standing::Stopped),
            (RunState::Failed, Standing::Failed),
        ] {
            let seen = status(state, 30.0).observe(false, None, last, now);
            assert_eq!(seen.standing, standing);
            assert_eq!(seen.seconds, 30.0);
            assert_eq!(seen.ended.as_deref(), Some("2026-12-01T12:00:30Z"));
        }
        // A time that does not parse adds nothing.
        let mut odd = status(RunState::Running, 5.0);
        odd.attempt_started = "yesterday".into();
        assert_eq!(odd.observe(false, None, last, now).seconds, 5.0);
    }

    #[test]
    fn the_status_files_time_gives_the_attempts_start_within_its_second() {
        let now = at("2026-12-01T12:01:00Z");
        let last = Some(at("2026-12-01T12:00:12.5Z"));
        let killed = status(RunState::Running, 0.0);
        let precise = killed.observe(false, Some(at("2026-12-01T12:00:00.75Z")), last, now);
        assert_eq!(precise.seconds, 11.75);
        assert_eq!(
            killed
                .observe(true, Some(at("2026-12-01T12:00:00.75Z")), last, now)
                .seconds,
            59.25
        );
        // A file time outside the recorded second (rewritten since, or copied) is not the start.
        for written in [
            "2026-12-01T12:00:01Z",
            "2026-12-01T11:59:59.9Z",
            "2026-12-03T00:00:00Z",
        ] {
            assert_eq!(
                killed.observe(false, Some(at(written)), last, now).seconds,
                12.5,
                "{written}"
            );
        }
        // A start recorded to the millisecond is the start, whatever the file's time.
        let mut precise = status(RunState::Running, 0.0);
        precise.attempt_started = "2026-12-01T12:00:00.25Z".into();
        for written in [
            None,
            Some(at("2026-12-01T12:00:00.75Z")),
            Some(at("2026-12-01T12:00:02Z")),
        ] {
            assert_eq!(precise.observe(false, written, last, now).seconds, 12.25);
        }
    }

    #[test]
    fn the_last_write_is_the_newest_file_in_the_dir_its_subdirs_and_the_checkpoint_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        let elsewhere = root.path().join("ckpt");
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let base = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let touch = |path: &Path, secs: u64| {
            let file = std::fs::File::create(path).unwrap();
            file.set_modified(base + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        touch(&dir.join("status.json"), 1);
        touch(&dir.join("run.log"), 5);
        assert_eq!(
            last_write(&dir, None),
            Some(DateTime::<Utc>::from(base + std::time::Duration::from_secs(5)))
        );
        touch(&dir.join("checkpoints/step-7.safetensors"), 9);
        assert_eq!(
            last_write(&dir, None),
            Some(DateTime::<Utc>::from(base + std::time::Duration::from_secs(9)))
        );
        touch(&elsewhere.join("latest.safetensors"), 12);
        assert_eq!(
            last_write(&dir, Some(&elsewhere)),
            Some(DateTime::<Utc>::from(base + std::time::Duration::from_secs(12)))
        );
        assert_eq!(last_write(&root.path().join("nowhere"), None), None);
    }
}
