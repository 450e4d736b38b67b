//! The tree-structured Parzen estimator (Bergstra et al., 2011) as Optuna runs it by default (its
//! multivariate form, Falkner et al., 2018): the first [`STARTUP`] trials are drawn at random; after
//! them, the observed trials are split into the best `γ(n) = min(⌈n/10⌉, 25)` and the rest, a Parzen
//! density over all the keys at once is fitted to each, on the keys' internal scales
//! ([`Dist::bounds`]), with the distributions' own uniform prior as one more kernel, and of
//! [`CANDIDATES`] draws from the good density the one with the highest ratio of good to bad density
//! is proposed.
//!
//! A trial that a pruner stopped at a rung counts as worse than every trial that got further, and
//! is ranked by its score among those stopped at the same rung, as Optuna ranks pruned trials by
//! their last intermediate value. Nothing here reads a clock or a global generator: a proposal is a
//! function of the seed-derived generator and the observations, which are ordered by (rungs short of
//! the end, score, trial number).

use serde_json::Value;

use super::space::Dist;
use crate::rng::Rng;

/// Trials drawn at random before the estimator takes over (Optuna's `n_startup_trials`).
pub const STARTUP: usize = 10;
/// Draws from the good density compared per key (Optuna's `n_ei_candidates`).
const CANDIDATES: usize = 24;
/// The weight of the prior component.
const PRIOR_WEIGHT: f64 = 1.0;

/// One finished or pruned trial as the sampler sees it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Its value of each key, in the order of the keys sampled.
    pub values: Vec<Value>,
    /// How many rungs short of the last it stopped (0: it trained its whole budget).
    pub short: usize,
    /// Its score, oriented so that lower is better (NaN counts as the worst).
    pub loss: f64,
    /// Its number in the sweep: the order of trials, which weighs older ones less.
    pub number: u64,
}

/// How many of `n` observations make the good group.
fn gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// Optuna's weights over trials by age: equal for the newest 25, a ramp from `1/n` for the older.
fn age_weights(n: usize) -> Vec<f64> {
    if n <= 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    (0..ramp)
        .map(|i| 1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp.max(2) - 1) as f64)
        .chain(std::iter::repeat_n(1.0, 25))
        .collect()
}

/// Proposes values of `dists` from `observed`, drawing from `rng`: at random until [`STARTUP`]
/// observations exist.
pub fn propose(dists: &[Dist], observed: &[Observation], rng: &mut Rng) -> Vec<Value> {
    if observed.len() < STARTUP {
        return dists.iter().map(|dist| dist.sample(rng)).collect();
    }
    let mut ranked: Vec<&Observation> = observed.iter().collect();
    ranked.sort_by(|a, b| {
        let loss = |o: &Observation| if o.loss.is_nan() { f64::INFINITY } else { o.loss };
        a.short
            .cmp(&b.short)
            .then(loss(a).total_cmp(&loss(b)))
            .then(a.number.cmp(&b.number))
    });
    let (good, bad) = ranked.split_at(gamma(ranked.len()));
    let l = Mixture::fit(dists, good);
    let g = Mixture::fit(dists, bad);
    let mut best: Option<(f64, Vec<f64>)> = None;
    for _ in 0..CANDIDATES {
        // A candidate is scored where the distributions round it to.
        let x: Vec<f64> = l
            .sample(rng)
            .into_iter()
            .zip(dists)
            .map(|(x, dist)| dist.internal(&dist.value(x)).unwrap_or(x))
            .collect();
        let score = l.log_pdf(&x) - g.log_pdf(&x);
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, x));
        }
    }
    let x = best.map(|(_, x)| x).unwrap_or_default();
    dists.iter().zip(x).map(|(dist, x)| dist.value(x)).collect()
}

/// One key's part of a kernel.
#[derive(Debug, Clone)]
enum Part {
    /// A normal truncated to the key's bounds.
    Normal { mu: f64, sigma: f64 },
    /// Probabilities over the choices.
    Choice(Vec<f64>),
}

/// A mixture of kernels over every key at once: one per observation, and the prior. Each kernel is
/// a product over the keys (Optuna's multivariate TPE, its default since 4.x): drawing a kernel and
/// then each key from it keeps what made a good trial good together.
struct Mixture {
    bounds: Vec<(f64, f64)>,
    /// Per kernel, its weight (normalised) and its part per key.
    kernels: Vec<(f64, Vec<Part>)>,
}

