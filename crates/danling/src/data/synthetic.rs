//! A seeded, learnable classification problem.
//!
//! Each class has a centre drawn from a standard normal in every feature; a sample is its class's
//! centre plus Gaussian noise of standard deviation 1.5 in every feature. With a few features the
//! classes overlap, so no model is perfect, but a linear model beats chance by far. Train and
//! validation samples come from the same centres and different noise streams.

use rayon::prelude::*;

use super::{Tabular, Targets};
use crate::rng::Rng;

const CENTRES: u64 = 0x0C3A_72E5;
const TRAIN: u64 = 0x7A1;
const VAL: u64 = 0x7A2;
const NOISE: f64 = 1.5;

/// `(train, val)` with `features` features and `classes` classes, drawn from `seed`.
pub fn synthetic(
    n_train: usize,
    n_val: usize,
    features: usize,
    classes: usize,
    seed: u64,
) -> (Tabular, Tabular) {
    let classes = classes.max(2);
    let mut rng = Rng::from_parts(&[seed, CENTRES]);
    let centres: Vec<f64> = (0..classes * features).map(|_| rng.normal()).collect();
    let draw = |n: usize, stream: u64| {
        // Each row draws from its own stream, so rows are generated on parallel threads and the data
        // do not depend on the thread count.
        let mut features_out = vec![0.0f32; n * features];
        features_out
            .par_chunks_mut(features.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                let centre = &centres[(i % classes) * features..(i % classes + 1) * features];
                let mut rng = Rng::from_parts(&[seed, stream, i as u64]);
                for (pair, centre) in row.chunks_mut(2).zip(centre.chunks(2)) {
                    let (a, b) = rng.normal_pair();
                    for ((x, c), z) in pair.iter_mut().zip(centre).zip([a, b]) {
                        *x = (c + NOISE * z) as f32;
                    }
                }
            });
        Tabular {
            features: features_out,
            n,
            d: features,
            targets: Targets::Classes {
                labels: (0..n).map(|i| (i % classes) as i64).collect(),
                num_classes: classes,
            },
        }
    };
    (draw(n_train, TRAIN), draw(n_val, VAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        assert_eq!(synthetic(20, 5, 3, 2, 1), synthetic(20, 5, 3, 2, 1));
        assert_ne!(synthetic(20, 5, 3, 2, 1).0, synthetic(20, 5, 3, 2, 2).0);
    }

    #[test]
    fn nearest_centroid_beats_chance_by_far() {
        let (train, val) = synthetic(2000, 1000, 16, 4, 1016);
        let Targets::Classes {
            labels: train_labels, ..
        } = &train.targets
        else {
            panic!()
        };
        let Targets::Classes {
            labels: val_labels, ..
        } = &val.targets
        else {
            panic!()
        };
        let mut centroids = vec![0.0f64; 4 * 16];
        for (i, &label) in train_labels.iter().enumerate() {
            let c = label as usize;
            for (j, x) in train.row(i).iter().enumerate() {
                centroids[c * 16 + j] += f64::from(*x) / 500.0;
            }
        }
        let correct = (0..val.n)
            .filter(|&i| {
                let distance = |c: usize| -> f64 {
                    val.row(i)
                        .iter()
                        .enumerate()
                        .map(|(j, x)| (f64::from(*x) - centroids[c * 16 + j]).powi(2))
                        .sum()
                };
                let best = (0..4)
                    .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
                    .unwrap();
                best as i64 == val_labels[i]
            })
            .count();
        let accuracy = correct as f64 / val.n as f64;
        assert!(accuracy > 0.6 && accuracy < 1.0, "accuracy {accuracy}");
    }
}
