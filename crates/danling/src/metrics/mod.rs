//! Metrics: exact, dataset-level functional metrics with torchmetrics' semantics; streaming metric
//! objects (exact or batch-averaged) that merge and serialise; multi-task metrics; average meters.

pub mod functional;
mod meters;
mod multitask;
mod streaming;

pub use meters::{AverageMeter, AverageMeters};
pub use multitask::MultiTaskMetrics;
pub use streaming::{
    MetricKind, MetricMode, Metrics, TargetSlice, binary_metrics, multiclass_metrics, multilabel_metrics,
    regression_metrics,
};

#[cfg(test)]
mod tests;