impl Mixture {
    fn fit(dists: &[Dist], group: &[&Observation]) -> Self {
        let mut by_age: Vec<&Observation> = group.to_vec();
        by_age.sort_by_key(|o| o.number);
        let weights = age_weights(by_age.len());
        let n = by_age.len();
        // Each key's parts, observations first and the prior last.
        let parts: Vec<Vec<Part>> = dists
            .iter()
            .enumerate()
            .map(|(k, dist)| {
                let points: Vec<f64> = by_age
                    .iter()
                    .map(|o| dist.internal(&o.values[k]).unwrap_or(f64::NAN))
                    .collect();
                match dist {
                    Dist::Choice(values) => categorical_parts(values.len(), &points),
                    _ => numeric_parts(dist.bounds(), &points),
                }
            })
            .collect();
        let total: f64 = weights.iter().sum::<f64>() + PRIOR_WEIGHT;
        let kernels = (0..=n)
            .map(|i| {
                let weight = if i < n { weights[i] } else { PRIOR_WEIGHT };
                (weight / total, parts.iter().map(|p| p[i].clone()).collect())
            })
            .collect();
        Self {
            bounds: dists.iter().map(Dist::bounds).collect(),
            kernels,
        }
    }

    fn sample(&self, rng: &mut Rng) -> Vec<f64> {
        let weights: Vec<f64> = self.kernels.iter().map(|(w, _)| *w).collect();
        let (_, parts) = &self.kernels[pick(&weights, rng)];
        parts
            .iter()
            .zip(&self.bounds)
            .map(|(part, &(lo, hi))| match part {
                Part::Normal { mu, sigma } => {
                    for _ in 0..100 {
                        let x = mu + sigma * rng.normal();
                        if (lo..=hi).contains(&x) {
                            return x;
                        }
                    }
                    lo + rng.uniform() * (hi - lo)
                }
                Part::Choice(probabilities) => pick(probabilities, rng) as f64 + 0.5,
            })
            .collect()
    }

    fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = self
            .kernels
            .iter()
            .map(|(weight, parts)| {
                weight.ln()
                    + parts
                        .iter()
                        .zip(&self.bounds)
                        .zip(x)
                        .map(|((part, &(lo, hi)), &x)| match part {
                            Part::Normal { mu, sigma } => {
                                let mass = (normal_cdf((hi - mu) / sigma) - normal_cdf((lo - mu) / sigma))
                                    .max(1e-300);
                                let z = (x - mu) / sigma;
                                -0.5 * z * z - sigma.ln() - 0.5 * std::f64::consts::TAU.ln() - mass.ln()
                            }
                            Part::Choice(probabilities) => probabilities
                                .get(x.floor() as usize)
                                .map_or(f64::NEG_INFINITY, |p| p.ln()),
                        })
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

/// Optuna's widths for a number: each point's the larger gap to its neighbours (the outermost of
/// two or more take their inner gap; the bounds are no neighbours), clipped to
/// `[(hi - lo) / min(100, n + 2), hi - lo]`; then the prior, at the middle and as wide as the range.
fn numeric_parts((lo, hi): (f64, f64), points: &[f64]) -> Vec<Part> {
    let span = hi - lo;
    let n = points.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| points[a].total_cmp(&points[b]));
    let sorted: Vec<f64> = order.iter().map(|&i| points[i]).collect();
    let min_sigma = span / (n as f64 + 2.0).min(100.0);
    let mut sigmas = vec![span; n];
    for (rank, &i) in order.iter().enumerate() {
        let left = if rank == 0 {
            sorted[0] - lo
        } else {
            sorted[rank] - sorted[rank - 1]
        };
        let right = if rank + 1 == n {
            hi - sorted[rank]
        } else {
            sorted[rank + 1] - sorted[rank]
        };
        let sigma = match (rank, n) {
            (_, 1) => left.max(right),
            (0, _) => right,
            (r, n) if r + 1 == n => left,
            _ => left.max(right),
        };
        sigmas[i] = sigma.clamp(min_sigma, span);
    }
    points
        .iter()
        .zip(sigmas)
        .map(|(&mu, sigma)| Part::Normal { mu, sigma })
        .chain(std::iter::once(Part::Normal {
            mu: 0.5 * (lo + hi),
            sigma: span,
        }))
        .collect()
}

/// Optuna's kernels for a choice: each point's choice, smoothed by the prior's weight spread over
/// every choice; then the prior, uniform.
fn categorical_parts(choices: usize, points: &[f64]) -> Vec<Part> {
    let kernels = points.len() + 1;
    let smooth = PRIOR_WEIGHT / kernels as f64;
    points
        .iter()
        .map(|x| {
            let mut row = vec![smooth; choices];
            if let Some(p) = row.get_mut(x.floor() as usize) {
                *p += 1.0;
            }
            let total: f64 = row.iter().sum();
            Part::Choice(row.iter().map(|p| p / total).collect())
        })
        .chain(std::iter::once(Part::Choice(vec![1.0 / choices as f64; choices])))
        .collect()
}

/// An index drawn with probability proportional to `weights`.
fn pick(weights: &[f64], rng: &mut Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.uniform() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

fn log_sum_exp(terms: &[f64]) -> f64 {
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// The standard normal's distribution function, through `erfc` (Numerical Recipes' Chebyshev fit,
/// relative error below 1.2e-7 everywhere, so the far tails keep their size).
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr() -> Dist {
        Dist::LogUniform { low: 1e-5, high: 1.0 }
    }

    /// A search of `n` trials of `objective` over `dists`, each proposed from those before it.
    fn search(dists: &[Dist], n: u64, seed: u64, objective: impl Fn(&[Value]) -> f64) -> Vec<Observation> {
        let mut observed = Vec::new();
        for number in 0..n {
            let values = propose(dists, &observed, &mut Rng::from_parts(&[seed, number]));
            let loss = objective(&values);
            observed.push(Observation {
                values,
                short: 0,
                loss,
                number,
            });
        }
        observed
    }

    fn bowl(values: &[Value]) -> f64 {
        // Best at lr = 1e-2 and width 64 (choice index 2).
        let lr = values[0].as_f64().unwrap().log10() + 2.0;
        let width = values[1].as_i64().unwrap() as f64;
        lr * lr + ((width / 64.0).log2()).powi(2)
    }

    #[test]
    fn the_normal_distribution_function_is_accurate_in_the_body_and_the_tails() {
        for (z, expected) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_543),
            (-1.959_963_984_540_054, 0.025),
            (-8.0, 6.220_960_574_271_785e-16),
        ] {
            let got = normal_cdf(z);
            assert!(((got - expected) / expected).abs() < 2e-7, "{z}: {got}");
        }
    }

    #[test]
    fn proposals_are_a_function_of_the_seed_and_the_observations() {
        let dists = [
            lr(),
            Dist::Choice(vec![16.into(), 32.into(), 64.into(), 128.into()]),
        ];
        let a = search(&dists, 30, 7, bowl);
        let b = search(&dists, 30, 7, bowl);
        assert_eq!(
            a.iter().map(|o| &o.values).collect::<Vec<_>>(),
            b.iter().map(|o| &o.values).collect::<Vec<_>>()
        );
        let c = search(&dists, 30, 8, bowl);
        assert_ne!(a[0].values, c[0].values);
        // The order observations arrive in does not matter: only what they are.
        let mut reversed = a[..20].to_vec();
        reversed.reverse();
        assert_eq!(
            propose(&dists, &a[..20], &mut Rng::from_parts(&[1])),
            propose(&dists, &reversed, &mut Rng::from_parts(&[1]))
        );
    }

    #[test]
    fn the_estimator_finds_a_bowl_faster_than_random_draws() {
        let dists = [
            lr(),
            Dist::Choice(vec![16.into(), 32.into(), 64.into(), 128.into()]),
        ];
        let (mut tpe_wins, mut tpe_total, mut random_total) = (0, 0.0, 0.0);
        for seed in 0..10 {
            let best = |o: &[Observation]| o.iter().map(|o| o.loss).fold(f64::INFINITY, f64::min);
            let tpe = best(&search(&dists, 40, seed, bowl));
            let random: Vec<Observation> = (0..40u64)
                .map(|number| {
                    let mut rng = Rng::from_parts(&[seed, number]);
                    let values: Vec<Value> = dists.iter().map(|d| d.sample(&mut rng)).collect();
                    Observation {
                        loss: bowl(&values),
                        values,
                        short: 0,
                        number,
                    }
                })
                .collect();
            let random = best(&random);
            tpe_wins += usize::from(tpe <= random);
            tpe_total += tpe;
            random_total += random;
        }
        assert!(tpe_wins >= 7, "TPE won {tpe_wins} of 10");
        assert!(tpe_total < 0.5 * random_total, "{tpe_total} vs {random_total}");
    }

    #[test]
    fn pruned_trials_rank_below_every_trial_that_went_further() {
        // Ten trials, the best score of all at a low rung: the good group is the finished one.
        let dists = [Dist::Uniform { low: 0.0, high: 1.0 }];
        let mut observed: Vec<Observation> = (0..10u64)
            .map(|number| Observation {
                values: vec![serde_json::json!(0.05 + number as f64 * 0.01)],
                short: 1,
                loss: -1.0,
                number,
            })
            .collect();
        observed.push(Observation {
            values: vec![serde_json::json!(0.9)],
            short: 0,
            loss: 5.0,
            number: 10,
        });
        let proposals: Vec<f64> = (0..20u64)
            .map(|i| {
                propose(&dists, &observed, &mut Rng::from_parts(&[i]))[0]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let near = proposals.iter().filter(|x| **x > 0.5).count();
        assert!(near >= 15, "{proposals:?}");
    }
}
