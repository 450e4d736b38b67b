//! Running averages of scalars such as the loss, time per batch and learning rate.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The latest value, and the count-weighted sum and average of all values so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AverageMeter {
    /// The latest value.
    #[serde(with = "crate::nonfinite")]
    pub val: f64,
    /// The weighted sum of values.
    #[serde(with = "crate::nonfinite")]
    pub sum: f64,
    /// The total weight (usually samples).
    pub count: f64,
}

impl AverageMeter {
    /// Records `value` with weight `n` (e.g. a batch's mean loss and its size).
    pub fn update(&mut self, value: f64, n: f64) {
        self.val = value;
        self.sum += value * n;
        self.count += n;
    }

    /// The weighted average; NaN before the first update.
    pub fn avg(&self) -> f64 {
        if self.count == 0.0 {
            f64::NAN
        } else {
            self.sum / self.count
        }
    }

    /// Adds another meter's values (its `val` becomes the latest).
    pub fn merge(&mut self, other: &AverageMeter) {
        if other.count > 0.0 {
            self.val = other.val;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Named meters, in the order first updated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AverageMeters {
    meters: IndexMap<String, AverageMeter>,
}

impl AverageMeters {
    /// Records `value` with weight `n` under `name`.
    pub fn update(&mut self, name: &str, value: f64, n: f64) {
        self.meters.entry(name.to_owned()).or_default().update(value, n);
    }

    /// The meter of `name`.
    pub fn get(&self, name: &str) -> Option<&AverageMeter> {
        self.meters.get(name)
    }

    /// Every meter's average, by name.
    pub fn averages(&self) -> IndexMap<String, f64> {
        self.meters
            .iter()
            .map(|(name, meter)| (name.clone(), meter.avg()))
            .collect()
    }

    /// Merges another set of meters, name by name.
    pub fn merge(&mut self, other: &AverageMeters) {
        for (name, meter) in &other.meters {
            self.meters.entry(name.clone()).or_default().merge(meter);
        }
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.meters.clear();
    }
}
