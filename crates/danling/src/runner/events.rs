//! The run's events, from the loops to the callbacks (`hooks.rs`): each builds the event from the
//! runner's state, and what the callbacks asked for goes to every rank together.

use std::path::Path;

use super::base::present;
use super::callback::{self, Checkpoint, Evaluation, RunStart, Step};
use super::{Platform, ReduceOp, Runner, RunnerError, Task};
use crate::config::Sections;
use crate::results::Record;

/// Scalars for a record, with non-finite values kept.
#[derive(serde::Serialize, serde::Deserialize)]
struct Scalars(#[serde(with = "crate::nonfinite::record")] Record);

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// `on_run_start` for every callback.
    pub(super) fn run_start_event(&mut self, total_steps: u64) {
        let run = RunStart {
            model: present(&self.model),
            epoch: self.state.epoch,
            step: self.state.step,
            total_steps,
        };
        self.hooks.run_start(&run);
    }

    /// `on_step` for every callback, after an optimizer step that used `lr`; `loss` reads the step's
    /// loss on demand.
    pub(super) fn step_event(&mut self, lr: f64, updated: bool, loss: &dyn Fn() -> f64) {
        if self.hooks.is_empty() {
            return;
        }
        let step = Step {
            model: present(&self.model),
            step: self.state.step,
            epoch: self.state.epoch,
            lr,
            updated,
            loss,
        };
        self.hooks.step(&step);
    }

    /// `on_evaluation` for every callback; then the scalars asked for this epoch (rank 0's, on every
    /// rank) go into `record`. Returns the stop this rank's callbacks asked for, if any.
    pub(super) fn evaluation_event(
        &mut self,
        index: u64,
        record: &mut Record,
    ) -> Result<Option<String>, RunnerError> {
        if self.hooks.is_empty() {
            return Ok(None);
        }
        let evaluation = Evaluation {
            model: present(&self.model),
            index,
            record,
        };
        let (mut scalars, stop) = self.hooks.evaluation(&evaluation);
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
        Ok(stop)
    }

    /// The stop the callbacks of any rank asked for (`local`: this rank's), agreed by every rank,
    /// with the reason of the first rank that asked. Every rank calls it at the same point; nothing
    /// is exchanged in a run without callbacks.
    pub(super) fn agreed_callback_stop(&self, local: Option<String>) -> Result<Option<String>, RunnerError> {
        if self.hooks.is_empty() || self.platform.world_size() <= 1 {
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
        self.hooks.checkpoint(&checkpoint);
    }
}
