//! A small in-memory data set: row-major `f32` features and class or value targets.

use serde::{Deserialize, Serialize};

use super::DataError;
use crate::rng::Rng;

/// Stream tag of the validation split's RNG.
const SPLIT_STREAM: u64 = 0x5EED_5A1D;

/// What the targets are.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices in `0..num_classes`.
    Classes {
        /// One label per row.
        labels: Vec<i64>,
        /// The number of classes.
        num_classes: usize,
    },
    /// Regression values, row-major `[n, outputs]`.
    Values {
        /// The values.
        values: Vec<f32>,
        /// Values per row.
        outputs: usize,
    },
}

impl Targets {
    /// Whether the targets are classes.
    pub fn is_classification(&self) -> bool {
        matches!(self, Targets::Classes { .. })
    }

    /// The number of classes, for classification.
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            Targets::Classes { num_classes, .. } => Some(*num_classes),
            Targets::Values { .. } => None,
        }
    }

    /// The model outputs these targets need: one per class, or one per value.
    pub fn outputs(&self) -> usize {
        match self {
            Targets::Classes { num_classes, .. } => *num_classes,
            Targets::Values { outputs, .. } => *outputs,
        }
    }

    fn select(&self, rows: &[usize]) -> Self {
        match self {
            Targets::Classes { labels, num_classes } => Targets::Classes {
                labels: rows.iter().map(|&i| labels[i]).collect(),
                num_classes: *num_classes,
            },
            Targets::Values { values, outputs } => Targets::Values {
                values: rows
                    .iter()
                    .flat_map(|&i| values[i * outputs..(i + 1) * outputs].iter().copied())
                    .collect(),
                outputs: *outputs,
            },
        }
    }
}

/// Row-major features `[n, d]` and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Tabular {
    /// The features, row-major.
    pub features: Vec<f32>,
    /// Rows.
    pub n: usize,
    /// Features per row.
    pub d: usize,
    /// One target per row.
    pub targets: Targets,
}

impl Tabular {
    /// Rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.d..(i + 1) * self.d]
    }

    /// A data set of the given rows, in that order.
    pub fn select(&self, rows: &[usize]) -> Tabular {
        Tabular {
            features: rows.iter().flat_map(|&i| self.row(i).iter().copied()).collect(),
            n: rows.len(),
            d: self.d,
            targets: self.targets.select(rows),
        }
    }

    /// Splits off a shuffled validation part of `round(n · val_fraction)` rows, drawn from `seed`;
    /// returns `(train, val)`, each keeping the original row order.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Tabular, Tabular), DataError> {
        let (train, val) = split_indices(self.n, val_fraction, seed)?;
        Ok((self.select(&train), self.select(&val)))
    }
}

/// The rows of a train part and of a shuffled validation part of `round(n · val_fraction)` rows,
/// drawn from `seed`, each in ascending order.
pub(crate) fn split_indices(
    n: usize,
    val_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), DataError> {
    let n_val = (n as f64 * val_fraction).round() as usize;
    if !(val_fraction > 0.0 && val_fraction < 1.0) || n_val == 0 || n_val >= n {
        return Err(DataError::Split {
            n,
            fraction: val_fraction,
        });
    }
    let order = Rng::from_parts(&[seed, SPLIT_STREAM]).permutation(n);
    let (mut val, mut train) = (order[..n_val].to_vec(), order[n_val..].to_vec());
    val.sort_unstable();
    train.sort_unstable();
    Ok((train, val))
}

/// Per-feature mean and standard deviation, fitted on one split (train) and applied to any split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Per-feature means.
    pub mean: Vec<f32>,
    /// Per-feature standard deviations (population); 1 for a constant feature.
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits on `data`, accumulating in f64. A constant feature gets std 1, so it maps to 0.
    pub fn fit(data: &Tabular) -> Self {
        let (n, d) = (data.n.max(1) as f64, data.d);
        let mut mean = vec![0.0f64; d];
        for i in 0..data.n {
            for (m, x) in mean.iter_mut().zip(data.row(i)) {
                *m += f64::from(*x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0f64; d];
        for i in 0..data.n {
            for ((v, x), m) in var.iter_mut().zip(data.row(i)).zip(&mean) {
                *v += (f64::from(*x) - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| (v / n).sqrt())
            .map(|s| if s > 1e-12 { s as f32 } else { 1.0 })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Standardises `data`'s features in place.
    pub fn apply(&self, data: &mut Tabular) {
        let d = data.d;
        for (j, x) in data.features.iter_mut().enumerate() {
            let k = j % d;
            *x = (*x - self.mean[k]) / self.std[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Tabular {
        Tabular {
            features: (0..n * 2).map(|v| v as f32).collect(),
            n,
            d: 2,
            targets: Targets::Classes {
                labels: (0..n as i64).map(|i| i % 3).collect(),
                num_classes: 3,
            },
        }
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let all = data(50);
        let (train, val) = all.split(0.2, 1016).unwrap();
        assert_eq!((train.len(), val.len()), (40, 10));
        assert_eq!(all.split(0.2, 1016).unwrap(), (train.clone(), val.clone()));
        assert_ne!(all.split(0.2, 7).unwrap().1, val);
        let mut firsts: Vec<f32> = train
            .features
            .iter()
            .chain(&val.features)
            .step_by(2)
            .copied()
            .collect();
        firsts.sort_by(f32::total_cmp);
        assert_eq!(firsts, (0..50).map(|i| (2 * i) as f32).collect::<Vec<_>>());
    }

    #[test]
    fn split_refuses_an_empty_part() {
        assert!(data(3).split(0.01, 1).is_err());
        assert!(data(3).split(0.99, 1).is_err());
        assert!(data(3).split(1.0, 1).is_err());
    }

    #[test]
    fn standardizer_fits_on_one_split_and_maps_constants_to_zero() {
        let mut train = Tabular {
            features: vec![1.0, 5.0, 3.0, 5.0],
            n: 2,
            d: 2,
            targets: Targets::Values {
                values: vec![0.0, 0.0],
                outputs: 1,
            },
        };
        let scaler = Standardizer::fit(&train);
        assert_eq!(scaler.mean, [2.0, 5.0]);
        assert_eq!(scaler.std, [1.0, 1.0]);
        scaler.apply(&mut train);
        assert_eq!(train.features, [-1.0, 0.0, 1.0, 0.0]);
    }
}
