//! The runner: owns the config, model, optimizer, scheduler, data order and state, and runs the
//! train, evaluate and infer loops.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use tracing::{info, warn};

use super::adapt::host_f64;
use super::report::{epoch_line, progress_bar, split_result};
use super::{Local, Platform, RunnerError, State, Targets, Task};
use crate::checkpoint::{load_model, read_checkpoint};
use crate::config::{Budget, Config, NoSections, Sections};
use crate::identity::Identity;
use crate::log::Console;
use crate::metrics::{AverageMeter, MetricMode, Metrics};
use crate::optim::{LrScheduler, build_optimizer};
use crate::results::{Record, Results, SplitResult};
use crate::rng::Rng;
use crate::workspace::{Role, StartMode, Workspace};

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
/// The platform `P` ([`Local`] unless [`with_platform`](Runner::with_platform) gives another) decides
/// where the run executes and how its processes agree; everything else here is the same on every
/// platform.
pub struct Runner<T: Task, S: Sections = NoSections, P: Platform = Local> {
    pub(super) config: Config<S>,
    pub(super) identity: Identity,
    pub(super) platform: P,
    pub(super) task: T,
    /// `None` only while an optimizer step holds the model, so that its parameters are not shared
    /// and can be updated in place.
    pub(super) model: Option<T::Model>,
    pub(super) optimizer: ModuleOptimizer,
    /// The end-of-epoch checkpoints being written in the background, if any.
    pub(super) writer: Option<std::thread::JoinHandle<Result<(), RunnerError>>>,
    pub(super) state: State,
    pub(super) splits: Vec<Split<T::Item>>,
    pub(super) batch_size: usize,
    pub(super) shuffle: bool,
    pub(super) overwrite: bool,
    pub(super) console: Console,
    pub(super) metric_mode: MetricMode,
}

