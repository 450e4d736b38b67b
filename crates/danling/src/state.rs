//! The mutable progress of a run, kept apart from the immutable config: what every checkpoint
//! records, below both the checkpoint files and the runner that fills it.

use serde::{Deserialize, Serialize};

use crate::metrics::{AverageMeter, Metrics};
use crate::results::Record;

/// Where a run stands. Saved in every checkpoint so that a run resumes from any point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Completed epochs.
    pub epoch: u64,
    /// Optimizer steps taken (skipped updates are not steps).
    pub step: u64,
    /// Micro-batches trained on.
    pub iter: u64,
    /// Batches of the current train split already trained on (0 at an epoch boundary).
    pub cursor: u64,
    /// Updates skipped because the loss or a gradient was not finite.
    pub skipped: u64,
    /// Consecutive evaluations without improvement on the best.
    pub early_stop_counter: u64,
    /// The epoch in progress, when the checkpoint was written inside one.
    #[serde(default)]
    pub progress: Option<EpochProgress>,
}

/// What an epoch in progress has accumulated, so that resuming it gives the same results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// The train split in progress (its position among the runner's splits).
    pub split: usize,
    /// Results of the train splits already finished this epoch.
    #[serde(with = "crate::metrics::nonfinite::record")]
    pub record: Record,
    /// The loss so far on the split in progress.
    pub loss: AverageMeter,
    /// The metrics so far on the split in progress.
    pub metrics: Metrics,
    /// Skipped updates before this split started.
    pub skipped_before: u64,
}
