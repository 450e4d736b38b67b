//! AUROC and AUPRC (average precision), with tied predictions grouped into one threshold.

use super::{IGNORE_INDEX, fits, nan_mean, probabilities, row_probabilities, sigmoid};

/// Maps a score to a `u64` whose unsigned order is the score's order (`-0.0` and `0.0` are one score).
fn key(score: f64) -> u64 {
    let bits = (score + 0.0).to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

/// Sorts keys ascending: a least-significant-digit radix sort, skipping the digits that every key
/// shares. O(n), which is what makes AUROC on millions of samples fast. Digits are 16 bits for large
/// inputs and 8 bits below 64k keys, where clearing 65536 counters per pass would cost more than the
/// keys themselves.
fn radix_sort(keys: &mut Vec<u64>) {
    if keys.len() < 256 {
        keys.sort_unstable();
    } else if keys.len() < 1 << 16 {
        radix_passes::<8>(keys);
    } else {
        radix_passes::<16>(keys);
    }
}

fn radix_passes<const BITS: u32>(keys: &mut Vec<u64>) {
    let mask = (1u64 << BITS) - 1;
    let mut scratch = vec![0u64; keys.len()];
    let mut counts = vec![0usize; 1 << BITS];
    for shift in (0..64).step_by(BITS as usize) {
        counts.iter_mut().for_each(|c| *c = 0);
        for &k in keys.iter() {
            counts[((k >> shift) & mask) as usize] += 1;
        }
        if counts.contains(&keys.len()) {
            continue;
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = offset;
            offset += n;
        }
        for &k in keys.iter() {
            let digit = ((k >> shift) & mask) as usize;
            scratch[counts[digit]] = k;
            counts[digit] += 1;
        }
        std::mem::swap(keys, &mut scratch);
    }
}

/// The cumulative true and false positives at each distinct threshold, from the highest score down.
/// Positives and negatives are sorted apart and swept together, so tied scores form one threshold.
fn curve(mut positives: Vec<u64>, mut negatives: Vec<u64>) -> (Vec<f64>, Vec<f64>) {
    radix_sort(&mut positives);
    radix_sort(&mut negatives);
    let (mut tps, mut fps) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (positives.len(), negatives.len());
    while i > 0 || j > 0 {
        let threshold = match (i, j) {
            (0, _) => negatives[j - 1],
            (_, 0) => positives[i - 1],
            _ => positives[i - 1].max(negatives[j - 1]),
        };
        while i > 0 && positives[i - 1] == threshold {
            i -= 1;
        }
        while j > 0 && negatives[j - 1] == threshold {
            j -= 1;
        }
        tps.push((positives.len() - i) as f64);
        fps.push((negatives.len() - j) as f64);
    }
    (tps, fps)
}

/// Splits scores into positive and negative keys.
/// Sort keys of the positive and of the negative samples.
type Keys = (Vec<u64>, Vec<u64>);

fn split(scored: impl Iterator<Item = (f64, bool)>) -> Keys {
    let (mut positives, mut negatives) = (Vec::new(), Vec::new());
    for (score, positive) in scored {
        if positive {
            positives.push(key(score))
        } else {
            negatives.push(key(score))
        }
    }
    (positives, negatives)
}

fn auroc_curve((positives, negatives): Keys) -> f64 {
    let (tps, fps) = curve(positives, negatives);
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

fn auprc_curve((positives, negatives): Keys) -> f64 {
    let (tps, fps) = curve(positives, negatives);
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

/// The positive and negative keys of binary predictions (a sigmoid applied if they are logits).
fn binary_keys(preds: &[f64], targets: &[i64]) -> Option<Keys> {
    if preds.len() != targets.len() {
        return None;
    }
    let logits = !preds.iter().all(|p| (0.0..=1.0).contains(p));
    let scored = preds.iter().zip(targets).filter(|(_, t)| **t != IGNORE_INDEX);
    Some(split(
        scored.map(|(&p, &t)| (if logits { sigmoid(p) } else { p }, t == 1)),
    ))
}

/// Area under the ROC curve (trapezoidal); NaN when only one class is present.
pub fn binary_auroc(preds: &[f64], targets: &[i64]) -> f64 {
    binary_keys(preds, targets).map_or(f64::NAN, auroc_curve)
}

/// Average precision (step-wise area under the precision-recall curve); NaN without positives.
pub fn binary_auprc(preds: &[f64], targets: &[i64]) -> f64 {
    binary_keys(preds, targets).map_or(f64::NAN, auprc_curve)
}

/// One metric per class (one-vs-rest over `[n, k]` scores), averaged over the classes where it is
/// defined. Classes run on parallel threads.
fn per_column(scores: &[f64], targets: &[i64], k: usize, layout: Layout, metric: fn(Keys) -> f64) -> f64 {
    let rows = scores.len() / k.max(1);
    let column = |c: usize| {
        let scored = (0..rows).filter_map(|i| {
            let (target, positive) = match layout {
                Layout::Classes => (targets[i], targets[i] == c as i64),
                Layout::Labels => (targets[i * k + c], targets[i * k + c] == 1),
            };
            (target != IGNORE_INDEX).then(|| (scores[i * k + c], positive))
        });
        metric(split(scored))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(k);
    if threads <= 1 || scores.len() < 1 << 16 {
        return nan_mean((0..k).map(column));
    }
    let values = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (t..k)
                        .step_by(threads)
                        .map(|c| (c, column(c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker that panicked is a bug: its panic goes on here, never a column left out.
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect::<Vec<_>>()
    });
    nan_mean(values.into_iter().map(|(_, v)| v))
}

/// How targets sit beside `[n, k]` scores.
#[derive(Clone, Copy)]
enum Layout {
    /// One class index per row; column `c`'s positives are the rows of class `c`.
    Classes,
    /// A 0/1 target per score.
    Labels,
}

fn multiclass(preds: &[f64], targets: &[i64], num_classes: usize, metric: fn(Keys) -> f64) -> f64 {
    if !fits(preds.len(), targets.len(), num_classes) {
        return f64::NAN;
    }
    per_column(
        &row_probabilities(preds, num_classes),
        targets,
        num_classes,
        Layout::Classes,
        metric,
    )
}

/// Macro one-vs-rest AUROC over the classes that have both positives and negatives.
pub fn multiclass_auroc(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    multiclass(preds, targets, num_classes, auroc_curve)
}

/// Macro one-vs-rest average precision over the classes that have positives.
pub fn multiclass_auprc(preds: &[f64], targets: &[i64], num_classes: usize) -> f64 {
    multiclass(preds, targets, num_classes, auprc_curve)
}

fn multilabel(preds: &[f64], targets: &[i64], num_labels: usize, metric: fn(Keys) -> f64) -> f64 {
    if num_labels == 0 || preds.len() != targets.len() || !preds.len().is_multiple_of(num_labels) {
        return f64::NAN;
    }
    per_column(&probabilities(preds), targets, num_labels, Layout::Labels, metric)
}

/// Macro AUROC over the labels.
pub fn multilabel_auroc(preds: &[f64], targets: &[i64], num_labels: usize) -> f64 {
    multilabel(preds, targets, num_labels, auroc_curve)
}

/// Macro average precision over the labels.
pub fn multilabel_auprc(preds: &[f64], targets: &[i64], num_labels: usize) -> f64 {
    multilabel(preds, targets, num_labels, auprc_curve)
}

#[cfg(test)]
mod radix_tests {
    use super::{key, radix_sort};
    use crate::rng::Rng;

    #[test]
    fn radix_sort_agrees_with_the_standard_sort_at_every_digit_width() {
        let mut rng = Rng::from_parts(&[5]);
        for n in [0, 1, 255, 256, 1000, 65_535, 65_536, 100_000] {
            // Scores with ties, both signs and shared leading digits.
            let mut keys: Vec<u64> = (0..n)
                .map(|_| key(((rng.uniform() - 0.3) * 1e3).round() / 1e3))
                .collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            radix_sort(&mut keys);
            assert_eq!(keys, expected, "n = {n}");
        }
    }
}
