//! Streaming metric objects: fed batch by batch, computed over the whole split.
//!
//! Exact mode (the default) keeps every prediction and target and computes dataset-level values with
//! [`functional`](super::functional). Stream mode keeps only running, batch-size-weighted averages of
//! each batch's values (constant memory, as Python DanLing's `mode: stream`). Both merge, so a
//! multi-process reduction can combine them, and both serialise, so a mid-epoch checkpoint can carry
//! them.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::functional as f;
use super::metric::MetricBatch;

/// Which metrics a task reports, with DanLing's names (DESIGN, "Metric names").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "task", content = "n")]
pub enum MetricKind {
    /// Loss only.
    None,
    /// Binary classification: one probability (or logit) per sample, targets 0/1.
    Binary,
    /// Single-label classification over this many classes (macro averages).
    Multiclass(usize),
    /// Multi-label classification over this many labels (macro averages).
    Multilabel(usize),
    /// Regression with this many outputs (averaged over outputs).
    Regression(usize),
}

impl MetricKind {
    /// The metric names, in report order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            MetricKind::None => &[],
            MetricKind::Binary | MetricKind::Multiclass(_) | MetricKind::Multilabel(_) => {
                &["auroc", "auprc", "accuracy", "f1", "mcc"]
            }
            MetricKind::Regression(_) => &["pearson", "spearman", "r2", "mse", "rmse"],
        }
    }

    /// Whether the metrics read class (or label) targets rather than values.
    fn has_labels(self) -> bool {
        !matches!(self, MetricKind::Regression(_))
    }

    /// The metrics of one batch (or of everything) by the functional API, in `names()` order.
    fn evaluate(self, preds: &[f64], labels: &[i64], values: &[f64]) -> Vec<f64> {
        let (p, y) = (preds, labels);
        match self {
            MetricKind::None => Vec::new(),
            MetricKind::Binary => vec![
                f::binary_auroc(p, y),
                f::binary_auprc(p, y),
                f::binary_accuracy(p, y, 0.5),
                f::binary_f1(p, y, 0.5),
                f::binary_mcc(p, y, 0.5),
            ],
            MetricKind::Multiclass(c) => vec![
                f::multiclass_auroc(p, y, c),
                f::multiclass_auprc(p, y, c),
                f::multiclass_accuracy(p, y, c),
                f::multiclass_f1(p, y, c),
                f::multiclass_mcc(p, y, c),
            ],
            MetricKind::Multilabel(l) => vec![
                f::multilabel_auroc(p, y, l),
                f::multilabel_auprc(p, y, l),
                f::multilabel_accuracy(p, y, l, 0.5),
                f::multilabel_f1(p, y, l, 0.5),
                f::multilabel_mcc(p, y, l, 0.5),
            ],
            MetricKind::Regression(k) => {
                let metrics: [RegressionMetric; 5] = [f::pearson, f::spearman, f::r2, f::mse, f::rmse];
                metrics
                    .iter()
                    .map(|metric| mean_over_outputs(*metric, p, values, k))
                    .collect()
            }
        }
    }
}

/// How a [`Metrics`] accumulates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    /// Keep everything; compute dataset-level values.
    #[default]
    Exact,
    /// Keep running batch averages; constant memory.
    Stream,
}

/// Targets of one batch, as slices.
#[derive(Debug, Clone, Copy)]
pub enum TargetSlice<'a> {
    /// Class indices (binary, multi-class) or 0/1 labels (multi-label, row-major).
    Labels(&'a [i64]),
    /// Regression values, row-major `[n, outputs]`.
    Values(&'a [f64]),
}

/// A weighted running sum, for stream mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Running {
    sum: f64,
    weight: f64,
}

/// The metrics of one split: `update` per batch, `compute` at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    kind: MetricKind,
    mode: MetricMode,
    #[serde(with = "crate::nonfinite::vec")]
    preds: Vec<f64>,
    labels: Vec<i64>,
    #[serde(with = "crate::nonfinite::vec")]
    values: Vec<f64>,
    running: Vec<Running>,
}

/// Binary metrics: `auroc`, `auprc`, `accuracy`, `f1`, `mcc`.
pub fn binary_metrics() -> Metrics {
    Metrics::new(MetricKind::Binary, MetricMode::Exact)
}

/// Multi-class metrics (macro): `auroc`, `auprc`, `accuracy`, `f1`, `mcc`.
pub fn multiclass_metrics(num_classes: usize) -> Metrics {
    Metrics::new(MetricKind::Multiclass(num_classes), MetricMode::Exact)
}

/// Multi-label metrics (macro): `auroc`, `auprc`, `accuracy`, `f1`, `mcc`.
pub fn multilabel_metrics(num_labels: usize) -> Metrics {
    Metrics::new(MetricKind::Multilabel(num_labels), MetricMode::Exact)
}

/// Regression metrics: `pearson`, `spearman`, `r2`, `mse`, `rmse`.
pub fn regression_metrics(num_outputs: usize) -> Metrics {
    Metrics::new(MetricKind::Regression(num_outputs), MetricMode::Exact)
}

