//! Runner errors.

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::fs::IoError;
use crate::identity::IdentityError;
use crate::log::LogError;
use crate::log::tensorboard::TensorBoardError;
use crate::optim::SchedulerError;
use crate::workspace::WorkspaceError;

use super::{CollectiveError, PlatformError};

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity could not be derived.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The device could not be set up.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// A collective of the platform did not complete on this rank (rank 0's model has another length
    /// than this rank's, say). Met by this rank alone, so not [`is_collective`](Self::is_collective):
    /// the program ends the whole job ([`end_world`](super::end_world) with `collective: false`)
    /// rather than letting the other ranks wait in the next collective.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// The run directory could not be used (created, locked, entered) when the run started.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// `run.log` could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The TensorBoard event file could not be created.
    #[error(transparent)]
    TensorBoard(#[from] TensorBoardError),
    /// One of the run's files could not be written once training was under way: a full disk, a file
    /// over the size limit, an I/O error. The files written before are intact, and `resume: true`
    /// continues from them once the cause is gone.
    #[error(transparent)]
    Save(WorkspaceError),
    /// `resume: auto` found checkpoints, and none of them can be resumed from.
    #[error(
        "resume: auto: none of the {count} checkpoint(s) in {} can be resumed from ({first}); move them \
         aside to start again, or resume one with `checkpoint: PATH`",
        dir.display()
    )]
    NoIntactCheckpoint {
        /// The checkpoint directory.
        dir: std::path::PathBuf,
        /// The damaged checkpoints.
        count: usize,
        /// What is wrong with `latest` (or another of them).
        first: String,
    },
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The learning-rate schedule is invalid for this run.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// A dataset item could not be read.
    #[error("split `{split}`: cannot read item {index}: {message}")]
    Data {
        /// The split.
        split: String,
        /// The item's index.
        index: usize,
        /// The dataset's message.
        message: String,
    },
    /// The loader's threads (`data.workers`) could not be started.
    #[error("cannot start {workers} data loader threads (data.workers): {source}")]
    Loader {
        /// The threads asked for.
        workers: usize,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A split name that the runner does not have.
    #[error("unknown split `{name}` (splits: {known})")]
    UnknownSplit {
        /// The name asked for.
        name: String,
        /// The splits there are.
        known: String,
    },
    /// Training was asked for without a train split.
    #[error("no train split: add one with `Runner::train_split`")]
    NoTrainSplit,
    /// A train split has no items.
    #[error("split `{split}` is empty")]
    EmptySplit {
        /// The split.
        split: String,
    },
    /// The loss or a gradient was not finite and `nonfinite: stop` is set.
    #[error(
        "non-finite loss or gradient at optimizer step {step} (epoch {epoch}); `nonfinite: skip` skips such updates"
    )]
    NonFinite {
        /// The optimizer step that would have been taken.
        step: u64,
        /// The epoch (1-based).
        epoch: u64,
    },
    /// A checkpoint was trained on another global batch than this run's.
    #[error(
        "the checkpoint was trained on a global batch of batch_size {} × world_size {} × accum_steps {} = {}, \
         and this run's is batch_size {} × world_size {} × accum_steps {} = {}: resume with the same \
         global batch (batch_size × world_size × accum_steps)",
        before.0, before.1, before.2, before.0 as u64 * before.1 as u64 * before.2,
        now.0, now.1, now.2, now.0 as u64 * now.1 as u64 * now.2
    )]
    GlobalBatch {
        /// `(batch_size, world_size, accum_steps)` of the checkpoint.
        before: (usize, usize, u64),
        /// `(batch_size, world_size, accum_steps)` of this run.
        now: (usize, usize, u64),
    },
    /// The thread that wrote checkpoints in the background panicked.
    #[error("the checkpoint writer thread failed: {0}")]
    Writer(String),
    /// A metric state (a rank's, or a checkpoint's) that the task's metrics cannot take.
    #[error("the metric states of rank {rank} do not fit the task's metrics: {source}")]
    Metrics {
        /// The rank whose states they are (0 for a one-process checkpoint's).
        rank: usize,
        /// What does not fit.
        #[source]
        source: crate::metrics::MetricError,
    },
    /// A metric of the task has a name that another has, or that the runner's values take.
    #[error(
        "metric name `{0}` is given twice or is one of the runner's (loss, lr, time, samples_per_s, skipped)"
    )]
    MetricName(String),
    /// The optimizer the config names is not the one the program gave (`optim.type: custom`).
    #[error("{0}")]
    Optimizer(String),
    /// A callback's saved state could not be restored.
    #[error("callback `{name}`: cannot restore its saved state: {message}")]
    Callback {
        /// The callback's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A callback asked the run to stop (internal: `train` returns `Ok` with
    /// [`Trained::stopped`](super::Trained::stopped)).
    #[error("stopped by a callback at optimizer step {step}: {reason}")]
    CallbackStop {
        /// The callback's reason.
        reason: String,
        /// The optimizer steps taken.
        step: u64,
    },
    /// The stop handlers could not be installed (see [`Runner::handle_signals`](super::Runner::handle_signals)).
    #[error("cannot install the SIGINT/SIGTERM handlers for a graceful stop: {0}")]
    Signals(#[source] std::io::Error),
    /// A stop signal arrived; the latest checkpoint was written.
    #[error("stopped by {signal:?} at optimizer step {step}; the latest checkpoint holds the run")]
    Interrupted {
        /// The signal.
        signal: crate::signals::Stop,
        /// The optimizer steps taken.
        step: u64,
    },
}

impl From<IoError> for RunnerError {
    fn from(error: IoError) -> Self {
        Self::Workspace(WorkspaceError::Io(error))
    }
}

impl RunnerError {
    /// Whether every rank of a multi-process run meets this error at the same point, by a decision
    /// they took together: a stop signal, or `nonfinite: stop`.
    pub fn is_collective(&self) -> bool {
        matches!(
            self,
            Self::Interrupted { .. } | Self::NonFinite { .. } | Self::CallbackStop { .. }
        )
    }

    /// `error`, met while writing the run's files during training: a failed write is
    /// [`RunnerError::Save`], not a run directory that cannot be used.
    pub(super) fn saving(error: impl Into<Self>) -> Self {
        match error.into() {
            Self::Workspace(error) => Self::Save(error),
            Self::Checkpoint(CheckpointError::Write(error))
            | Self::TensorBoard(TensorBoardError::Io(error)) => Self::Save(WorkspaceError::Io(error)),
            other => other,
        }
    }
}
