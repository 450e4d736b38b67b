//! Thresholded and argmax metrics: accuracy, precision, recall, F1 and MCC.
//!
//! Inside a macro average a class's own 0/0 counts as 0, as in torchmetrics; a multi-class average
//! leaves out the classes that neither occur nor are predicted.

use super::{IGNORE_INDEX, fits, probabilities, ratio, row_probabilities};

/// Counts of a binary confusion matrix.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tp: f64,
    fp: f64,
    tn: f64,
    fn_: f64,
}

impl Counts {
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1.0,
            (true, false) => self.fp += 1.0,
            (false, false) => self.tn += 1.0,
            (false, true) => self.fn_ += 1.0,
        }
    }

    fn total(&self) -> f64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }

    fn f1(&self) -> f64 {
        ratio(2.0 * self.tp, 2.0 * self.tp + self.fp + self.fn_)
    }

    fn mcc(&self) -> f64 {
        let Counts { tp, fp, tn, fn_ } = *self;
        ratio(
            tp * tn - fp * fn_,
            ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt(),
        )
    }
}

fn binary_counts(preds: &[f64], targets: &[i64], threshold: f64) -> Option<Counts> {
    if preds.len() != targets.len() {
        return None;
    }
    let mut counts = Counts::default();
    for (p, &t) in probabilities(preds)
        .iter()
        .zip(targets)
        .filter(|(_, t)| **t != IGNORE_INDEX)
    {
        counts.add(*p > threshold, t == 1);
    }
    Some(counts)
}

/// Fraction of samples whose thresholded prediction equals the target.
pub fn binary_accuracy(preds: &[f64], targets: &[i64], threshold: f64) -> f64 {
    binary_counts(preds, targets, threshold).map_or(f64::NAN, |c| c.accuracy())
}

/// tp / (tp + fp); NaN without positive predictions.
pub fn binary_precision(preds: &[f64], targets: &[i64], threshold: f64) -> f64 {
    binary_counts(preds, targets, threshold).map_or(f64::NAN, |c| ratio(c.tp, c.tp + c.fp))
}

/// tp / (tp + fn); NaN without positive targets.
pub fn binary_recall(preds: &[f64], targets: &[i64], threshold: f64) -> f64 {
    binary_counts(preds, targets, threshold).map_or(f64::NAN, |c| ratio(c.tp, c.tp + c.fn_))
}

/// 2tp / (2tp + fp + fn); NaN when there is neither a positive target nor a positive prediction.
pub fn binary_f1(preds: &[f64], targets: &[i64], threshold: f64) -> f64 {
    binary_counts(preds, targets, threshold).map_or(f64::NAN, |c| c.f1())
}

/// Matthews correlation coefficient; NaN when a row or column of the confusion matrix is empty.
pub fn binary_mcc(preds: &[f64], targets: &[i64], threshold: f64) -> f64 {
    binary_counts(preds, targets, threshold).map_or(f64::NAN, |c| c.mcc())
}

/// The confusion matrix `[actual][predicted]` of argmax predictions (the first maximum wins).
fn confusion(preds: &[f64], targets: &[i64], num_classes: usize) -> Option<Vec<Vec<f64>>> {
    if !fits(preds.len(), targets.len(), num_classes) {
        return None;
    }
    let probs = row_probabilities(preds, num_classes);
    let mut matrix = vec![vec![0.0; num_classes]; num_classes];
    for (row, &t) in probs.chunks_exact(num_classes).zip(targets) {
        if t == IGNORE_INDEX {
            continue;
        }
        let actual = usize::try_from(t).ok().filter(|&t| t < num_classes)?;
        let predicted = row
            .iter()
            .enumerate()
            .fold(0, |best, (c, &p)| if p > row[best] { c } else { best });
        matrix[actual][predicted] += 1.0;
    }
    Some(matrix)
}

