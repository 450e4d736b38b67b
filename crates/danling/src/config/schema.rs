//! The on-disk config schema: core keys, the optimizer and scheduler sections, and user sections.
//!
//! Every key has a default here, so a config file only names what it changes. The resolved config,
//! with every key present, is what `runner.yaml` stores and what the run's identity hashes.

use std::fmt;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::data::DataConfig;
use super::{ConfigError, Device};
use crate::results::ScoreMode;
pub use crate::signals::PreemptSignal;

/// The typed core of a run's config, plus the user's sections `S`.
///
/// Core keys are the ones every run has (naming, budget, scoring, locations, logging, loading, training
/// and runtime knobs). `sections` holds everything else at the top level of the config file: the CLI's
/// built-in task uses `model` and `data`; a library user supplies their own serde struct (see
/// [`Sections`]). Config is immutable for the life of a run: progress lives in the run's state instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config<S = NoSections> {
    /// Catchy name of the experiment (one commit); the default name is `{experiment_name}-{run_name}`.
    #[serde(deserialize_with = "lenient_string")]
    pub experiment_name: String,
    /// Catchy name of the run (one config of an experiment).
    #[serde(deserialize_with = "lenient_string")]
    pub run_name: String,
    /// Overrides the derived `{experiment_name}-{run_name}`.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub name: Option<String>,
    /// A label that groups runs for `danling runs --group-by group` (a sweep sets it). Not hashed.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub group: Option<String>,
    /// The sweep `danling sweep` runs from this file: `{key: [value, ...]}`, a value list per dotted
    /// key (or a string in the command line's syntax, `"0.1,0.01"`, `"range(1,4)"`). Not hashed;
    /// `danling train` ignores it.
    pub sweep: Option<indexmap::IndexMap<String, serde_json::Value>>,
    /// Overrides the derived `{experiment_id[..8]}-{run_id[..8]}-{uuid[..8]}`.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub id: Option<String>,
    /// Overrides the experiment id that is otherwise read from git.
    #[serde(deserialize_with = "lenient_opt_string")]
    pub experiment_id: Option<String>,

    /// Seed for the data order and burn's RNG (1016, as in Python DanLing).
    pub seed: u64,
    /// Asks for bit-reproducible kernels where the backend offers a choice.
    pub deterministic: bool,

    /// Budget in epochs; exactly one of `epochs` and `steps` is set after resolution.
    pub epochs: Option<u64>,
    /// Budget in optimizer steps.
    pub steps: Option<u64>,

    /// The split whose metric scores a run; see [`crate::Scoring`] for the fallback chain.
    pub score_split: Option<String>,
    /// The metric that scores a run.
    pub score_name: String,
    /// Whether lower or higher scores are better; derived from `score_name` when unset.
    pub score_mode: Option<ScoreMode>,
    /// Stop after this many consecutive evaluations that do not improve on the best.
    pub patience: Option<u64>,

    /// Root of all runs of this project.
    pub project_root: PathBuf,
    /// Overrides the run directory `{project_root}/{name}-{id}`.
    pub dir: Option<PathBuf>,
    /// Overrides the checkpoint directory `{dir}/{checkpoint_dir_name}`.
    pub checkpoint_dir: Option<PathBuf>,
    /// Name of the checkpoint directory inside the run directory.
    pub checkpoint_dir_name: String,

    /// Writes `run.log` in the run directory.
    pub log: bool,
    /// Writes `metrics.jsonl` in the run directory: every logged scalar, a line each. MLflow is sent
    /// what it holds, so `mlflow` needs it.
    pub metrics_log: bool,
    /// Batches between step log lines; a tenth of the longest split when unset.
    pub log_interval: Option<u64>,
    /// Keep `epoch-N` checkpoints every this many epochs (unset or 0: none).
    pub save_interval: Option<u64>,
    /// Also write `latest` every this many optimizer steps.
    pub save_steps: Option<u64>,
    /// How many history checkpoints (`epoch-N`, `step-N`) to keep; `latest` and `best` are never deleted.
    pub keep_latest_k: Option<u64>,
    /// Writes TensorBoard event files under `{dir}/tensorboard/`.
    pub tensorboard: bool,
    /// Shows progress bars on a terminal.
    pub progress: bool,

    /// Resume the full state from this checkpoint file.
    pub checkpoint: Option<PathBuf>,
    /// Whether the run continues from its own checkpoints: `false`, `true` (the newest intact one;
    /// none: a fresh start with a warning) or `auto` (the same, quietly; only damaged ones: an error).
    pub resume: Resume,
    /// On a preemption signal, under Slurm, ask Slurm to requeue the job (`scontrol requeue`) once
    /// `latest` is written. Needs `resume: auto` (or `true`), so that the requeued job continues.
    pub requeue: bool,
    /// A signal that preempts the run besides SIGUSR1: `USR2`, `HUP`, `XCPU` or `TERM` (which then
    /// preempts instead of stopping). `null`: SIGUSR1 alone.
    pub preempt_signal: Option<PreemptSignal>,
    /// Load only the model weights from this checkpoint file.
    pub pretrained: Option<PathBuf>,

    /// Micro-batches accumulated per optimizer step.
    pub accum_steps: u64,
    /// Clip gradients by their global norm.
    pub max_grad_norm: Option<f64>,
    /// Clip each gradient element to `[-v, v]`.
    pub max_grad_value: Option<f64>,
    /// What to do when the loss or a gradient is not finite.
    pub nonfinite: NonFinite,
    /// Compute precision.
    pub precision: Precision,
    /// Where the run executes.
    pub device: Device,
    /// An exponential moving average of the weights, evaluated beside them (`null`: none).
    pub ema: Option<EmaConfig>,

    /// How the runner cuts the splits into batches: `data.batch_size` and `data.shuffle`. The rest
    /// of the `data` mapping, if any, belongs to the user's sections (the data set itself).
    pub data: DataConfig,
    /// The optimizer.
    pub optim: OptimConfig,
    /// The learning-rate schedule.
    pub sched: SchedConfig,

    /// Tracks the run in an MLflow server (`null`: no tracking).
    pub mlflow: Option<MlflowConfig>,

    /// The user's sections: every other top-level key.
    #[serde(skip)]
    pub sections: S,
}

