//! The runner: owns the config, model, optimizer, scheduler, data order and state, and runs the
//! train, evaluate and infer loops.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::ModuleOptimizer;

use super::ema::Ema;
use super::hooks::Hooks;
use super::platform::broadcast_json;
use super::timing::Times;
use super::{Callback, Launched, Platform, RunnerError, State, Task, mixed};
use crate::checkpoint::{load_model, read_checkpoint};
use crate::config::{Config, NoSections, OptimKind, Sections};
use crate::identity::Identity;
use crate::log::Console;
use crate::optim::{ParamGroups, build_optimizer};
use crate::results::Results;
use crate::rng::Rng;

/// The name of the checkpoint written after every epoch (and every `save_steps` steps).
pub(super) const LATEST: &str = "latest";
/// Stream tag of the data-order RNG, so that it never coincides with another use of the seed.
pub(super) const ORDER_STREAM: u64 = 0x0DA7_A0DE;

pub(super) struct Split<I> {
    pub(super) name: String,
    pub(super) dataset: Arc<dyn Dataset<I>>,
    pub(super) train: bool,
}

/// What a finished `train` call leaves.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The run directory (on the main process).
    pub dir: Option<PathBuf>,
    /// The results history.
    pub results: Results,
    /// The best index, if any result was scored.
    pub best: Option<u64>,
    /// The final state.
    pub state: State,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Why a callback stopped the run, if one did (the run can be resumed).
    pub stopped: Option<String>,
}

/// What `infer` returns: one row of outputs per sample, in the split's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// Outputs per sample.
    pub width: usize,
    /// Row-major `[n, width]` outputs.
    pub outputs: Vec<f64>,
    /// Targets per sample (0 when the split has none).
    pub target_width: usize,
    /// Row-major `[n, target_width]` targets.
    pub targets: Vec<f64>,
}

/// Runs a [`Task`] on a model: training with checkpoints and results, evaluation, inference.
///
/// ```ignore
/// let mut runner = Runner::new(config, task, model)?
///     .train_split("train", train_set)
///     .eval_split("val", val_set);
/// let trained = runner.train()?;
/// ```
///
/// The platform `P` ([`Launched`]: one process, or one rank of an MPI world under a launcher, unless
/// [`with_platform`](Runner::with_platform) gives another) decides
/// where the run executes and how its processes agree; everything else here is the same on every
/// platform.
pub struct Runner<T: Task, S: Sections = NoSections, P: Platform = Launched> {
    pub(super) config: Config<S>,
    pub(super) identity: Identity,
    pub(super) platform: P,
    /// Shared with the loader's threads, which run its `transform`.
    pub(super) task: Arc<T>,
    /// `None` only while an optimizer step holds the model, so that its parameters are not shared
    /// and can be updated in place.
    pub(super) model: Option<T::Model>,
    pub(super) optimizer: ModuleOptimizer,
    /// The end-of-epoch checkpoints being written in the background, if any.
    pub(super) writer: Option<std::thread::JoinHandle<Result<(), RunnerError>>>,
    pub(super) state: State,
    pub(super) splits: Vec<Split<T::Item>>,
    pub(super) overwrite: bool,
    pub(super) console: Console,
    /// Whether `train` installs the stop handlers (SIGINT, SIGTERM) itself.
    pub(super) handle_signals: bool,
    /// Where `train` pauses: the epoch (or, in a step budget, the step) whose evaluation ends it.
    pub(super) pause_at: Option<u64>,
    /// Builds the program's own optimizer (`optim.type: custom`).
    pub(super) optimizer_factory: Option<Box<dyn Fn() -> ModuleOptimizer>>,
    /// The program's callbacks, and what they asked for.
    pub(super) hooks: Hooks<T::Model>,
    /// End-of-epoch checkpoint files being written in the background, for `on_checkpoint`.
    pub(super) writing: Vec<PathBuf>,
    /// `optim.groups`, resolved on the model when training starts.
    pub(super) groups: ParamGroups,
    /// The averaged weights (`ema`), from when training starts.
    pub(super) ema: Option<Ema<T::Model>>,
    /// Where the time of the train split in progress goes.
    pub(super) times: Times,
}

