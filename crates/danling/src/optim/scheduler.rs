//! The learning-rate scheduler, ported from Python DanLing's `LRScheduler` and evaluated in `f64`.
//!
//! Python DanLing's behaviour, step for step (its `step_count` is our 0-based step plus one):
//! - Decay: the curve gives a ratio `r` in `[0, 1]` from `progress = step_count / total_steps`
//!   (`constant`: 0, `linear`: `progress`, `cosine`: `(1 - cos(pi * progress)) / 2`).
//!   `percentile` scaling interpolates geometrically, `base_lr * (final_lr / base_lr)^r`;
//!   `numerical` interpolates arithmetically, `(1 - r) * (base_lr - final_lr) + final_lr`.
//! - Warmup (default `total_steps / 20`): while `step_count < warmup_steps`, the decayed lr is pulled
//!   linearly towards `min_lr` by `step_count / warmup_steps`.
//! - Cooldown (default `total_steps / 5`, shrunk to what the warmup leaves): over the last `cooldown_steps` steps the decayed lr is
//!   pulled linearly down to `min_lr`, reaching it at the last step.
//! - Bounds: the lr never drops below `min_lr` (default `1e-9`, lowered to `final_lr` when that is
//!   smaller); `final_lr` defaults to `base_lr * final_lr_ratio` (default ratio `1e-3`).
//!
//! Steps past `total_steps` keep the last step's lr. `none` keeps `base_lr` throughout.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::config::{Scaling, SchedConfig, SchedKind};

/// DanLing's `min_lr` when the config leaves it unset.
pub const DEFAULT_MIN_LR: f64 = 1e-9;

/// DanLing's `final_lr_ratio` when neither `final_lr_ratio` nor `final_lr` is set.
pub const DEFAULT_FINAL_LR_RATIO: f64 = 1e-3;

/// The scaling Python DanLing picks when `sched.scaling` is not set: `numerical` when only `final_lr`
/// is set, `percentile` otherwise.
pub fn default_scaling(final_lr_ratio: Option<f64>, final_lr: Option<f64>) -> Scaling {
    match (final_lr_ratio, final_lr) {
        (None, Some(_)) => Scaling::Numerical,
        _ => Scaling::Percentile,
    }
}

/// A learning-rate schedule with Python DanLing's semantics, evaluated in f64.
///
/// Holds the resolved parameters (defaults applied) and the number of optimizer steps taken, so
/// the whole schedule can be checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrScheduler {
    kind: SchedKind,
    scaling: Scaling,
    base_lr: f64,
    final_lr: f64,
    min_lr: f64,
    warmup_steps: u64,
    cooldown_steps: u64,
    total_steps: u64,
    step: u64,
}