/// Macro average of `score(tp, fp, fn)` over the classes that occur or are predicted.
fn macro_average(matrix: &[Vec<f64>], score: fn(f64, f64, f64) -> f64) -> f64 {
    let k = matrix.len();
    let (mut sum, mut count) = (0.0, 0.0);
    for (c, row) in matrix.iter().enumerate() {
        let tp = row[c];
        let fn_ = row.iter().sum::<f64>() - tp;
        let fp = (0..k).map(|r| matrix[r][c]).sum::<f64>() - tp;
        if tp + fp + fn_ > 0.0 {
            let value = score(tp, fp, fn_);
            sum += if value.is_nan() { 0.0 } else { value };
            count += 1.0;
        }
    }
    ratio(sum, count)
}

/// Macro recall over classes (balanced accuracy).
pub fn multiclass_accuracy(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    confusion(preds, targets, num_classes)
        .map_or(f64::NAN, |m| macro_average(&m, |tp, _, fn_| ratio(tp, tp + fn_)))
}

/// Macro F1 over classes.
pub fn multiclass_f1(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    confusion(preds, targets, num_classes).map_or(f64::NAN, |m| {
        macro_average(&m, |tp, fp, fn_| ratio(2.0 * tp, 2.0 * tp + fp + fn_))
    })
}

/// Multi-class Matthews correlation (Gorodkin's R_K) of the confusion matrix.
pub fn multiclass_mcc(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    let Some(matrix) = confusion(preds, targets, num_classes) else {
        return f64::NAN;
    };
    let k = matrix.len();
    let actual: Vec<f64> = matrix.iter().map(|row| row.iter().sum()).collect();
    let predicted: Vec<f64> = (0..k).map(|c| matrix.iter().map(|row| row[c]).sum()).collect();
    let correct: f64 = (0..k).map(|c| matrix[c][c]).sum();
    let total: f64 = actual.iter().sum();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let covariance = correct * total - dot(&actual, &predicted);
    let spread = (total * total - dot(&predicted, &predicted)) * (total * total - dot(&actual, &actual));
    ratio(covariance, spread.sqrt())
}

/// One confusion count per label of `[n, num_labels]` data.
fn label_counts(preds: &[f64], targets: &[i64], num_labels: usize, threshold: f64) -> Option<Vec<Counts>> {
    if num_labels == 0 || preds.len() != targets.len() || !preds.len().is_multiple_of(num_labels) {
        return None;
    }
    let mut counts = vec![Counts::default(); num_labels];
    for (i, (p, &t)) in probabilities(preds).iter().zip(targets).enumerate() {
        if t != IGNORE_INDEX {
            counts[i % num_labels].add(*p > threshold, t == 1);
        }
    }
    Some(counts)
}

fn label_mean(counts: &[Counts], score: fn(&Counts) -> f64) -> f64 {
    let values: Vec<f64> = counts
        .iter()
        .filter(|c| c.total() > 0.0)
        .map(score)
        .map(|v| if v.is_nan() { 0.0 } else { v })
        .collect();
    ratio(values.iter().sum(), values.len() as f64)
}

/// Macro average over labels of each label's accuracy.
pub fn multilabel_accuracy(preds: &[f64], targets: &[i64], num_labels: usize, threshold: f64) -> f64 {
    label_counts(preds, targets, num_labels, threshold).map_or(f64::NAN, |c| label_mean(&c, Counts::accuracy))
}

/// Macro average over labels of each label's F1.
pub fn multilabel_f1(preds: &[f64], targets: &[i64], num_labels: usize, threshold: f64) -> f64 {
    label_counts(preds, targets, num_labels, threshold).map_or(f64::NAN, |c| label_mean(&c, Counts::f1))
}

/// Matthews correlation over every (sample, label) decision, as torchmetrics computes it for
/// multi-label data (the per-label confusion matrices summed).
pub fn multilabel_mcc(preds: &[f64], targets: &[i64], num_labels: usize, threshold: f64) -> f64 {
    let Some(counts) = label_counts(preds, targets, num_labels, threshold) else {
        return f64::NAN;
    };
    let total = counts.iter().fold(Counts::default(), |a, c| Counts {
        tp: a.tp + c.tp,
        fp: a.fp + c.fp,
        tn: a.tn + c.tn,
        fn_: a.fn_ + c.fn_,
    });
    total.mcc()
}
