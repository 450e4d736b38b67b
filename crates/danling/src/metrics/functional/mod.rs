//! Exact, dataset-level metrics over slices, computed in f64, with torchmetrics' semantics:
//!
//! - thresholds are strict (`pred > threshold`);
//! - a target of -100 is ignored;
//! - binary and multi-label predictions outside `[0, 1]` are taken as logits (sigmoid), multi-class
//!   rows as logits (softmax) unless every value is in `[0, 1]`;
//! - AUROC and AUPRC group tied predictions into one threshold, in O(n log n);
//! - multi-class and multi-label values are macro averages over the classes (labels) that occur in the
//!   targets or the predictions;
//! - an undefined value (one class only, no positive prediction, a constant input, no samples, or
//!   slices whose lengths do not fit) is NaN, never 0 and never a panic.

mod classification;
mod ranking;
pub(crate) mod regression;

pub use classification::{
    binary_accuracy, binary_f1, binary_mcc, binary_precision, binary_recall, multiclass_accuracy,
    multiclass_f1, multiclass_mcc, multilabel_accuracy, multilabel_f1, multilabel_mcc,
};
pub use ranking::{
    binary_auprc, binary_auroc, multiclass_auprc, multiclass_auroc, multilabel_auprc, multilabel_auroc,
};
pub use regression::{mae, mse, pearson, r2, rmse, spearman};

/// The target value that marks a sample (or a label) as ignored.
pub const IGNORE_INDEX: i64 = -100;

/// `a / b`, or NaN when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

/// The logistic function, applied when binary predictions are not all probabilities.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Binary predictions as probabilities: unchanged when all are in `[0, 1]`, else a sigmoid of each.
fn probabilities(preds: &[f64]) -> Vec<f64> {
    if preds.iter().all(|p| (0.0..=1.0).contains(p)) {
        preds.to_vec()
    } else {
        preds.iter().map(|&p| sigmoid(p)).collect()
    }
}

/// Multi-class rows as probabilities: unchanged when all values are in `[0, 1]`, else a softmax of
/// each row.
fn row_probabilities(preds: &[f64], num_classes: usize) -> Vec<f64> {
    if preds.iter().all(|p| (0.0..=1.0).contains(p)) {
        return preds.to_vec();
    }
    let mut out = Vec::with_capacity(preds.len());
    for row in preds.chunks_exact(num_classes) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = row.iter().map(|&x| (x - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        out.extend(exp.iter().map(|e| e / sum));
    }
    out
}

/// Whether `[n, k]` predictions fit `n` targets.
fn fits(preds: usize, targets: usize, k: usize) -> bool {
    k > 0 && targets.checked_mul(k) == Some(preds)
}

/// The mean of the values that are not NaN; NaN when there are none.
fn nan_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, count) = values
        .into_iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    ratio(sum, count as f64)
}

#[cfg(test)]
mod tests;
