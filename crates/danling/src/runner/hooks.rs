//! Calling the program's callbacks (`callback.rs`) at the run's events, and taking what they ask
//! for (scalars, a stop) to every rank together.

use std::path::Path;

use super::callback::{self, Checkpoint, Evaluation, Step};
use super::{Control, Platform, ReduceOp, Runner, RunnerError, Task};
use crate::config::Sections;
use crate::results::Record;

/// Scalars for a record, with non-finite values kept.
#[derive(serde::Serialize, serde::Deserialize)]
struct Scalars(#[serde(with = "crate::nonfinite::record")] Record);

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// Gives each callback the state the checkpoint resumed from saved for it (by name).
    pub(super) fn restore_callbacks(&mut self) -> Result<(), RunnerError> {
        for callback in &mut self.callbacks {
            let name = callback.name();
            if let Some(state) = self.state.callbacks.get(&name) {
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

    /// `on_step` for every callback, after an optimizer step that used `lr`; `loss` reads the step's
    /// loss on demand.
    pub(super) fn step_event(&mut self, lr: f64, updated: bool, loss: &dyn Fn() -> f64) {
        if self.callbacks.is_empty() {
            return;
        }
        let mut control = Control::default();
        let mut callbacks = std::mem::take(&mut self.callbacks);
        let step = Step {
            model: self.model(),
            step: self.state.step,
            epoch: self.state.epoch,
            lr,
            updated,
            loss,
        };
        for callback in &mut callbacks {
            callback.on_step(&step, &mut control);
        }
        self.callbacks = callbacks;
        control.take_scalars(&mut self.scalars);
        if let Some(reason) = control.stop {
            self.callback_stop.get_or_insert(reason);
        }
    }

    /// `on_evaluation` for every callback; then the scalars asked for this epoch (rank 0's, on every
    /// rank) go into `record`. Returns the stop this rank's callbacks asked for, if any.
    pub(super) fn evaluation_event(
        &mut self,
        index: u64,
        record: &mut Record,
    ) -> Result<Option<String>, RunnerError> {
        if self.callbacks.is_empty() {
            return Ok(None);
        }
        let mut control = Control::default();
        let mut callbacks = std::mem::take(&mut self.callbacks);
        let evaluation = Evaluation {
            model: self.model(),
            index,
            record,
        };
        for callback in &mut callbacks {
            callback.on_evaluation(&evaluation, &mut control);
        }
        self.callbacks = callbacks;
        let mut scalars = std::mem::take(&mut self.scalars);
        control.take_scalars(&mut scalars);
        if self.platform.world_size() > 1 {
            // Numbers and strings (non-finite ones as strings): serialising cannot fail, and the
            // bytes rank 0 sent are what it serialised.
            let mut bytes = serde_json::to_vec(&Scalars(scalars)).unwrap_or_default();
            self.platform.broadcast(&mut bytes)?;
            scalars = serde_json::from_slice::<Scalars>(&bytes)
                .map(|Scalars(theirs)| theirs)
                .unwrap_or_default();
        }
        callback::apply(record, &scalars);
        Ok(self.callback_stop.take().or(control.stop))
    }

    /// The stop the callbacks of any rank asked for (`local`: this rank's), agreed by every rank,
    /// with the reason of the first rank that asked. Every rank calls it at the same point; nothing
    /// is exchanged in a run without callbacks.
    pub(super) fn agreed_callback_stop(&self, local: Option<String>) -> Result<Option<String>, RunnerError> {
        if self.callbacks.is_empty() || self.platform.world_size() <= 1 {
            return Ok(local);
        }
        let mut flag = [f64::from(u8::from(local.is_some()))];
        self.platform.all_reduce(&mut flag, ReduceOp::Max)?;
        if flag[0] == 0.0 {
            return Ok(None);
        }
        let mine = local.unwrap_or_default().into_bytes();
        Ok(self
            .platform
            .all_gather(mine)?
            .into_iter()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .find(|reason| !reason.is_empty()))
    }

    /// `on_checkpoint` for every callback: `path` is on disk.
    pub(super) fn checkpoint_event(&mut self, path: &Path) {
        let checkpoint = Checkpoint {
            path,
            step: self.state.step,
        };
        for callback in &mut self.callbacks {
            callback.on_checkpoint(&checkpoint);
        }
    }
}
