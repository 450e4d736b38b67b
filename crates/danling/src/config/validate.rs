//! Checks that serde cannot express, in one place: ranges, cross-field rules, and the budget.

use std::path::Path;

use super::ConfigError;
use super::schema::{Budget, Config, DEFAULT_EPOCHS, Sections};

impl<S: Sections> Config<S> {
    /// Fills the default budget and validates. Called once by every constructor that reads user input.
    pub(crate) fn resolve(&mut self) -> Result<(), ConfigError> {
        self.validate()?;
        if self.epochs.is_none() && self.steps.is_none() {
            self.epochs = Some(DEFAULT_EPOCHS);
        }
        Ok(())
    }

    /// Checks every range and cross-field rule of the core keys, then the user's sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.epochs.is_some() && self.steps.is_some() {
            return Err(ConfigError::Conflict {
                first: "epochs".into(),
                second: "steps".into(),
                reason: "the budget is either epochs or steps; set one to null".into(),
            });
        }
        at_least_one("epochs", self.epochs)?;
        at_least_one("steps", self.steps)?;
        at_least_one("accum_steps", Some(self.accum_steps))?;
        at_least_one("data.batch_size", Some(self.data.batch_size))?;
        at_least_one("data.prefetch", self.data.prefetch)?;
        if let Some(n) = self.data.workers.filter(|&n| n > MAX_WORKERS) {
            return Err(ConfigError::invalid_value(
                "data.workers",
                n,
                "an integer from 0 to 256",
            ));
        }
        if let Some(n) = self.data.prefetch.filter(|&n| n > MAX_PREFETCH) {
            return Err(ConfigError::invalid_value(
                "data.prefetch",
                n,
                "an integer from 1 to 4096",
            ));
        }
        at_least_one("log_interval", self.log_interval)?;
        at_least_one("save_steps", self.save_steps)?;
        at_least_one("patience", self.patience)?;

        for (key, value) in [
            ("experiment_name", Some(&self.experiment_name)),
            ("run_name", Some(&self.run_name)),
            ("name", self.name.as_ref()),
            ("id", self.id.as_ref()),
            ("experiment_id", self.experiment_id.as_ref()),
            ("checkpoint_dir_name", Some(&self.checkpoint_dir_name)),
        ] {
            if let Some(value) = value {
                path_component(key, value)?;
            }
        }
        if self.score_name.is_empty() {
            return Err(ConfigError::invalid_value("score_name", "\"\"", "a metric name"));
        }

        positive("optim.lr", Some(self.optim.lr))?;
        non_negative("optim.weight_decay", Some(self.optim.weight_decay))?;
        unit_interval("optim.momentum", self.optim.momentum)?;
        unit_interval("optim.betas[0]", self.optim.betas[0])?;
        unit_interval("optim.betas[1]", self.optim.betas[1])?;
        let custom = self.optim.custom.as_ref().filter(|c| !c.is_null());
        match (self.optim.kind, custom) {
            (super::OptimKind::Custom, None) => {
                return Err(ConfigError::invalid_value(
                    "optim.custom",
                    "null",
                    "a description of the program's optimizer (its name and hyperparameters), which optim.type custom needs",
                ));
            }
            (kind, Some(_)) if kind != super::OptimKind::Custom => {
                return Err(ConfigError::Conflict {
                    first: "optim.custom".into(),
                    second: "optim.type".into(),
                    reason: "optim.custom describes a program's own optimizer: set optim.type: custom, or remove it".into(),
                });
            }
            _ => {}
        }
        for (i, group) in self.optim.groups.iter().enumerate() {
            if let Err(error) = regex::Regex::new(&group.pattern) {
                let reason = error
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                return Err(ConfigError::invalid_value(
                    &format!("optim.groups[{i}].match"),
                    format!("{:?}", group.pattern),
                    &format!("a regular expression ({reason})"),
                ));
            }
            non_negative(&format!("optim.groups[{i}].lr_scale"), Some(group.lr_scale))?;
            non_negative(&format!("optim.groups[{i}].weight_decay"), group.weight_decay)?;
            if group.weight_decay.is_some() && self.optim.kind == super::OptimKind::Custom {
                return Err(ConfigError::Conflict {
                    first: format!("optim.groups[{i}].weight_decay"),
                    second: "optim.type".into(),
                    reason: "a program's own optimizer sets its own weight decay: give the group \
                             only lr_scale, or build the decay into the optimizer"
                        .into(),
                });
            }
        }
        if let Some(ema) = &self.ema {
            unit_interval("ema.decay", ema.decay)?;
        }
        if self.requeue && !self.resume.is_on() && self.checkpoint.is_none() {
            return Err(ConfigError::Conflict {
                first: "requeue".into(),
                second: "resume".into(),
                reason: "a requeued job runs the same command line again: set `resume: auto` so that \
                         it continues the run"
                    .into(),
            });
        }
        if let Some(mlflow) = &self.mlflow {
            if !self.metrics_log {
                return Err(ConfigError::Conflict {
                    first: "mlflow".into(),
                    second: "metrics_log".into(),
                    reason: "MLflow is sent the points of metrics.jsonl: leave `metrics_log` on".into(),
                });
            }
            let scheme = mlflow.uri.split_once("://").map(|(scheme, _)| scheme);
            if !matches!(scheme, Some("http" | "https")) {
                return Err(ConfigError::invalid_value(
                    "mlflow.uri",
                    &mlflow.uri,
                    "an http:// or https:// address of an MLflow server",
                ));
            }
        }
        positive("max_grad_norm", self.max_grad_norm)?;
        positive("max_grad_value", self.max_grad_value)?;
        non_negative("sched.final_lr", self.sched.final_lr)?;
        non_negative("sched.min_lr", self.sched.min_lr)?;
        if let Some(ratio) = self.sched.final_lr_ratio
            && !(0.0..=1.0).contains(&ratio)
        {
            return Err(ConfigError::invalid_value(
                "sched.final_lr_ratio",
                ratio,
                "a number in [0, 1]",
            ));
        }
        self.sections.validate()
    }

    /// What the run trains for.
    pub fn budget(&self) -> Budget {
        match (self.epochs, self.steps) {
            (_, Some(steps)) => Budget::Steps(steps),
            (Some(epochs), None) => Budget::Epochs(epochs),
            (None, None) => Budget::Epochs(DEFAULT_EPOCHS),
        }
    }
}

