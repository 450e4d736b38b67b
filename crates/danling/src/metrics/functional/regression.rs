//! Regression metrics.

use super::ratio;

fn paired(preds: &[f64], targets: &[f64]) -> bool {
    !preds.is_empty() && preds.len() == targets.len()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Pearson's correlation; NaN when either input is constant.
pub fn pearson(preds: &[f64], targets: &[f64]) -> f64 {
    if !paired(preds, targets) {
        return f64::NAN;
    }
    let (mp, mt) = (mean(preds), mean(targets));
    let (mut cov, mut vp, mut vt) = (0.0, 0.0, 0.0);
    for (p, t) in preds.iter().zip(targets) {
        let (dp, dt) = (p - mp, t - mt);
        cov += dp * dt;
        vp += dp * dp;
        vt += dt * dt;
    }
    ratio(cov, (vp * vt).sqrt())
}

/// Ranks from 1, ties sharing their average rank.
pub(crate) fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = rank);
        start = end;
    }
    ranks
}

/// Spearman's rank correlation (Pearson's over average ranks).
pub fn spearman(preds: &[f64], targets: &[f64]) -> f64 {
    if !paired(preds, targets) {
        return f64::NAN;
    }
    pearson(&ranks(preds), &ranks(targets))
}

/// Coefficient of determination; NaN when the targets are constant.
pub fn r2(preds: &[f64], targets: &[f64]) -> f64 {
    if !paired(preds, targets) {
        return f64::NAN;
    }
    let mt = mean(targets);
    let residual: f64 = preds.iter().zip(targets).map(|(p, t)| (t - p).powi(2)).sum();
    let total: f64 = targets.iter().map(|t| (t - mt).powi(2)).sum();
    1.0 - ratio(residual, total)
}

/// Mean squared error.
pub fn mse(preds: &[f64], targets: &[f64]) -> f64 {
    if !paired(preds, targets) {
        return f64::NAN;
    }
    preds
        .iter()
        .zip(targets)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / preds.len() as f64
}

/// Root mean squared error.
pub fn rmse(preds: &[f64], targets: &[f64]) -> f64 {
    mse(preds, targets).sqrt()
}

/// Mean absolute error.
pub fn mae(preds: &[f64], targets: &[f64]) -> f64 {
    if !paired(preds, targets) {
        return f64::NAN;
    }
    preds.iter().zip(targets).map(|(p, t)| (p - t).abs()).sum::<f64>() / preds.len() as f64
}
