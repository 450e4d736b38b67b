//! Metrics: exact, dataset-level functional metrics with torchmetrics' semantics, and the per-split
//! collection the runner feeds batch by batch.

pub mod functional;
mod set;

pub use set::{MetricKind, MetricSet};
