//! The callbacks component: the program's callbacks (`callback.rs`), called at the run's events
//! (`events.rs`), with what they asked for (scalars for the epoch's record, a stop) until the run
//! takes it to every rank together.

use indexmap::IndexMap;
use serde_json::Value;

use super::callback::{self, Callback, Checkpoint, Control, Evaluation, RunEnd, RunStart, Step};
use super::error::RunnerError;
use crate::results::Record;

/// The program's callbacks and what they asked for that the run has not taken yet.
pub(super) struct Hooks<M> {
    /// In the order added.
    callbacks: Vec<Box<dyn Callback<M>>>,
    /// Scalars asked for during the epoch in progress, for its record (a mid-epoch checkpoint keeps
    /// them).
    pub(super) scalars: Record,
    /// A stop asked for on this rank and not yet agreed by every rank.
    stop: Option<String>,
}

impl<M> Default for Hooks<M> {
    fn default() -> Self {
        Self {
            callbacks: Vec::new(),
            scalars: Record::new(),
            stop: None,
        }
    }
}

impl<M> Hooks<M> {
    pub(super) fn push(&mut self, callback: Box<dyn Callback<M>>) {
        self.callbacks.push(callback);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    /// The states of the callbacks that keep one, by name, for a checkpoint.
    pub(super) fn states(&self) -> IndexMap<String, Value> {
        callback::states(&self.callbacks)
    }

    /// Gives each callback the state a checkpoint saved for it (by name).
    pub(super) fn restore(&mut self, states: &IndexMap<String, Value>) -> Result<(), RunnerError> {
        for callback in &mut self.callbacks {
            let name = callback.name();
            if let Some(state) = states.get(&name) {
                callback
                    .load_state(state)
                    .map_err(|error| RunnerError::Callback {
                        name: name.clone(),
                        message: error.to_string(),
                    })?;
            }
        }
        Ok(())
    }

    /// Takes what `control` asked for: its scalars into the epoch's, its stop unless one is waiting.
    fn take(&mut self, mut control: Control) {
        control.take_scalars(&mut self.scalars);
        if let Some(reason) = control.stop {
            self.stop.get_or_insert(reason);
        }
    }

    pub(super) fn run_start(&mut self, run: &RunStart<'_, M>) {
        let mut control = Control::default();
        for callback in &mut self.callbacks {
            callback.on_run_start(run, &mut control);
        }
        self.take(control);
    }

    pub(super) fn step(&mut self, step: &Step<'_, M>) {
        let mut control = Control::default();
        for callback in &mut self.callbacks {
            callback.on_step(step, &mut control);
        }
        self.take(control);
    }

    /// `on_evaluation`; returns the epoch's scalars (taken) and the stop asked for on this rank.
    pub(super) fn evaluation(&mut self, evaluation: &Evaluation<'_, M>) -> (Record, Option<String>) {
        let mut control = Control::default();
        for callback in &mut self.callbacks {
            callback.on_evaluation(evaluation, &mut control);
        }
        self.take(control);
        (std::mem::take(&mut self.scalars), self.stop.take())
    }

    pub(super) fn checkpoint(&mut self, checkpoint: &Checkpoint<'_>) {
        for callback in &mut self.callbacks {
            callback.on_checkpoint(checkpoint);
        }
    }

    pub(super) fn run_end(&mut self, end: &RunEnd<'_>) {
        for callback in &mut self.callbacks {
            callback.on_run_end(end);
        }
    }

    /// The stop asked for on this rank since it was last taken.
    pub(super) fn take_stop(&mut self) -> Option<String> {
        self.stop.take()
    }
}