impl<S: Default> Default for Config<S> {
    fn default() -> Self {
        Self {
            experiment_name: "DanLing".into(),
            run_name: "Run".into(),
            group: None,
            sweep: None,
            name: None,
            id: None,
            experiment_id: None,
            seed: 1016,
            deterministic: false,
            epochs: None,
            steps: None,
            score_split: None,
            score_name: "loss".into(),
            score_mode: None,
            patience: None,
            project_root: PathBuf::from("experiments"),
            dir: None,
            checkpoint_dir: None,
            checkpoint_dir_name: "checkpoints".into(),
            log: true,
            metrics_log: true,
            log_interval: None,
            save_interval: None,
            save_steps: None,
            keep_latest_k: None,
            tensorboard: false,
            progress: true,
            checkpoint: None,
            resume: Resume::Off,
            requeue: false,
            preempt_signal: None,
            pretrained: None,
            accum_steps: 1,
            max_grad_norm: None,
            max_grad_value: None,
            nonfinite: NonFinite::Skip,
            precision: Precision::F32,
            device: Device::Auto,
            ema: None,
            data: DataConfig::default(),
            optim: OptimConfig::default(),
            sched: SchedConfig::default(),
            mlflow: None,
            sections: S::default(),
        }
    }
}

/// The user's part of a config: every top-level key that is not a core key.
///
/// Implement it for your own serde struct (with `#[serde(default, deny_unknown_fields)]`) so that a typo
/// inside your sections is an error too. `validate` is called once, after the core keys are checked, and
/// may reject values that serde accepts (ranges, cross-field rules).
pub trait Sections: Serialize + DeserializeOwned + Default + Clone + fmt::Debug {
    /// Checks constraints serde cannot express. The default accepts everything.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// No user sections: any top-level key that is not a core key is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSections {}

impl Sections for NoSections {}

/// Free-form user sections, for quick experiments: any key is accepted, nothing is checked.
impl Sections for std::collections::BTreeMap<String, serde_json::Value> {}

/// What a run trains for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// A number of passes over the train splits.
    Epochs(u64),
    /// A number of optimizer steps.
    Steps(u64),
}

/// The default budget when a config sets neither `epochs` nor `steps`.
pub const DEFAULT_EPOCHS: u64 = 10;

/// What to do with a step whose loss or gradients are not finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonFinite {
    /// Skip the update, count it in the results, and go on.
    Skip,
    /// Stop the run with an error.
    Stop,
}

/// `resume`: whether a run continues from the checkpoints in its own `checkpoint_dir`.
///
/// Written as `false`, `true` or `auto`. `auto` is the one for a command line that serves a job's
/// first start and every requeue: it resumes when a checkpoint is there, starts fresh when none is,
/// and refuses when every checkpoint there is damaged (`true` would start fresh with a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resume {
    /// A fresh start; refused in a run dir that holds checkpoints.
    #[default]
    Off,
    /// The newest intact checkpoint; none: a fresh start with a warning.
    On,
    /// The newest intact checkpoint; none: a fresh start; all damaged: an error.
    Auto,
}

impl Resume {
    /// Whether the run continues from its checkpoints when it has some.
    pub fn is_on(self) -> bool {
        self != Resume::Off
    }
}

