//! The metrics of one split, accumulated batch by batch and computed over the whole split.

use burn::tensor::{Tensor, TensorData};
use indexmap::IndexMap;

use super::functional as f;
use crate::runner::Targets;

/// Which metrics a task reports, with DanLing's names (see DESIGN, "Metric names").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Loss only.
    None,
    /// Two-class classification: outputs are two logits, the positive class is 1.
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
}

/// Keeps what the metrics of one split need and computes them exactly over the whole split.
#[derive(Debug, Clone)]
pub struct MetricSet {
    kind: MetricKind,
    preds: Vec<f64>,
    labels: Vec<i64>,
    values: Vec<f64>,
}

impl MetricSet {
    /// An empty set of the given kind.
    pub fn new(kind: MetricKind) -> Self {
        Self {
            kind,
            preds: Vec::new(),
            labels: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds a batch of outputs `[n, k]` and their targets.
    pub fn update(&mut self, outputs: &Tensor<2>, targets: &Targets) {
        if self.kind == MetricKind::None {
            return;
        }
        let outputs = to_f64(outputs.clone().into_data());
        match self.kind {
            // Two logits: the probability of class 1 is the sigmoid of their difference.
            MetricKind::Binary => self.preds.extend(
                outputs
                    .chunks_exact(2)
                    .map(|row| 1.0 / (1.0 + (row[0] - row[1]).exp())),
            ),
            _ => self.preds.extend(outputs),
        }
        match targets {
            Targets::Classes(labels) => self.labels.extend(to_i64(labels.clone().into_data())),
            Targets::Values(values) => {
                let values = to_f64(values.clone().into_data());
                match self.kind {
                    MetricKind::Multilabel(_) => self.labels.extend(values.iter().map(|v| *v as i64)),
                    _ => self.values.extend(values),
                }
            }
        }
    }

    /// The metrics over everything added so far, by name.
    pub fn compute(&self) -> IndexMap<String, f64> {
        let (p, y) = (&self.preds, &self.labels);
        let values: Vec<f64> = match self.kind {
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
                    .map(|metric| mean_over_outputs(*metric, p, &self.values, k))
                    .collect()
            }
        };
        self.kind
            .names()
            .iter()
            .map(|n| n.to_string())
            .zip(values)
            .collect()
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

fn to_f64(data: TensorData) -> Vec<f64> {
    data.convert::<f64>().try_to_vec::<f64>().unwrap_or_default()
}

fn to_i64(data: TensorData) -> Vec<i64> {
    data.convert::<i64>().try_to_vec::<i64>().unwrap_or_default()
}
