//! The results history of a run, and how it is scored.
//!
//! A result has the shape `{split: {metric: value}}` and is keyed by an index: the
//! completed epoch in epoch mode, the global step in step mode. [`Results`] merges the
//! results of each index, picks the best index, counts the evaluations since it for early
//! stopping, and renders the `results.json`, `latest.json` and `best.json` documents.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whether a lower or a higher score is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreMode {
    /// Lower is better, as for losses and errors.
    Min,
    /// Higher is better, as for accuracies.
    Max,
}

/// Metric names that imply [`ScoreMode::Min`], besides any name ending in `_loss`.
const MIN_METRICS: [&str; 5] = ["loss", "error", "mse", "rmse", "mae"];

impl ScoreMode {
    /// The mode a metric implies when none is configured: `Min` for `loss`, `error`, `mse`,
    /// `rmse`, `mae` and any `*_loss`; `Max` for everything else.
    pub fn default_for(score_name: &str) -> Self {
        if MIN_METRICS.contains(&score_name) || score_name.ends_with("_loss") {
            Self::Min
        } else {
            Self::Max
        }
    }

    /// Whether `candidate` is strictly better than `incumbent`; a NaN on either side never is.
    pub fn is_better(self, candidate: f64, incumbent: f64) -> bool {
        match self {
            Self::Min => candidate < incumbent,
            Self::Max => candidate > incumbent,
        }
    }
}

/// The parts of a train split's wall time, in the order its result gives them (each in seconds,
/// and as `{part}_share` of the split's `wall`).
pub const TIME_PARTS: [&str; 6] = [
    "data_wait",
    "forward_backward",
    "all_reduce",
    "optimizer",
    "checkpoint",
    "other",
];

/// The results that are wall-clock measurements, not outcomes of training, besides the
/// [`TIME_PARTS`] and their shares: `time` (seconds per batch), `samples_per_s`, a train split's
/// `tokens_per_s` and `wall` time, and the process's peak resident memory. They differ between two
/// runs of one config; every other result does not.
pub const WALL_CLOCK_KEYS: &[&str] = &["time", "samples_per_s", "tokens_per_s", "wall", "peak_rss_mib"];

/// Whether a result name is a wall-clock measurement: one of [`WALL_CLOCK_KEYS`], a
/// [`TIME_PARTS`] entry, or its `_share`.
pub fn is_wall_clock(name: &str) -> bool {
    let part = name.strip_suffix("_share").unwrap_or(name);
    WALL_CLOCK_KEYS.contains(&name) || TIME_PARTS.contains(&part)
}

/// The value of each metric of one split, in the order they were reported.
pub type SplitResult = IndexMap<String, f64>;

/// The metrics of each split at one index, in the order the splits were reported.
pub type Record = IndexMap<String, SplitResult>;

/// How runs are scored, resolved from the config keys `score_split`, `score_name` and `score_mode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// The split to score on; `None` lets [`Results::score_split`] choose from the latest result.
    pub split: Option<String>,
    /// The metric to score on.
    pub name: String,
    /// Whether a lower or a higher value of the metric is better.
    pub mode: ScoreMode,
}

impl Scoring {
    /// Resolves a scoring; without a `mode`, the one `name` implies ([`ScoreMode::default_for`]).
    pub fn new(split: Option<String>, name: impl Into<String>, mode: Option<ScoreMode>) -> Self {
        let name = name.into();
        let mode = mode.unwrap_or_else(|| ScoreMode::default_for(&name));
        Self { split, name, mode }
    }
}

impl Default for Scoring {
    /// Scores on `loss`, lower being better, in the split chosen from the latest result.
    fn default() -> Self {
        Self::new(None, "loss", None)
    }
}

/// Why a results document could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// The document has no `results` member, or it is not an object.
    #[error("the document has no `results` object")]
    MissingResults,
    /// An index key is not an unsigned integer.
    #[error("index {0:?} is not an unsigned integer")]
    InvalidIndex(String),
    /// A result or a split (named by its dotted path) is not an object.
    #[error("`{0}` is not an object")]
    NotAnObject(String),
    /// A metric value (named by its dotted path) is neither a number nor `null`.
    #[error("`{0}` is neither a number nor null")]
    InvalidValue(String),
}