impl Serialize for Resume {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        match self {
            Resume::Off => serializer.serialize_bool(false),
            Resume::On => serializer.serialize_bool(true),
            Resume::Auto => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Resume {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Resume;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or auto")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Resume, E> {
                Ok(if v { Resume::On } else { Resume::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Resume, E> {
                match v {
                    "auto" => Ok(Resume::Auto),
                    "true" => Ok(Resume::On),
                    "false" => Ok(Resume::Off),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Resume, E> {
                Ok(Resume::Off)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `mlflow`: the MLflow tracking server a run reports to, over its REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// The server, `http://host:port` (or `https://…` with the `tls` feature).
    pub uri: String,
    /// The MLflow experiment, created when missing; `null`: `experiment_name`.
    #[serde(default)]
    pub experiment: Option<String>,
    /// Also upload `best.safetensors` as an artifact when the run ends (the server must serve
    /// artifacts, as `mlflow server` does by default).
    #[serde(default)]
    pub artifacts: bool,
}

/// Compute precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere.
    F32,
    /// bfloat16 compute with f32 master weights.
    Bf16,
    /// float16 compute with f32 master weights.
    F16,
}

/// `ema`: after every optimizer step, `ema ← ema + (θ − ema)·(1 − decay)` for every float tensor
/// of the model (parameters and buffers, such as BatchNorm's statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    /// The weight of the average on each step, in `[0, 1)`: 0.999 averages over about the last
    /// thousand steps.
    pub decay: f64,
}

/// The optimizer section, `optim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Which optimizer.
    #[serde(rename = "type")]
    pub kind: OptimKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (decoupled for `adamw`, L2 for `sgd` and `adam`).
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Adam's `(beta1, beta2)`.
    pub betas: [f64; 2],
    /// With `type: custom`, a description of the program's own optimizer (any mapping: its name and
    /// hyperparameters), hashed and recorded like every key; the program hands the runner the
    /// optimizer itself (`Runner::optimizer`).
    pub custom: Option<serde_json::Value>,
    /// Parameter groups, in order: each parameter takes the first group whose `match` finds its
    /// name; the others keep `lr` and `weight_decay` above.
    pub groups: Vec<ParamGroupConfig>,
}

/// One parameter group of `optim.groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamGroupConfig {
    /// A regular expression searched for in each parameter's name as the checkpoint writes it
    /// (without `model.`: `layers.0.bias`, `norm.weight`).
    #[serde(rename = "match")]
    pub pattern: String,
    /// The group's learning rate as a multiple of the scheduled one.
    #[serde(default = "one")]
    pub lr_scale: f64,
    /// The group's weight decay; `null` keeps `optim.weight_decay`.
    #[serde(default)]
    pub weight_decay: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimKind::Adamw,
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.0,
            betas: [0.9, 0.999],
            custom: None,
            groups: Vec::new(),
        }
    }
}

/// Optimizers danling builds from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// Stochastic gradient descent, with optional momentum.
    Sgd,
    /// Adam.
    Adam,
    /// Adam with decoupled weight decay.
    Adamw,
    /// The program's own optimizer, described by `optim.custom` and handed to the runner in code.
    Custom,
}

/// The learning-rate schedule section, `sched`, with Python DanLing's `LRScheduler` semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedConfig {
    /// The decay curve; `none` keeps the optimizer's lr.
    #[serde(rename = "type")]
    pub kind: SchedKind,
    /// Steps of linear warmup; DanLing's default when unset.
    pub warmup_steps: Option<u64>,
    /// Steps of cooldown at the end; DanLing's default when unset.
    pub cooldown_steps: Option<u64>,
    /// Final lr as a fraction of the peak lr.
    pub final_lr_ratio: Option<f64>,
    /// Final lr as an absolute value (wins over `final_lr_ratio`).
    pub final_lr: Option<f64>,
    /// Lower bound of the lr.
    pub min_lr: Option<f64>,
    /// How the lr moves between the peak and the final lr: geometrically (`percentile`) or
    /// arithmetically (`numerical`). Unset: DanLing's choice, `numerical` when only `final_lr` is set.
    pub scaling: Option<Scaling>,
}

impl Default for SchedConfig {
    fn default() -> Self {
        Self {
            kind: SchedKind::None,
            warmup_steps: None,
            cooldown_steps: None,
            final_lr_ratio: None,
            final_lr: None,
            min_lr: None,
            scaling: None,
        }
    }
}

/// LR decay curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedKind {
    /// Constant lr (warmup and cooldown still apply).
    Constant,
    /// Linear decay to the final lr.
    Linear,
    /// Cosine decay to the final lr.
    Cosine,
    /// No scheduler.
    None,
}

/// DanLing's scheduler scaling: how the lr is interpolated between the peak and the final lr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// Geometric: `base · (final / base)^r`.
    Percentile,
    /// Arithmetic: `base + (final − base) · r`.
    Numerical,
}

/// Accepts a YAML/JSON number or boolean where a string is expected (`name: 2024`), as text.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(LenientString)
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_option(OptLenientString)
}

struct LenientString;

impl serde::de::Visitor<'_> for LenientString {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

struct OptLenientString;

impl<'de> serde::de::Visitor<'de> for OptLenientString {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        lenient_string(deserializer).map(Some)
    }
}
