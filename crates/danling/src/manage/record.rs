//! A sweep's own record, `{project_root}/{group}.sweep.json`: its space, sampler, seed and pruner,
//! and each trial's values, run directory, state and score at each rung. It is rewritten
//! (atomically) whenever a trial starts, pauses, ends or is promoted. Running the sweep again reads
//! it, and goes on: the trials already drawn keep their values, promotions included; the report
//! draws each sweep's ladder from it.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::asha::Ladder;
use crate::results::ScoreMode;

/// The version of the record's format.
pub const VERSION: u32 = 1;

/// The file name of the record of sweep `group`.
pub fn file_name(group: &str) -> String {
    let safe: String = group
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{safe}.sweep.json")
}

/// A sweep, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// The format's version.
    pub version: u32,
    /// The group every trial shares.
    pub group: String,
    /// Each swept key: a grid's values as JSON, or its distribution.
    pub space: IndexMap<String, String>,
    /// `grid`, `random` or `tpe`.
    pub sampler: String,
    /// The seed of the draws (the config's `seed`).
    pub seed: u64,
    /// Trials drawn per grid point (1 for a grid).
    pub trials_per_point: u64,
    /// ASHA's rungs, when it prunes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ladder: Option<Ladder>,
    /// What rungs count: `epoch` or `step`.
    pub unit: String,
    /// The score the sweep ranks by: `split.metric`, or the metric when the split is the default.
    pub score: String,
    /// Whether a lower or a higher score is better.
    pub mode: ScoreMode,
    /// The trials in the order they were drawn.
    pub trials: Vec<TrialRecord>,
}

impl SweepRecord {
    /// The epochs (or steps) trained by every trial so far.
    pub fn spent(&self) -> u64 {
        self.trials
            .iter()
            .filter_map(|t| t.rungs.last())
            .map(|r| r.at)
            .sum()
    }

    /// The best score of a trial trained to its end, as it improved: `(spent, best)` each time a
    /// finished trial beat the best before it.
    pub fn best_curve(&self) -> Vec<(u64, f64)> {
        let mut finished: Vec<(u64, f64)> = self
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Finished)
            .filter_map(|t| t.rungs.last())
            .filter(|r| !r.score.is_nan())
            .map(|r| (r.spent, r.score))
            .collect();
        finished.sort_by_key(|(spent, _)| *spent);
        let mut curve: Vec<(u64, f64)> = Vec::new();
        for (spent, score) in finished {
            if curve
                .last()
                .is_none_or(|(_, best)| self.mode.is_better(score, *best))
            {
                curve.push((spent, score));
            }
        }
        curve
    }
}

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Drawn, and training (or to be resumed: the sweep stopped while it trained).
    Running,
    /// Paused at its last rung, not promoted (yet): `pruned` in its `status.json`.
    Pruned,
    /// It trained its budget (or early stopping ended it).
    Finished,
    /// Its process failed; running the sweep again retries it.
    Failed,
}

impl TrialState {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Pruned => "pruned",
            TrialState::Finished => "finished",
            TrialState::Failed => "failed",
        }
    }
}

/// One trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// Its number: the order it was drawn in, from 0.
    pub number: u64,
    /// Its values of the swept keys.
    pub params: IndexMap<String, Value>,
    /// Its run name.
    pub run_name: String,
    /// Its run directory.
    pub dir: PathBuf,
    /// Where it stands.
    pub state: TrialState,
    /// The rung it trains (or trained) toward: an index into the ladder's rungs (0 without one).
    pub target: usize,
    /// Its score at each rung it reached, in order.
    #[serde(default)]
    pub rungs: Vec<RungScore>,
    /// Why it was pruned or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TrialRecord {
    /// Records the trial's score at its target rung, reached at `at` (an epoch or step), the sweep
    /// having trained `spent` before this trial's latest stretch.
    pub fn reached(&mut self, at: u64, score: f64, spent: u64) {
        self.rungs.truncate(self.target);
        let before = self.rungs.last().map_or(0, |r| r.at);
        self.rungs.push(RungScore {
            at,
            score,
            spent: spent + at.saturating_sub(before),
        });
    }
}

/// A trial's score at a rung.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RungScore {
    /// The epoch (or step) of the rung.
    pub at: u64,
    /// The trial's best score up to it (NaN is written as null).
    #[serde(with = "nan_as_null")]
    pub score: f64,
    /// The epochs (or steps) the whole sweep had trained when this score came in: the x of a
    /// search's best score against its cost.
    #[serde(default)]
    pub spent: u64,
}

mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

impl SweepRecord {
    /// The record at `path`: `None` when there is none; an error names the file when it cannot be
    /// read or is not a record.
    pub fn read(path: &Path) -> Result<Option<Self>, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the sweep's record {}: {e}", path.display())),
        };
        let record: Self = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a sweep record: {e}", path.display()))?;
        if record.version != VERSION {
            return Err(format!(
                "{} is a sweep record of version {}, not {VERSION}",
                path.display(),
                record.version
            ));
        }
        Ok(Some(record))
    }

    /// Writes the record to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        crate::fs::write_atomic(path, text.as_bytes())
            .map_err(|e| format!("cannot write the sweep's record {}: {e}", path.display()))
    }

    /// What makes this sweep the same search as `other`: space, sampler, seed, pruner and score.
    /// Another number of trials is the same sweep, extended or cut short.
    pub fn same_search(&self, other: &Self) -> Result<(), String> {
        let differs = |what: &str, a: String, b: String| {
            Err(format!(
                "the sweep's record {} was written for another {what} ({a}, not {b}); name this \
                 sweep with --group, or remove the record",
                file_name(&self.group),
            ))
        };
        if self.space != other.space {
            return differs("space", format!("{:?}", self.space), format!("{:?}", other.space));
        }
        if self.sampler != other.sampler {
            return differs("sampler", self.sampler.clone(), other.sampler.clone());
        }
        if self.seed != other.seed {
            return differs("seed", self.seed.to_string(), other.seed.to_string());
        }
        if self.ladder != other.ladder {
            return differs(
                "pruner",
                format!("{:?}", self.ladder),
                format!("{:?}", other.ladder),
            );
        }
        Ok(())
    }
}
