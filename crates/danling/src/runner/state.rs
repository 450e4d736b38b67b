//! The mutable progress of a run, kept apart from the immutable config.

use serde::{Deserialize, Serialize};

/// Where a run stands. Saved in every checkpoint so that a run resumes from any point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Completed epochs.
    pub epoch: u64,
    /// Optimizer steps taken (skipped updates are not steps).
    pub step: u64,
    /// Micro-batches trained on.
    pub iter: u64,
    /// Batches of the current epoch already trained on (0 at an epoch boundary).
    pub cursor: u64,
    /// Updates skipped because the loss or a gradient was not finite.
    pub skipped: u64,
    /// Consecutive evaluations without improvement on the best.
    pub early_stop_counter: u64,
}
