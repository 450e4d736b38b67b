//! Metrics: the [`Metric`] trait that every metric of a run implements, and the [`MetricSet`] a task
//! reports; exact, dataset-level functional metrics with torchmetrics' semantics; the built-in
//! streaming metrics (exact or batch-averaged) that merge and serialise; multi-task metrics; average
//! meters.

pub mod functional;
mod meters;
mod metric;
mod multitask;
mod set;
mod streaming;

pub use meters::{AverageMeter, AverageMeters};
pub use metric::{Metric, MetricBatch, MetricError};
pub use multitask::MultiTaskMetrics;
pub use set::{MetricSet, MetricStates, RESERVED_NAMES};
pub use streaming::{
    MetricKind, MetricMode, Metrics, TargetSlice, binary_metrics, multiclass_metrics, multilabel_metrics,
    regression_metrics,
};

#[cfg(test)]
mod tests;