/// The results history of a run: one merged [`Record`] per index, in index order.
///
/// Serializes (as state JSON, in checkpoints) as a map from index to record, with the non-finite
/// values of [`crate::nonfinite`]; the results files are [`results_document`](Self::results_document)
/// and its kin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Results {
    #[serde(with = "crate::nonfinite::history")]
    records: BTreeMap<u64, Record>,
}

impl Results {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the result of `index`, merging it into any earlier one for the same index:
    /// new values overwrite, new splits and metrics are appended.
    pub fn insert(&mut self, index: u64, record: Record) {
        let merged = self.records.entry(index).or_default();
        for (split, metrics) in record {
            merged.entry(split).or_default().extend(metrics);
        }
    }

    /// The result of `index`, if any.
    pub fn get(&self, index: u64) -> Option<&Record> {
        self.records.get(&index)
    }

    /// The number of indices with a result.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no result has been recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The results in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Record)> {
        self.records.iter().map(|(&index, record)| (index, record))
    }

    /// The result with the highest index.
    pub fn latest(&self) -> Option<(u64, &Record)> {
        self.records
            .last_key_value()
            .map(|(&index, record)| (index, record))
    }

    /// The split scores are read from: the configured one; otherwise, in the latest result,
    /// `val`, then `validate`, then the second split, then the first.
    pub fn score_split(&self, scoring: &Scoring) -> Option<String> {
        if let Some(split) = &scoring.split {
            return Some(split.clone());
        }
        let (_, record) = self.latest()?;
        let (split, _) = ["val", "validate"]
            .iter()
            .find_map(|name| record.get_key_value(*name))
            .or_else(|| record.get_index(1))
            .or_else(|| record.first())?;
        Some(split.clone())
    }

    /// The score of `index`, possibly NaN; `None` when `index` is not an evaluation, i.e. its
    /// result lacks the score split or metric.
    pub fn score(&self, index: u64, scoring: &Scoring) -> Option<f64> {
        let split = self.score_split(scoring)?;
        self.get(index)?.get(&split)?.get(&scoring.name).copied()
    }

    /// Every evaluation and its score, in index order, all read from the same split.
    fn scores(&self, scoring: &Scoring) -> impl Iterator<Item = (u64, f64)> {
        let split = self.score_split(scoring);
        self.iter().filter_map(move |(index, record)| {
            let score = record.get(split.as_deref()?)?.get(&scoring.name)?;
            Some((index, *score))
        })
    }

    /// The best index and its score; NaN is never best, and a tie goes to the later index.
    fn best_scored(&self, scoring: &Scoring) -> Option<(u64, f64)> {
        self.scores(scoring)
            .filter(|(_, score)| !score.is_nan())
            .reduce(|best, candidate| {
                if scoring.mode.is_better(best.1, candidate.1) {
                    best
                } else {
                    candidate
                }
            })
    }

    /// The result with the best score; NaN is never best, and a tie goes to the later index.
    pub fn best(&self, scoring: &Scoring) -> Option<(u64, &Record)> {
        let (index, _) = self.best_scored(scoring)?;
        self.get(index).map(|record| (index, record))
    }

    /// The score of the best result.
    pub fn best_score(&self, scoring: &Scoring) -> Option<f64> {
        self.best_scored(scoring).map(|(_, score)| score)
    }

    /// Whether the latest result is the best one, e.g. to decide to save a best checkpoint.
    pub fn is_latest_best(&self, scoring: &Scoring) -> bool {
        match (self.best_scored(scoring), self.latest()) {
            (Some((best, _)), Some((latest, _))) => best == latest,
            _ => false,
        }
    }

    /// The number of evaluations that have not improved on the best: those after the best
    /// index, or all of them when none has a non-NaN score.
    pub fn stale_count(&self, scoring: &Scoring) -> u64 {
        let best = self.best_scored(scoring).map(|(index, _)| index);
        self.scores(scoring)
            .filter(|&(index, _)| best.is_none_or(|best| index > best))
            .count() as u64
    }

    /// Whether to stop early: `patience` consecutive evaluations have not improved on the best.
    pub fn should_stop(&self, scoring: &Scoring, patience: Option<u64>) -> bool {
        patience.is_some_and(|patience| self.stale_count(scoring) >= patience)
    }

    /// The `results.json` document: `{"name", "id", "timestamp", "results": {index: result}}`.
    /// `timestamp` is passed in (RFC 3339) so the output is deterministic.
    pub fn results_document(&self, name: &str, id: &str, timestamp: &str) -> Value {
        let results = self
            .iter()
            .map(|(index, record)| (index.to_string(), Value::Object(record_json(record))));
        let mut doc = header(name, id, timestamp);
        doc.insert("results".to_owned(), Value::Object(results.collect()));
        Value::Object(doc)
    }

    /// The `latest.json` document: `{"name", "id", "timestamp", "index", split: {...}, ...}`.
    /// A split named like one of the metadata keys is left out, so the metadata stays readable.
    pub fn latest_document(&self, name: &str, id: &str, timestamp: &str) -> Option<Value> {
        let (index, record) = self.latest()?;
        Some(entry_document(index, record, name, id, timestamp))
    }

    /// The `best.json` document, shaped like [`Results::latest_document`], for the best index.
    pub fn best_document(&self, scoring: &Scoring, name: &str, id: &str, timestamp: &str) -> Option<Value> {
        let (index, record) = self.best(scoring)?;
        Some(entry_document(index, record, name, id, timestamp))
    }

    /// Parses the `results` member of a `results.json` document back (for tests and tools);
    /// `null` values read back as NaN.
    pub fn from_results_document(doc: &Value) -> Result<Self, ResultsError> {
        let entries = doc
            .get("results")
            .and_then(Value::as_object)
            .ok_or(ResultsError::MissingResults)?;
        let mut results = Self::new();
        for (key, value) in entries {
            let index = key.parse().map_err(|_| ResultsError::InvalidIndex(key.clone()))?;
            let mut record = Record::new();
            for (split, metrics) in as_object(value, key)? {
                let path = format!("{key}.{split}");
                let mut values = SplitResult::new();
                for (metric, value) in as_object(metrics, &path)? {
                    let number = match value {
                        Value::Null => f64::NAN,
                        _ => value
                            .as_f64()
                            .ok_or_else(|| ResultsError::InvalidValue(format!("{path}.{metric}")))?,
                    };
                    values.insert(metric.clone(), number);
                }
                record.insert(split.clone(), values);
            }
            results.insert(index, record);
        }
        Ok(results)
    }
}

/// `value` as an object, or an error naming its dotted `path`.
fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ResultsError> {
    value
        .as_object()
        .ok_or_else(|| ResultsError::NotAnObject(path.to_owned()))
}

/// The `name`, `id` and `timestamp` members every document starts with.
fn header(name: &str, id: &str, timestamp: &str) -> Map<String, Value> {
    [("name", name), ("id", id), ("timestamp", timestamp)]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), Value::from(value)))
        .collect()
}

/// A record as JSON, non-finite values becoming `null`.
fn record_json(record: &Record) -> Map<String, Value> {
    let mut json = Map::new();
    for (split, metrics) in record {
        let metrics = metrics.iter().map(|(m, &v)| (m.clone(), Value::from(v)));
        json.insert(split.clone(), Value::Object(metrics.collect()));
    }
    json
}

/// A `latest.json`/`best.json` document; the metadata wins over a split of the same name.
fn entry_document(index: u64, record: &Record, name: &str, id: &str, timestamp: &str) -> Value {
    let mut doc = header(name, id, timestamp);
    doc.insert("index".to_owned(), Value::from(index));
    for (split, metrics) in record_json(record) {
        doc.entry(split).or_insert(metrics);
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests;