impl<T: Task, S: Sections, P: Platform> std::fmt::Debug for Runner<T, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("id", &self.identity.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<T: Task, S: Sections> Runner<T, S, Launched> {
    /// A runner for `config`, whose identity is derived from git in the working directory.
    pub fn new(config: Config<S>, task: T, model: T::Model) -> Result<Self, RunnerError> {
        let identity = Identity::new(&config)?;
        Self::with_identity(config, identity, task, model)
    }

    /// A runner with a given identity, on the config's device: one process, or one rank of an MPI
    /// world when a launcher started this process ([`Launched`]).
    pub fn with_identity(
        config: Config<S>,
        identity: Identity,
        task: T,
        model: T::Model,
    ) -> Result<Self, RunnerError> {
        config.validate()?;
        let platform = Launched::new(config.device, config.precision)?;
        Runner::with_platform(config, identity, platform, task, model)
    }

    /// A runner that continues the run of a checkpoint: its config (with `checkpoint` set to `path`)
    /// and identity come from the file; `train` resumes it exactly.
    pub fn from_checkpoint(path: &Path, task: T, model: T::Model) -> Result<Self, RunnerError> {
        let checkpoint = read_checkpoint(path)?;
        let mut tree = checkpoint.config;
        if let Some(map) = tree.as_object_mut() {
            map.insert(
                "checkpoint".into(),
                serde_json::Value::String(path.display().to_string()),
            );
        }
        let config = Config::from_value(tree)?;
        Self::with_identity(config, checkpoint.identity, task, model)
    }
}

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// A runner on `platform`. Every rank gets rank 0's identity (ranks on other machines may see
    /// other git trees), and the model moves onto the platform's training device with rank 0's
    /// weights; a collective that fails is [`RunnerError::Collective`].
    pub fn with_platform(
        config: Config<S>,
        identity: Identity,
        platform: P,
        task: T,
        model: T::Model,
    ) -> Result<Self, RunnerError> {
        config.validate()?;
        let identity = broadcast_json(&platform, "the identity", identity)?;
        platform.seed(config.seed);
        let model = platform.prepare(mixed::master(model))?;
        // `type: custom` waits for the program's optimizer (`Runner::optimizer`); `train` refuses
        // to start without it.
        let optimizer = build_optimizer(&config.optim).unwrap_or_else(placeholder_optimizer);
        Ok(Self {
            config,
            identity,
            platform,
            task: Arc::new(task),
            model: Some(model),
            optimizer,
            writer: None,
            state: State::default(),
            splits: Vec::new(),
            overwrite: false,
            console: Console::Stdout,
            handle_signals: true,
            pause_at: None,
            optimizer_factory: None,
            hooks: Hooks::default(),
            writing: Vec::new(),
            groups: ParamGroups::default(),
            ema: None,
            times: Times::default(),
        })
    }

    /// Adds a split that is trained on, in the order added.
    pub fn train_split(mut self, name: &str, dataset: impl Dataset<T::Item> + 'static) -> Self {
        self.splits.push(Split {
            name: name.to_owned(),
            dataset: Arc::new(dataset),
            train: true,
        });
        self
    }

    /// Adds a split that is evaluated after the train splits of every epoch.
    pub fn eval_split(mut self, name: &str, dataset: impl Dataset<T::Item> + 'static) -> Self {
        self.splits.push(Split {
            name: name.to_owned(),
            dataset: Arc::new(dataset),
            train: false,
        });
        self
    }

    /// Lets `train` start fresh in a run directory that holds checkpoints (moving them aside).
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Ends `train` once the record of epoch `at` is written (in a step budget: of the first epoch
    /// that reaches step `at`), with `latest` saved, `stopped` in `status.json` and the reason
    /// `paused at epoch N`, as a search sweep pauses a trial at a rung. A run resumed without a pause
    /// goes on exactly as if it had never paused.
    ///
    /// Only where a run stops changes, never what it trains, so this is no config key.
    pub fn pause_at(mut self, at: Option<u64>) -> Self {
        self.pause_at = at;
        self
    }

    /// Whether `train` installs the graceful-stop handlers for SIGINT and SIGTERM (the default), so
    /// that a signal finishes the step, writes `latest` and ends `train` with
    /// [`RunnerError::Interrupted`]. A program that handles these signals itself passes `false`; it
    /// can still ask a run to stop through [`crate::signals`].
    ///
    /// Only how a run may be stopped changes, never what it trains, so this is no config key.
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.handle_signals = handle;
        self
    }

    /// Trains with the program's own optimizer (any burn optimizer: `SgdConfig::new()…init()`),
    /// built by `build` now and again on every resume (the checkpoint then restores its state).
    ///
    /// The optimizer changes what is trained, so the config says so: `optim.type: custom`, with
    /// `optim.custom` describing it (its name and hyperparameters), hashed into the id like every
    /// key. `optim.lr` and the scheduler still set the learning rate of each step. `train` refuses
    /// a custom optimizer the config does not declare, and a declared one that was not given.
    pub fn optimizer(mut self, build: impl Fn() -> ModuleOptimizer + 'static) -> Self {
        self.optimizer = build();
        self.optimizer_factory = Some(Box::new(build));
        self
    }

    /// A fresh optimizer of the run: the config's, or the program's (`optim.type: custom`), with
    /// the weight decays of `optim.groups`.
    pub(super) fn fresh_optimizer(&self) -> Result<ModuleOptimizer, RunnerError> {
        let optimizer = match (self.config.optim.kind, &self.optimizer_factory) {
            (OptimKind::Custom, Some(build)) => Ok(build()),
            (OptimKind::Custom, None) => Err(RunnerError::Optimizer(
                "optim.type is custom, but no optimizer was given: pass one with Runner::optimizer".into(),
            )),
            (kind, Some(_)) => Err(RunnerError::Optimizer(format!(
                "Runner::optimizer was given an optimizer, but optim.type is {}: set optim.type: \
                 custom and describe the optimizer in optim.custom, so that the id and runner.yaml say \
                 what trained the run",
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ))),
            (_, None) => build_optimizer(&self.config.optim)
                .ok_or_else(|| RunnerError::Optimizer("no optimizer".into())),
        }?;
        Ok(self.groups.apply(&self.config.optim, optimizer))
    }

    /// Adds a callback, called after those added before it (see [`super::callback`]).
    pub fn callback(mut self, callback: impl Callback<T::Model> + 'static) -> Self {
        self.hooks.push(Box::new(callback));
        self
    }

    /// Where console log lines go (stdout by default).
    pub fn console(mut self, console: Console) -> Self {
        self.console = console;
        self
    }

    /// The config.
    pub fn config(&self) -> &Config<S> {
        &self.config
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The task.
    pub fn task(&self) -> &T {
        &self.task
    }

    /// The model.
    pub fn model(&self) -> &T::Model {
        present(&self.model)
    }

    /// The averaged weights, in a run with `ema` once training has started (a validation copy).
    pub fn ema_model(&self) -> Option<&T::Model> {
        self.ema.as_ref().map(Ema::model)
    }

    /// The progress so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Replaces the model's weights with those of a checkpoint file.
    ///
    /// Rank 0 reads the file, and the platform gives its weights to the other ranks, which need not
    /// see its files.
    pub fn load_weights(&mut self, path: &Path) -> Result<(), RunnerError> {
        // Load into a plain (non-autodiff) copy, then track it for training again.
        let model = match self.platform.is_main() {
            true => load_model(self.model().valid(), path)?,
            false => self.model().valid(),
        };
        self.model = Some(self.platform.prepare(mixed::master(model))?);
        Ok(())
    }

    /// A validation snapshot of the model (no autodiff, dropout off), in the precision the batches
    /// are built in.
    pub(super) fn eval_model(&self) -> T::Model {
        self.in_eval_precision(self.model().valid())
    }

    /// A validation snapshot of the averaged weights, when the run keeps them.
    pub(super) fn eval_ema(&self) -> Option<T::Model> {
        // `valid` again: the snapshot gets buffers of its own, which a cast cannot then change
        // under the average.
        self.ema
            .as_ref()
            .map(|ema| self.in_eval_precision(ema.model().valid()))
    }

    fn in_eval_precision(&self, model: T::Model) -> T::Model {
        match mixed::half(self.config.precision) {
            Some(dtype) => mixed::cast(model, dtype),
            None => model,
        }
    }

    /// Samples per batch on this rank (`data.batch_size`).
    pub(super) fn batch_size(&self) -> usize {
        // Saturates where usize is narrower than u64: no split is that long, so a batch is the split.
        usize::try_from(self.config.data.batch_size).unwrap_or(usize::MAX)
    }

    /// Global batches in a split (each rank takes its shard of each).
    pub(super) fn batches(&self, split: usize) -> usize {
        self.splits[split].dataset.len().div_ceil(self.global_batch())
    }

    /// The order of a split's items: [`shuffled_order`] when shuffling.
    pub(super) fn order(&self, split: usize, shuffle: bool) -> Vec<usize> {
        let n = self.splits[split].dataset.len();
        if shuffle {
            shuffled_order(self.config.seed, self.state.epoch, split, n)
        } else {
            (0..n).collect()
        }
    }

    pub(super) fn log_interval(&self) -> usize {
        match self.config.log_interval {
            Some(n) => n as usize,
            None => ((0..self.splits.len()).map(|i| self.batches(i)).max().unwrap_or(1) / 10).max(1),
        }
    }
}

/// The order in which a shuffling runner visits the `n` items of its split number `split` (in the
/// order splits were added) in epoch `epoch` (counted from 0) of a run with seed `seed`: a
/// permutation drawn from those three alone, so a resumed run sees the same batches.
pub fn shuffled_order(seed: u64, epoch: u64, split: usize, n: usize) -> Vec<usize> {
    Rng::from_parts(&[seed, ORDER_STREAM, epoch, split as u64]).permutation(n)
}

/// The optimizer a runner holds until the program gives its own (`optim.type: custom`): never
/// stepped, since `train` refuses to start without the program's.
fn placeholder_optimizer() -> ModuleOptimizer {
    burn::optim::SgdConfig::new().init()
}

/// The model in its slot, borrowed alone (so that other fields of the runner can be borrowed
/// mutably beside it).
#[allow(clippy::expect_used)] // the slot is empty only inside `optimizer_step`, which refills it
pub(super) fn present<M>(model: &Option<M>) -> &M {
    model
        .as_ref()
        .expect("the model is back after every optimizer step")
}
