//! The metric trait: what every metric of a run is, the built-in ones and a user's alike.
//!
//! A metric keeps streaming state over a split. The runner feeds it each batch's host values (a
//! [`MetricBatch`]: the step's outputs and targets, copied off the device once for all metrics),
//! gathers and merges its state across ranks, saves its state in a mid-epoch checkpoint and restores
//! it on resume, and computes its values at the end of the split. Its values are then peers of the
//! built-in ones everywhere: `results.json`, `latest.json`/`best.json`, `score_name`, TensorBoard,
//! `danling runs` and the report.
//!
//! ```
//! use danling::metrics::{Metric, MetricBatch, MetricError, TargetSlice};
//! use serde_json::{Value, json};
//!
//! /// The fraction of samples whose class is among the two highest outputs.
//! #[derive(Debug, Default)]
//! struct Top2 {
//!     hits: u64,
//!     seen: u64,
//! }
//!
//! impl Metric for Top2 {
//!     fn names(&self) -> Vec<String> {
//!         vec!["top2_accuracy".into()]
//!     }
//!     fn update(&mut self, batch: &MetricBatch<'_>) {
//!         let TargetSlice::Labels(labels) = batch.targets else { return };
//!         for (row, &label) in batch.outputs.chunks(batch.width).zip(labels) {
//!             let above = row.iter().filter(|&&v| v > row[label as usize]).count();
//!             self.hits += u64::from(above < 2);
//!             self.seen += 1;
//!         }
//!     }
//!     fn compute(&self) -> Vec<f64> {
//!         vec![self.hits as f64 / self.seen as f64]
//!     }
//!     fn state(&self) -> Value {
//!         json!([self.hits, self.seen])
//!     }
//!     fn merge(&mut self, state: &Value) -> Result<(), MetricError> {
//!         let [hits, seen]: [u64; 2] = serde_json::from_value(state.clone())?;
//!         self.hits += hits;
//!         self.seen += seen;
//!         Ok(())
//!     }
//! }
//! ```

use std::fmt;

use serde_json::Value;

use super::TargetSlice;

/// One batch as the metrics see it: host values, the same for every metric of the run.
#[derive(Debug, Clone, Copy)]
pub struct MetricBatch<'a> {
    /// The step's outputs, row-major `[n, width]` (logits for the built-in classification steps).
    pub outputs: &'a [f64],
    /// Outputs per sample.
    pub width: usize,
    /// The targets: class indices, or values row-major (multi-label 0/1 targets are values).
    pub targets: TargetSlice<'a>,
}

impl MetricBatch<'_> {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.outputs.len() / self.width.max(1)
    }

    /// Whether the batch has no sample.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }
}

/// A metric's state could not be merged or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The state is not what this metric writes.
    #[error("a metric state that does not fit: {0}")]
    State(#[from] serde_json::Error),
    /// The state belongs to another metric, or another configuration of it.
    #[error("a metric state of {found}, merged into {expected}")]
    Mismatch {
        /// What the metric is.
        expected: String,
        /// What the state says it is.
        found: String,
    },
}

/// A metric: streaming state over a split, updated batch by batch, merged across ranks, saved in
/// checkpoints, and computed at the end.
///
/// One metric may report several values (the built-in preset reports five from one copy of the
/// predictions); most report one.
pub trait Metric: fmt::Debug + Send {
    /// The names of the values it reports, in report order. They must not collide with another
    /// metric's of the run, nor with `loss`, `lr`, `time`, `samples_per_s` or `skipped`.
    fn names(&self) -> Vec<String>;

    /// Whether a higher value of `name` (one of [`names`](Self::names)) is better: the default
    /// `score_mode` when `score_name` is `name`. Higher by default.
    fn higher_is_better(&self, name: &str) -> bool {
        let _ = name;
        true
    }

    /// Adds a batch.
    fn update(&mut self, batch: &MetricBatch<'_>);

    /// The values so far, one per name, in [`names`](Self::names) order; NaN where undefined.
    fn compute(&self) -> Vec<f64>;

    /// Its state, as JSON: what a mid-epoch checkpoint keeps and what ranks exchange.
    fn state(&self) -> Value;

    /// Adds a state of the same metric ([`state`](Self::state) of another rank, or of the metric as
    /// a checkpoint saved it) as if its batches had been added here, after the ones added so far.
    fn merge(&mut self, state: &Value) -> Result<(), MetricError>;
}