impl Metrics {
    /// Empty metrics of a kind and mode.
    pub fn new(kind: MetricKind, mode: MetricMode) -> Self {
        Self {
            kind,
            mode,
            preds: Vec::new(),
            labels: Vec::new(),
            values: Vec::new(),
            running: Vec::new(),
        }
    }

    /// The same metrics in another mode (call before the first update).
    pub fn with_mode(mut self, mode: MetricMode) -> Self {
        self.mode = mode;
        self
    }

    /// What the metrics are.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// Adds a batch: predictions (row-major `[n, k]`) and their targets. Targets of the wrong sort for
    /// the kind (values for a classifier, labels for regression) are ignored.
    pub fn update(&mut self, preds: &[f64], targets: TargetSlice<'_>) {
        if self.kind == MetricKind::None {
            return;
        }
        let (labels, values): (&[i64], &[f64]) = match targets {
            TargetSlice::Labels(labels) if self.kind.has_labels() => (labels, &[]),
            TargetSlice::Values(values) if !self.kind.has_labels() => (&[], values),
            _ => return,
        };
        match self.mode {
            MetricMode::Exact => {
                self.preds.extend_from_slice(preds);
                self.labels.extend_from_slice(labels);
                self.values.extend_from_slice(values);
            }
            MetricMode::Stream => {
                let weight = labels.len().max(values.len()) as f64;
                let batch = self.kind.evaluate(preds, labels, values);
                self.running.resize(batch.len(), Running::default());
                for (running, value) in self.running.iter_mut().zip(batch) {
                    // A batch on which a metric is undefined (one class only) does not count for it.
                    if value.is_finite() {
                        running.sum += value * weight;
                        running.weight += weight;
                    }
                }
            }
        }
    }

    /// Adds a batch as the runner hands it to every metric: outputs as the step gave them. Binary
    /// metrics read two-column outputs as two logits (the positive class's probability is
    /// `sigmoid(l1 - l0)`) and one column as it is; multi-label metrics read 0/1 target values as
    /// labels.
    pub fn update_batch(&mut self, batch: &MetricBatch<'_>) {
        if self.kind == MetricKind::None {
            return;
        }
        let two_logits;
        let preds = match (self.kind, batch.width) {
            (MetricKind::Binary, 2) => {
                two_logits = batch
                    .outputs
                    .chunks_exact(2)
                    .map(|row| 1.0 / (1.0 + (row[0] - row[1]).exp()))
                    .collect::<Vec<f64>>();
                &two_logits[..]
            }
            _ => batch.outputs,
        };
        match (self.kind, batch.targets) {
            (MetricKind::Multilabel(_), TargetSlice::Values(values)) => {
                let labels: Vec<i64> = values.iter().map(|&v| v as i64).collect();
                self.update(preds, TargetSlice::Labels(&labels));
            }
            (_, targets) => self.update(preds, targets),
        }
    }

    /// The metrics so far, by name. NaN where a metric is undefined (or nothing was added).
    pub fn compute(&self) -> IndexMap<String, f64> {
        let values = match self.mode {
            MetricMode::Exact => self.kind.evaluate(&self.preds, &self.labels, &self.values),
            MetricMode::Stream => self
                .kind
                .names()
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    self.running
                        .get(i)
                        .filter(|r| r.weight > 0.0)
                        .map_or(f64::NAN, |r| r.sum / r.weight)
                })
                .collect(),
        };
        self.kind
            .names()
            .iter()
            .map(|n| n.to_string())
            .zip(values)
            .collect()
    }

    /// Forgets everything added.
    pub fn reset(&mut self) {
        self.preds.clear();
        self.labels.clear();
        self.values.clear();
        self.running.clear();
    }

    /// Adds what `other` has seen, as if its batches had been added here. Both must be of the same
    /// kind and mode; otherwise nothing changes and `false` is returned.
    pub fn merge(&mut self, other: &Metrics) -> bool {
        if self.kind != other.kind || self.mode != other.mode {
            return false;
        }
        self.preds.extend_from_slice(&other.preds);
        self.labels.extend_from_slice(&other.labels);
        self.values.extend_from_slice(&other.values);
        if self.running.len() < other.running.len() {
            self.running.resize(other.running.len(), Running::default());
        }
        for (mine, theirs) in self.running.iter_mut().zip(&other.running) {
            mine.sum += theirs.sum;
            mine.weight += theirs.weight;
        }
        true
    }
}

/// A regression metric of the functional API.
type RegressionMetric = fn(&[f64], &[f64]) -> f64;

/// A regression metric averaged over the `k` outputs of row-major `[n, k]` data.
fn mean_over_outputs(metric: RegressionMetric, preds: &[f64], targets: &[f64], k: usize) -> f64 {
    if k <= 1 {
        return metric(preds, targets);
    }
    let column = |data: &[f64], j: usize| data.iter().skip(j).step_by(k).copied().collect::<Vec<_>>();
    (0..k)
        .map(|j| metric(&column(preds, j), &column(targets, j)))
        .sum::<f64>()
        / k as f64
}
