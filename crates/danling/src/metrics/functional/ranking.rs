//! AUROC and AUPRC (average precision), with tied predictions grouped into one threshold.

use super::{IGNORE_INDEX, fits, nan_mean, probabilities, row_probabilities};

/// Sorts `(score, positive)` pairs by descending score and returns the cumulative true and false
/// positives at each distinct threshold.
fn curve(mut pairs: Vec<(f64, bool)>) -> (Vec<f64>, Vec<f64>) {
    pairs.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tps, mut fps) = (Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &(score, positive)) in pairs.iter().enumerate() {
        if positive {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = pairs.get(i + 1).is_none_or(|next| next.0 != score);
        if last_of_tie {
            tps.push(tp);
            fps.push(fp);
        }
    }
    (tps, fps)
}

fn auroc_pairs(pairs: Vec<(f64, bool)>) -> f64 {
    let (tps, fps) = curve(pairs);
    let (Some(&p), Some(&n)) = (tps.last(), fps.last()) else {
        return f64::NAN;
    };
    if p == 0.0 || n == 0.0 {
        return f64::NAN;
    }
    let (mut area, mut prev_tpr, mut prev_fpr) = (0.0, 0.0, 0.0);
    for (tp, fp) in tps.iter().zip(&fps) {
        let (tpr, fpr) = (tp / p, fp / n);
        area += (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0;
        (prev_tpr, prev_fpr) = (tpr, fpr);
    }
    area
}

fn auprc_pairs(pairs: Vec<(f64, bool)>) -> f64 {
    let (tps, fps) = curve(pairs);
    let Some(&p) = tps.last() else { return f64::NAN };
    if p == 0.0 {
        return f64::NAN;
    }
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    for (tp, fp) in tps.iter().zip(&fps) {
        let recall = tp / p;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
    }
    ap
}

fn binary_pairs(preds: &[f64], targets: &[i64]) -> Option<Vec<(f64, bool)>> {
    if preds.len() != targets.len() {
        return None;
    }
    let probs = probabilities(preds);
    Some(
        probs
            .iter()
            .zip(targets)
            .filter(|(_, t)| **t != IGNORE_INDEX)
            .map(|(&p, &t)| (p, t == 1))
            .collect(),
    )
}

/// Area under the ROC curve (trapezoidal); NaN when only one class is present.
pub fn binary_auroc(preds: &[f64], targets: &[i64]) -> f64 {
    binary_pairs(preds, targets).map_or(f64::NAN, auroc_pairs)
}

/// Average precision (step-wise area under the precision-recall curve); NaN without positives.
pub fn binary_auprc(preds: &[f64], targets: &[i64]) -> f64 {
    binary_pairs(preds, targets).map_or(f64::NAN, auprc_pairs)
}

/// One-vs-rest pairs of class `c` over `[n, num_classes]` probabilities.
fn class_pairs(probs: &[f64], targets: &[i64], num_classes: usize, c: usize) -> Vec<(f64, bool)> {
    targets
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != IGNORE_INDEX)
        .map(|(i, &t)| (probs[i * num_classes + c], t == c as i64))
        .collect()
}

fn multiclass(
    preds: &[f64],
    targets: &[i64],
    num_classes: usize,
    metric: fn(Vec<(f64, bool)>) -> f64,
) -> f64 {
    if !fits(preds.len(), targets.len(), num_classes) {
        return f64::NAN;
    }
    let probs = row_probabilities(preds, num_classes);
    nan_mean((0..num_classes).map(|c| metric(class_pairs(&probs, targets, num_classes, c))))
}

/// Macro one-vs-rest AUROC over the classes that have both positives and negatives.
pub fn multiclass_auroc(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    multiclass(preds, targets, num_classes, auroc_pairs)
}

/// Macro one-vs-rest average precision over the classes that have positives.
pub fn multiclass_auprc(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    multiclass(preds, targets, num_classes, auprc_pairs)
}

fn multilabel(preds: &[f64], targets: &[i64], num_labels: usize, metric: fn(Vec<(f64, bool)>) -> f64) -> f64 {
    if num_labels == 0 || preds.len() != targets.len() || !preds.len().is_multiple_of(num_labels) {
        return f64::NAN;
    }
    let probs = probabilities(preds);
    nan_mean((0..num_labels).map(|l| {
        let pairs = (l..preds.len())
            .step_by(num_labels)
            .filter(|&i| targets[i] != IGNORE_INDEX)
            .map(|i| (probs[i], targets[i] == 1))
            .collect();
        metric(pairs)
    }))
}

/// Macro AUROC over the labels.
pub fn multilabel_auroc(preds: &[f64], targets: &[i64], num_labels: usize) -> f64 {
    multilabel(preds, targets, num_labels, auroc_pairs)
}

/// Macro average precision over the labels.
pub fn multilabel_auprc(preds: &[f64], targets: &[i64], num_labels: usize) -> f64 {
    multilabel(preds, targets, num_labels, auprc_pairs)
}