impl<T: Task, S: Sections, P: Platform> std::fmt::Debug for Runner<T, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("id", &self.identity.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<T: Task, S: Sections> Runner<T, S, Local> {
    /// A runner for `config`, whose identity is derived from git in the working directory.
    pub fn new(config: Config<S>, task: T, model: T::Model) -> Result<Self, RunnerError> {
        let identity = Identity::new(&config)?;
        Self::with_identity(config, identity, task, model)
    }

    /// A runner with a given identity, on the one-process platform of the config's device.
    pub fn with_identity(
        config: Config<S>,
        identity: Identity,
        task: T,
        model: T::Model,
    ) -> Result<Self, RunnerError> {
        config.validate()?;
        let platform = Local::new(config.device, config.precision)?;
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
    /// A runner on `platform`. Every rank gets rank 0's identity, and the model moves onto the
    /// platform's training device with rank 0's weights.
    pub fn with_platform(
        config: Config<S>,
        identity: Identity,
        platform: P,
        task: T,
        model: T::Model,
    ) -> Result<Self, RunnerError> {
        config.validate()?;
        let identity = broadcast_identity(&platform, identity);
        platform.seed(config.seed);
        let model = platform.prepare(model);
        let optimizer = build_optimizer(&config.optim);
        Ok(Self {
            config,
            identity,
            platform,
            task,
            model: Some(model),
            optimizer,
            writer: None,
            state: State::default(),
            splits: Vec::new(),
            batch_size: 32,
            shuffle: true,
            overwrite: false,
            console: Console::Stdout,
            metric_mode: MetricMode::Exact,
        })
    }

    /// Loads only the model weights of a checkpoint (any of danling's files), as `pretrained` does.
    pub fn load_pretrained(&mut self, path: &Path) -> Result<(), RunnerError> {
        self.load_weights(path)
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

    /// Samples per batch (32 by default).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Whether train splits are shuffled each epoch (true by default).
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Lets `train` start fresh in a run directory that holds checkpoints (moving them aside).
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// How the metrics accumulate: exact, dataset-level values (the default) or batch averages.
    pub fn metric_mode(mut self, mode: MetricMode) -> Self {
        self.metric_mode = mode;
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
    #[allow(clippy::expect_used)] // the slot is empty only inside `optimizer_step`, which refills it
    pub fn model(&self) -> &T::Model {
        self.model
            .as_ref()
            .expect("the model is back after every optimizer step")
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
    pub fn load_weights(&mut self, path: &Path) -> Result<(), RunnerError> {
        // Load into a plain (non-autodiff) copy, then track it for training again.
        let model = load_model(self.model().valid(), path)?;
        self.model = Some(self.platform.prepare(model));
        Ok(())
    }

    /// Trains for the configured budget, evaluating after each epoch, writing results and checkpoints.
    pub fn train(&mut self) -> Result<Trained, RunnerError> {
        let trained = self.train_loop();
        // Every checkpoint is on disk when training returns, whichever way it ends, and no rank
        // returns before rank 0 has written them.
        let written = self.finish_writes();
        self.platform.barrier();
        let trained = trained?;
        written?;
        Ok(trained)
    }

    fn train_loop(&mut self) -> Result<Trained, RunnerError> {
        let train: Vec<usize> = (0..self.splits.len()).filter(|&i| self.splits[i].train).collect();
        if train.is_empty() {
            return Err(RunnerError::NoTrainSplit);
        }
        if let Some(split) = train
            .iter()
            .map(|&i| &self.splits[i])
            .find(|s| s.dataset.is_empty())
        {
            return Err(RunnerError::EmptySplit {
                split: split.name.clone(),
            });
        }
        // Files load before the run directory is touched, so a bad one leaves nothing behind.
        // Precedence: `checkpoint` > `resume` > `pretrained`.
        let (resume_from, resume_warnings) = self.resume_source();
        let mut restored = None;
        let pretrained = self.config.pretrained.clone().filter(|_| resume_from.is_none());
        if let Some(path) = &resume_from {
            restored = Some(self.restore(path)?);
        } else if let Some(path) = &pretrained {
            self.load_weights(path)?;
        }
        let role = Role {
            is_main: self.platform.is_main(),
            console: self.console,
        };
        let mode = StartMode::from_config(&self.config, self.overwrite);
        let continued = resume_from.as_deref().map(|path| (path, self.state.step));
        let mut workspace =
            Workspace::open_continued(&self.config, self.identity.clone(), mode, role, continued)?;
        for warning in resume_warnings {
            warn!("{warning}");
        }
        // Continued from another run dir's checkpoint (or under another id).
        let moved = restored.as_ref().is_some_and(|(_, source)| {
            source.id != self.identity.id || !same_dir(&source.dir, &self.identity.dir)
        });
        if let (Some(path), Some((_, source))) = (&resume_from, &restored) {
            info!(
                "resuming from {} at epoch {}, step {}",
                path.display(),
                self.state.epoch,
                self.state.step
            );
            if source.id != self.identity.id {
                info!(
                    "the config differs from that of run {} in hashed keys: continuing it as the new \
                     run {}, with its results history",
                    source.id, self.identity.id
                );
            } else if !same_dir(&source.dir, &self.identity.dir) {
                info!(
                    "run {} continues in {}, with its results history (the checkpoint names {})",
                    self.identity.id,
                    self.identity.dir.display(),
                    source.dir.display()
                );
            }
        } else if self.config.resume {
            warn!(
                "resume: true, but {} has no latest checkpoint: starting fresh",
                self.identity.checkpoint_dir.display()
            );
        }
        if let Some((results, _)) = restored {
            workspace.restore(results).map_err(RunnerError::Save)?;
        }
        if let Some(path) = pretrained {
            info!("loaded pretrained weights from {}", path.display());
        }

        let batches_per_epoch: u64 = train.iter().map(|&i| self.batches(i) as u64).sum();
        let steps_per_epoch = batches_per_epoch.div_ceil(self.config.accum_steps);
        let budget = self.config.budget();
        let total_steps = match budget {
            Budget::Epochs(epochs) => epochs * steps_per_epoch,
            Budget::Steps(steps) => steps,
        };
        let mut scheduler = LrScheduler::new(&self.config.sched, self.config.optim.lr, total_steps)?;
        scheduler.set_steps_taken(self.state.step);
        if moved {
            // The new run dir holds the state it continues from before anything else, so that it can
            // be resumed on its own (and has a `latest` even when there was nothing left to train).
            let progress = self.state.progress.clone();
            self.save_full(&workspace, &scheduler, progress, LATEST)?;
        }
        info!(
            "run {} in {}: {} optimizer steps ({} per epoch), device {}",
            self.identity.id,
            workspace
                .dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            total_steps,
            steps_per_epoch,
            self.platform.kind()
        );

        // A run that early stopping ended stays ended when resumed.
        let mut stopped_early = workspace
            .results()
            .should_stop(workspace.scoring(), self.config.patience);
        let start = Instant::now();
        let mut trained_samples = 0usize;
        // An epoch in progress is finished (evaluated and recorded) even when its last step spent
        // the budget: a step budget can end inside an epoch, after the step checkpoint.
        while !stopped_early && (self.state.progress.is_some() || !self.budget_spent(budget)) {
            let epoch = self.state.epoch;
            let limit = match budget {
                Budget::Steps(steps) => Some(steps),
                Budget::Epochs(_) => None,
            };
            let (mut record, first) = match &self.state.progress {
                Some(progress) => (progress.record.clone(), progress.split),
                None => (Record::new(), 0),
            };
            for &i in train.iter().filter(|&&i| i >= first) {
                let (result, samples) = self.train_epoch(i, &mut scheduler, limit, &workspace, &record)?;
                trained_samples += samples;
                record.insert(self.splits[i].name.clone(), result);
            }
            for i in (0..self.splits.len()).filter(|&i| !self.splits[i].train) {
                let result = self.evaluate_split(i)?;
                record.insert(self.splits[i].name.clone(), result);
            }
            self.state.epoch = epoch + 1;
            self.state.cursor = 0;
            let index = match budget {
                Budget::Epochs(_) => self.state.epoch,
                Budget::Steps(_) => self.state.step,
            };
            let label = match budget {
                Budget::Epochs(epochs) => format!("epoch {}/{epochs}", self.state.epoch),
                Budget::Steps(steps) => format!("step {}/{steps}", self.state.step),
            };
            let (recorded, results) = workspace
                .record_deferred(index, record.clone())
                .map_err(RunnerError::Save)?;
            self.state.early_stop_counter = workspace.results().stale_count(workspace.scoring());
            self.save_checkpoints(&workspace, &scheduler, recorded.is_best, results)?;
            info!("{}", epoch_line(&label, &record, recorded.is_best));
            if recorded.should_stop {
                info!(
                    "early stopping: {} evaluations without improvement",
                    self.state.early_stop_counter
                );
                stopped_early = true;
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        info!(
            "trained {trained_samples} samples in {seconds:.3} s ({:.0} samples/s, evaluation and \
             checkpoints included)",
            trained_samples as f64 / seconds
        );
        let results = workspace.results().clone();
        let best = results.best(workspace.scoring()).map(|(index, _)| index);
        Ok(Trained {
            dir: workspace.dir().map(Path::to_owned),
            results,
            best,
            state: self.state.clone(),
            stopped_early,
        })
    }

    /// Evaluates the named splits (all evaluation splits when empty) with the current model.
    pub fn evaluate(&mut self, names: &[&str]) -> Result<Record, RunnerError> {
        let indices = if names.is_empty() {
            (0..self.splits.len())
                .filter(|&i| !self.splits[i].train)
                .collect()
        } else {
            names
                .iter()
                .map(|name| self.split_index(name))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut record = Record::new();
        for i in indices {
            let result = self.evaluate_split(i)?;
            record.insert(self.splits[i].name.clone(), result);
        }
        Ok(record)
    }

    /// The outputs of `infer_step` for every sample of a split, in order.
    pub fn infer(&mut self, name: &str) -> Result<Predictions, RunnerError> {
        let i = self.split_index(name)?;
        let model = self.model().valid();
        let device = self.platform.device().clone();
        let mut predictions = Predictions::default();
        for rows in self.order(i, false).chunks(self.batch_size) {
            let batch = self.collate(i, rows, &device)?;
            let out = self.task.infer_step(&model, &batch);
            if let Some(outputs) = out.outputs {
                predictions.width = outputs.dims()[1];
                predictions.outputs.extend(host_f64(outputs.into_data()));
            }
            match out.targets {
                Some(Targets::Classes(labels)) => {
                    predictions.target_width = 1;
                    predictions.targets.extend(host_f64(labels.into_data()));
                }
                Some(Targets::Values(values)) => {
                    predictions.target_width = values.dims()[1];
                    predictions.targets.extend(host_f64(values.into_data()));
                }
                None => {}
            }
        }
        Ok(predictions)
    }

    fn split_index(&self, name: &str) -> Result<usize, RunnerError> {
        self.splits
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| RunnerError::UnknownSplit {
                name: name.to_owned(),
                known: self
                    .splits
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn budget_spent(&self, budget: Budget) -> bool {
        match budget {
            Budget::Epochs(epochs) => self.state.epoch >= epochs,
            Budget::Steps(steps) => self.state.step + self.state.skipped >= steps,
        }
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

    pub(super) fn collate(
        &self,
        split: usize,
        rows: &[usize],
        device: &Device,
    ) -> Result<T::Batch, RunnerError> {
        let dataset = &self.splits[split].dataset;
        let items = rows
            .iter()
            .map(|&index| {
                dataset.get(index).map_err(|e| RunnerError::Data {
                    split: self.splits[split].name.clone(),
                    index,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.task.collate(items, device))
    }

    pub(super) fn log_interval(&self) -> usize {
        match self.config.log_interval {
            Some(n) => n as usize,
            None => ((0..self.splits.len()).map(|i| self.batches(i)).max().unwrap_or(1) / 10).max(1),
        }
    }

    /// Loss and metrics of one split with a validation snapshot of the model.
    fn evaluate_split(&self, split: usize) -> Result<SplitResult, RunnerError> {
        let model = self.model().valid();
        let device = self.platform.device().clone();
        let mut metrics = Metrics::new(self.task.metrics(), self.metric_mode);
        let mut loss = AverageMeter::default();
        let mut done = 0usize;
        let order = self.order(split, false);
        let bar = progress_bar(
            self.config.progress,
            self.batches(split),
            &format!("eval {}", self.splits[split].name),
        );
        let start = Instant::now();
        // Each rank evaluates its shard of every global batch; the results are over all of them.
        for global in order.chunks(self.global_batch()) {
            let rows = self.platform.shard(global);
            done += 1;
            bar.inc(1);
            if rows.is_empty() {
                continue;
            }
            let batch = self.collate(split, rows, &device)?;
            let out = self.task.evaluate_step(&model, &batch);
            loss.update(f64::from(out.loss.into_scalar::<f32>()), rows.len() as f64);
            if let (Some(outputs), Some(targets)) = (&out.outputs, &out.targets) {
                metrics.update_tensors(outputs, targets);
            }
        }
        bar.finish_and_clear();
        let (loss, metrics) = self.merge_ranks(loss, metrics);
        let result = split_result(&loss, &metrics, &[], done, start.elapsed().as_secs_f64());
        Ok(result)
    }
}

/// The order in which a shuffling runner visits the `n` items of its split number `split` (in the
/// order splits were added) in epoch `epoch` (counted from 0) of a run with seed `seed`: a
/// permutation drawn from those three alone, so a resumed run sees the same batches.
pub fn shuffled_order(seed: u64, epoch: u64, split: usize, n: usize) -> Vec<usize> {
    Rng::from_parts(&[seed, ORDER_STREAM, epoch, split as u64]).permutation(n)
}

/// Whether two run directories are one, as far as the file system can tell.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `identity` as rank 0 has it, on every rank (ranks on other machines may see other git trees).
fn broadcast_identity(platform: &impl Platform, identity: Identity) -> Identity {
    if platform.world_size() <= 1 {
        return identity;
    }
    let mut bytes = serde_json::to_vec(&identity).unwrap_or_default();
    platform.broadcast(&mut bytes);
    serde_json::from_slice(&bytes).unwrap_or(identity)
}