/// More loader threads than this is a typo, not a machine.
const MAX_WORKERS: u64 = 256;
/// More batches in flight than this would hold a split in memory, not prefetch it.
const MAX_PREFETCH: u64 = 4096;

/// `value` must be at least 1 when set.
pub fn at_least_one(key: &str, value: Option<u64>) -> Result<(), ConfigError> {
    match value {
        Some(0) => Err(ConfigError::invalid_value(key, 0, "an integer >= 1")),
        _ => Ok(()),
    }
}

/// `value` must be finite and > 0 when set.
pub fn positive(key: &str, value: Option<f64>) -> Result<(), ConfigError> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            Err(ConfigError::invalid_value(key, v, "a finite number > 0"))
        }
        _ => Ok(()),
    }
}

/// `value` must be finite and >= 0 when set.
pub fn non_negative(key: &str, value: Option<f64>) -> Result<(), ConfigError> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => {
            Err(ConfigError::invalid_value(key, v, "a finite number >= 0"))
        }
        _ => Ok(()),
    }
}

fn unit_interval(key: &str, value: f64) -> Result<(), ConfigError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid_value(key, value, "a number in [0, 1)"))
    }
}

/// Names become path components of the run directory, so each must be one non-empty component that
/// stays inside `project_root`: no `/` or `\\`, not `.` or `..`, and no NUL or other control
/// character (which a file system refuses or a terminal misprints).
fn path_component(key: &str, value: &str) -> Result<(), ConfigError> {
    let mut components = Path::new(value).components();
    let single =
        matches!(components.next(), Some(std::path::Component::Normal(_))) && components.next().is_none();
    if single && !value.contains(['/', '\\']) && !value.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(ConfigError::invalid_value(
            key,
            format!("{value:?}"),
            "a non-empty name without path separators, `..` or control characters",
        ))
    }
}

impl<S> Config<S> {
    /// How results are scored: `score_split`, `score_name`, and `score_mode` (derived from the name
    /// when unset).
    pub fn scoring(&self) -> crate::results::Scoring {
        crate::results::Scoring::new(self.score_split.clone(), self.score_name.clone(), self.score_mode)
    }
}
