//! Callbacks: code of the program's own that runs at the run's events, with state that every
//! checkpoint saves and every resume restores.
//!
//! A callback is handed to the runner with [`Runner::callback`](super::Runner::callback); the
//! runner calls the callbacks in the order they were added, at these events:
//!
//! | event | when | on which ranks |
//! | --- | --- | --- |
//! | [`on_run_start`](Callback::on_run_start) | after a resume (if any) restored the state, before the first step | every rank |
//! | [`on_step`](Callback::on_step) | after each optimizer step (skipped non-finite updates included) | every rank |
//! | [`on_evaluation`](Callback::on_evaluation) | after each epoch's evaluation, before its record is written | every rank |
//! | [`on_checkpoint`](Callback::on_checkpoint) | once a checkpoint file is on disk | rank 0, which writes them |
//! | [`on_run_end`](Callback::on_run_end) | when `train` ends, whichever way | every rank |
//!
//! What a callback asks for is decided for every rank together, as a stop signal is: a stop asked on
//! any rank stops every rank after the same step; the scalars recorded are rank 0's; the state a
//! checkpoint keeps is rank 0's, and a resume gives it to every rank. So a callback whose state or
//! scalars depend on the rank (its loss is the rank's own) resumes exactly on rank 0 only.

use indexmap::IndexMap;
use serde_json::Value;

use crate::results::Record;

/// Why a callback's saved state could not be restored.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CallbackError(pub String);

impl From<serde_json::Error> for CallbackError {
    fn from(error: serde_json::Error) -> Self {
        Self(error.to_string())
    }
}

/// What callbacks ask of the run at an event: scalars for the epoch's record and a stop.
#[derive(Debug, Default)]
pub struct Control {
    pub(super) scalars: Vec<(String, String, f64)>,
    pub(super) stop: Option<String>,
}

impl Control {
    /// Adds `name: value` to split `split` of the epoch's record (created if the record has no such
    /// split), and so to `results.json`, TensorBoard and the report. Scalars asked for in `on_step`
    /// go into the record of the epoch in progress; a later value of the same name replaces an
    /// earlier one.
    pub fn record(&mut self, split: &str, name: &str, value: f64) {
        self.scalars.push((split.to_owned(), name.to_owned(), value));
    }

    /// Asks the run to stop after the current step (or evaluation): it writes `latest`, records
    /// `stopped` with `reason` in `status.json`, and `train` returns with
    /// [`Trained::stopped`](super::Trained::stopped) set. The run can be resumed.
    pub fn stop(&mut self, reason: impl Into<String>) {
        self.stop = Some(reason.into());
    }
}

/// The run as it starts (or resumes).
#[derive(Debug)]
pub struct RunStart<'a, M> {
    /// The model, as the first step will train it.
    pub model: &'a M,
    /// Completed epochs (more than 0 on a resume).
    pub epoch: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// Optimizer steps the run takes in all.
    pub total_steps: u64,
}

/// An optimizer step, just taken.
pub struct Step<'a, M> {
    /// The model after the step.
    pub model: &'a M,
    /// Optimizer steps taken, this one included (a skipped non-finite update is not one).
    pub step: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// The learning rate the step used.
    pub lr: f64,
    /// Whether the update was taken (false when a non-finite update was skipped).
    pub updated: bool,
    /// The step's loss on this rank, read from the device only when asked for.
    pub(super) loss: &'a dyn Fn() -> f64,
}

impl<M: std::fmt::Debug> std::fmt::Debug for Step<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("step", &self.step)
            .field("epoch", &self.epoch)
            .field("lr", &self.lr)
            .field("updated", &self.updated)
            .finish_non_exhaustive()
    }
}

impl<M> Step<'_, M> {
    /// The mean loss of the step's micro-batches on this rank (weighted by their samples). Reading it
    /// waits for the device, which the runner otherwise does only at log lines.
    pub fn loss(&self) -> f64 {
        (self.loss)()
    }
}

/// An epoch's evaluation, before its record is written.
#[derive(Debug)]
pub struct Evaluation<'a, M> {
    /// The model as evaluated.
    pub model: &'a M,
    /// The record's index: the completed epoch, or the step in a step budget.
    pub index: u64,
    /// The record: each split's loss and metrics.
    pub record: &'a Record,
}

/// A checkpoint file, on disk.
#[derive(Debug)]
pub struct Checkpoint<'a> {
    /// The file.
    pub path: &'a std::path::Path,
    /// The optimizer steps it holds.
    pub step: u64,
}

/// How `train` ended.
#[derive(Debug)]
pub struct RunEnd<'a> {
    /// Optimizer steps taken.
    pub step: u64,
    /// `finished`, `stopped`, `preempted` or `failed`, as `status.json` says.
    pub outcome: &'a str,
}

/// Code of the program's own at the run's events (see the module's table for when and where each
/// is called). Every method has a default that does nothing; a callback implements the ones it
/// needs. `M` is the model.
pub trait Callback<M>: Send {
    /// A name, unique among the run's callbacks: its state's key in checkpoints.
    fn name(&self) -> String;

    /// The run starts, or resumes.
    fn on_run_start(&mut self, run: &RunStart<'_, M>, control: &mut Control) {
        let _ = (run, control);
    }

    /// An optimizer step was taken (or a non-finite update skipped).
    fn on_step(&mut self, step: &Step<'_, M>, control: &mut Control) {
        let _ = (step, control);
    }

    /// An epoch was evaluated; its record is written after this.
    fn on_evaluation(&mut self, evaluation: &Evaluation<'_, M>, control: &mut Control) {
        let _ = (evaluation, control);
    }

    /// A checkpoint file is on disk (rank 0).
    fn on_checkpoint(&mut self, checkpoint: &Checkpoint<'_>) {
        let _ = checkpoint;
    }

    /// `train` ends.
    fn on_run_end(&mut self, end: &RunEnd<'_>) {
        let _ = end;
    }

    /// The state to save in every checkpoint (`None`, the default: none).
    fn state(&self) -> Option<Value> {
        None
    }

    /// Restores the state a checkpoint saved (called before `on_run_start` on a resume).
    fn load_state(&mut self, state: &Value) -> Result<(), CallbackError> {
        let _ = state;
        Ok(())
    }
}

/// The states of `callbacks` that keep one, by name.
pub(super) fn states<M>(callbacks: &[Box<dyn Callback<M>>]) -> IndexMap<String, Value> {
    callbacks
        .iter()
        .filter_map(|c| c.state().map(|state| (c.name(), state)))
        .collect()
}

/// Adds `scalars` to `record`, a later value of a name replacing an earlier one.
pub(super) fn apply(record: &mut Record, scalars: &Record) {
    for (split, values) in scalars {
        let into = record.entry(split.clone()).or_default();
        for (name, value) in values {
            into.insert(name.clone(), *value);
        }
    }
}

impl Control {
    /// Moves the scalars asked for into `record`.
    pub(super) fn take_scalars(&mut self, into: &mut Record) {
        for (split, name, value) in self.scalars.drain(..) {
            into.entry(split).or_default().insert(name, value);
        }
    }
}