impl LrScheduler {
    /// Resolves `config` for a run of `total_steps` optimizer steps at peak lr `base_lr`.
    ///
    /// Every key is checked, whatever the schedule type: `total_steps` at least 1, `base_lr` finite
    /// and positive, `warmup_steps + cooldown_steps <= total_steps`, `final_lr_ratio` in `[0, 1]`,
    /// `final_lr` and `min_lr` in `[0, base_lr]`. `final_lr` wins over `final_lr_ratio` when both
    /// are set (Python DanLing refuses that combination).
    pub fn new(config: &SchedConfig, base_lr: f64, total_steps: u64) -> Result<Self, SchedulerError> {
        if total_steps == 0 {
            return Err(SchedulerError::invalid(
                "total_steps",
                0,
                "at least 1 optimizer step",
            ));
        }
        if !(base_lr.is_finite() && base_lr > 0.0) {
            return Err(SchedulerError::invalid(
                "optim.lr",
                base_lr,
                "a finite number > 0",
            ));
        }
        let warmup_steps = config.warmup_steps.unwrap_or(total_steps / 20);
        if warmup_steps > total_steps {
            let expected = format!("at most the {total_steps} total steps");
            return Err(SchedulerError::invalid(
                "sched.warmup_steps",
                warmup_steps,
                expected,
            ));
        }
        // DanLing's default cooldown shrinks to what the warmup leaves; a configured one must fit.
        let cooldown_steps = config
            .cooldown_steps
            .unwrap_or((total_steps / 5).min(total_steps - warmup_steps));
        if cooldown_steps > total_steps - warmup_steps {
            let expected = format!(
                "at most {} (the {total_steps} total steps less {warmup_steps} warmup steps)",
                total_steps - warmup_steps
            );
            return Err(SchedulerError::invalid(
                "sched.cooldown_steps",
                cooldown_steps,
                expected,
            ));
        }
        if let Some(ratio) = config.final_lr_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(SchedulerError::invalid(
                "sched.final_lr_ratio",
                ratio,
                "a number in [0, 1]",
            ));
        }
        let in_range = |value: f64| (0.0..=base_lr).contains(&value);
        if let Some(final_lr) = config.final_lr
            && !in_range(final_lr)
        {
            let expected = format!("a number in [0, {base_lr}] (0 to the peak lr)");
            return Err(SchedulerError::invalid("sched.final_lr", final_lr, expected));
        }
        let final_lr = match (config.final_lr, config.final_lr_ratio) {
            (Some(final_lr), _) => final_lr,
            (None, Some(ratio)) => base_lr * ratio,
            (None, None) => base_lr * DEFAULT_FINAL_LR_RATIO,
        };
        let configured_min_lr = config.min_lr.unwrap_or(DEFAULT_MIN_LR);
        let min_lr = match config.final_lr {
            Some(final_lr) if configured_min_lr > final_lr => final_lr,
            _ => configured_min_lr,
        };
        if !in_range(min_lr) {
            let expected = format!("a number in [0, {base_lr}] (0 to the peak lr)");
            return Err(SchedulerError::invalid(
                "sched.min_lr",
                configured_min_lr,
                expected,
            ));
        }
        Ok(Self {
            kind: config.kind,
            scaling: match config
                .scaling
                .unwrap_or_else(|| default_scaling(config.final_lr_ratio, config.final_lr))
            {
                Scaling::Percentile => Scaling::Percentile,
                Scaling::Numerical => Scaling::Numerical,
            },
            base_lr,
            final_lr,
            min_lr,
            warmup_steps,
            cooldown_steps,
            total_steps,
            step: 0,
        })
    }

    /// The lr before optimizer step `step` (0-based), without changing state. Pure function of step.
    ///
    /// Steps at or past `total_steps` get the last step's lr.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.kind == SchedKind::None {
            return self.base_lr;
        }
        // DanLing's torch-side `_step_count`: 1 before the first optimizer step.
        let count = step.min(self.total_steps.saturating_sub(1)) + 1;
        let total = self.total_steps;
        let progress = (count as f64 / total as f64).clamp(0.0, 1.0);
        let ratio = match self.kind {
            SchedKind::Linear => progress,
            SchedKind::Cosine => 1.0 - (1.0 + (PI * progress).cos()) / 2.0,
            SchedKind::Constant | SchedKind::None => 0.0,
        };
        let (base, last, floor) = (self.base_lr, self.final_lr, self.min_lr);
        let mut lr = match self.scaling {
            Scaling::Percentile => base * (last / base).powf(ratio),
            Scaling::Numerical => (1.0 - ratio) * (base - last) + last,
        };
        let cooldown_begin = total.saturating_sub(self.cooldown_steps);
        if count < self.warmup_steps {
            let warmup = count as f64 / self.warmup_steps as f64;
            lr = warmup * (lr - floor) + floor;
        } else if self.cooldown_steps > 0 && count > cooldown_begin {
            let cooldown = 1.0 - (count - cooldown_begin) as f64 / self.cooldown_steps as f64;
            lr = cooldown * (lr - floor) + floor;
        }
        // `numerical` can land one ulp above the peak (`(base - last) + last`); keep it in bounds.
        lr.max(floor).min(base)
    }

    /// The lr for the next optimizer step (= `lr_at(self.steps_taken())`).
    pub fn lr(&self) -> f64 {
        self.lr_at(self.step)
    }

    /// Advances by one optimizer step (call once after each optimizer step).
    pub fn step(&mut self) {
        self.step = self.step.saturating_add(1);
    }

    /// Optimizer steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Restores the step counter (for resume).
    pub fn set_steps_taken(&mut self, step: u64) {
        self.step = step;
    }

    /// The optimizer steps the schedule spans.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }
}

/// A scheduler config that cannot be resolved for this run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// A config value outside what the scheduler accepts.
    #[error("config key `{key}`: invalid value {value}, expected {expected}")]
    InvalidValue {
        /// The dotted config key, e.g. `sched.warmup_steps`.
        key: &'static str,
        /// The offending value, as written in the message.
        value: String,
        /// What the key accepts.
        expected: String,
    },
}

impl SchedulerError {
    fn invalid(key: &'static str, value: impl std::fmt::Display, expected: impl Into<String>) -> Self {
        Self::InvalidValue {
            key,
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// The config key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            Self::InvalidValue { key, .. } => key,
        }
    }
}

#[cfg(test)]
mod tests;
