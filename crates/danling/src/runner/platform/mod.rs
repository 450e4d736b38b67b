//! The platform: the seed's PlatformRunner. Where a run executes (the burn device), the runtime facts
//! that never go into a checkpoint (`rank`, `world_size`), and the collectives a data-parallel run
//! needs. The runner's loops call each of them at its place; on [`Local`], one process, each one is
//! the identity.
//!
//! A data-parallel platform (MPI, say) implements [`Platform`] and nothing else: how a split's order
//! is sharded, how the per-step seed depends on the rank, and how gradients, small values and bytes
//! travel between processes. Every collective is called by every rank in the same order, with the
//! same shapes, so an implementation can map each call onto one collective of its engine.
//!
//! A collective completes or returns a [`CollectiveError`], never a local stand-in for what the other
//! ranks hold: a rank that went on with its own weights, gradients or identity would train apart
//! from the others without a word. The runner returns the error as
//! [`RunnerError::Collective`](crate::RunnerError::Collective), which is not
//! [`is_collective`](crate::RunnerError::is_collective): the program then ends the whole job
//! ([`end_world`] with `collective: false`).

mod device;
mod launch;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod pieces;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;

pub use device::{Adapter, Found};
pub use launch::Launched;
pub use local::{Local, PlatformError};
#[cfg(feature = "mpi")]
pub use mpi::Mpi;
#[cfg(feature = "mpi")]
use mpi::end as end_mpi;
#[cfg(feature = "mpi")]
use pieces::{GatherPlan, gather_in_pieces};

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config;
use crate::rng::Rng;

/// This process's rank and world size, once a multi-process platform set them (`usize::MAX`: never).
static RANK: AtomicUsize = AtomicUsize::new(usize::MAX);
static WORLD: AtomicUsize = AtomicUsize::new(1);

/// Records this process's place in a multi-process run, for [`process_rank`].
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub(crate) fn set_process_rank(rank: usize, world_size: usize) {
    WORLD.store(world_size, Ordering::SeqCst);
    RANK.store(rank, Ordering::SeqCst);
}

/// This process's `(rank, world_size)` when it is one of several: what a program's error messages
/// name (`[rank 1] error: …`). Before a multi-process platform is set up, the launcher's variables
/// say (the world size is then unknown, and given as 0).
pub fn process_rank() -> Option<(usize, usize)> {
    let rank = RANK.load(Ordering::SeqCst);
    if rank != usize::MAX {
        return Some((rank, WORLD.load(Ordering::SeqCst)));
    }
    crate::env::launcher()
        .and(crate::env::launcher_rank())
        .map(|rank| (rank, 0))
}

/// Ends this process's part of a multi-process run, as it exits with `code`: after a success, or a
/// failure every rank met alike (`collective`: a stop signal, a non-finite stop), every rank waits
/// for the others and the engine shuts down; after any other failure the whole job is aborted with
/// `code`, so that no rank is left waiting. Nothing to do for one process.
pub fn end_world(code: i32, collective: bool) {
    #[cfg(feature = "mpi")]
    end_mpi(code, collective);
    let _ = (code, collective);
}

/// How [`Platform::all_reduce`] combines the values of every rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum over ranks (in rank order, so every rank gets the same bits).
    Sum,
    /// The largest value.
    Max,
}

/// One of the collectives of [`Platform`], as a [`CollectiveError`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Collective {
    /// [`Platform::prepare`]: rank 0's weights on every rank.
    Prepare,
    /// [`Platform::all_reduce_gradients`].
    AllReduceGradients,
    /// [`Platform::broadcast_buffers`].
    BroadcastBuffers,
    /// [`Platform::all_reduce`].
    AllReduce,
    /// [`Platform::all_gather`].
    AllGather,
    /// [`Platform::broadcast`].
    Broadcast,
    /// [`Platform::barrier`].
    Barrier,
}

impl fmt::Display for Collective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Prepare => "prepare",
            Self::AllReduceGradients => "all_reduce_gradients",
            Self::BroadcastBuffers => "broadcast_buffers",
            Self::AllReduce => "all_reduce",
            Self::AllGather => "all_gather",
            Self::Broadcast => "broadcast",
            Self::Barrier => "barrier",
        })
    }
}

/// A collective that did not complete on this rank, in one line that names it and the rank. There is
/// no local fallback: the run ends, and the program ends the whole job (see [`end_world`]).
///
/// A failure inside an engine that ends the job itself (MPI's default error handler,
/// `MPI_ERRORS_ARE_FATAL`, aborts every rank with its own message) never returns here.
#[derive(Debug, thiserror::Error)]
#[error("collective `{collective}` failed on rank {rank}: {problem}")]
#[non_exhaustive]
pub struct CollectiveError {
    /// The collective.
    pub collective: Collective,
    /// The rank that met the failure.
    pub rank: usize,
    /// What went wrong.
    pub problem: CollectiveProblem,
}

impl CollectiveError {
    /// `problem`, met by `rank` in `collective`.
    pub fn new(collective: Collective, rank: usize, problem: CollectiveProblem) -> Self {
        Self {
            collective,
            rank,
            problem,
        }
    }
}

/// What went wrong in a [`CollectiveError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectiveProblem {
    /// What arrived has another length than this rank's side of the collective: the ranks built
    /// different models.
    #[error(
        "{received} values of {what} arrived where this rank has {expected}; every rank must build \
         the same model"
    )]
    Length {
        /// What the values are (`the model's parameters`).
        what: &'static str,
        /// The values that arrived.
        received: u64,
        /// The values this rank has.
        expected: u64,
    },
    /// This rank could not encode what it sends.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What it is (`the identity`).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// What a rank sent could not be read.
    #[error("cannot read {what} that rank {from} sent: {reason}")]
    Decode {
        /// What it is (`the identity`).
        what: &'static str,
        /// The rank that sent it.
        from: usize,
        /// Why.
        reason: String,
    },
    /// The platform's engine failed.
    #[error("{0}")]
    Failed(String),
}

/// Where and how a run executes, and how its processes agree.
///
/// The collectives (`prepare`, `all_reduce_gradients`, `broadcast_buffers`, `all_reduce`,
/// `all_gather`, `broadcast`, `barrier`) have no default: every platform says what each one does,
/// even where it is the identity, so that a new platform cannot train unsynchronised by leaving one
/// out. Each completes or returns a [`CollectiveError`]; none falls back to this rank's own value.
pub trait Platform {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// Number of processes in the run.
    fn world_size(&self) -> usize;

    /// Whether this process writes the run's files and logs to them: rank 0.
    fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The plain (non-autodiff) device, for evaluation and inference.
    fn device(&self) -> &Device;

    /// The device this process trains on (never `auto`: the device `auto` chose).
    fn kind(&self) -> config::Device;

    /// The device for the log: its kind, the adapter behind it, and why `auto` chose it.
    fn description(&self) -> String {
        self.kind().to_string()
    }

    /// The compute precision the device was set up for (f32 unless mixed precision).
    fn precision(&self) -> config::Precision {
        config::Precision::F32
    }

    /// The device with autodiff, for training.
    fn train_device(&self) -> Device {
        self.device().clone().autodiff()
    }

    /// Seeds the devices' RNG (dropout and random initialisation).
    fn seed(&self, seed: u64) {
        self.device().seed(seed);
        self.train_device().seed(seed);
    }

    /// Moves a model onto the training device, in training mode, with the same weights on every rank
    /// (a data-parallel platform broadcasts rank 0's; a rank whose model has another number of
    /// values fails with [`CollectiveProblem::Length`]).
    fn prepare<M: Module>(&self, model: M) -> Result<M, CollectiveError>;

    /// This rank's part of `rows`, one global batch: contiguous parts, as even as the length allows
    /// (the first `len % world_size` ranks take one row more), so that no row is dropped or taken
    /// twice.
    fn shard<'a>(&self, rows: &'a [usize]) -> &'a [usize] {
        let (n, ranks, rank) = (rows.len(), self.world_size().max(1), self.rank());
        let (base, extra) = (n / ranks, n % ranks);
        let start = rank * base + rank.min(extra);
        let len = base + usize::from(rank < extra);
        &rows[start.min(n)..(start + len).min(n)]
    }

    /// The device seed before micro-batch `iter` of a run seeded with `seed` (dropout and the like):
    /// from (seed, iter) on rank 0, and from (seed, iter, rank) on the others, so that ranks draw
    /// different masks.
    fn step_seed(&self, seed: u64, iter: u64) -> u64 {
        match self.rank() {
            0 => Rng::from_parts(&[seed, STEP_STREAM, iter]).next_u64(),
            rank => Rng::from_parts(&[seed, STEP_STREAM, iter, rank as u64]).next_u64(),
        }
    }

    /// Sums every rank's gradients of `model` (each already weighted by its share of the global
    /// batch), so that every rank holds the gradient of the global batch. Called between backward and
    /// clipping, once per optimizer step.
    fn all_reduce_gradients<M: Module>(
        &self,
        model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError>;

    /// Gives `model` rank 0's buffers (BatchNorm's running statistics and other float tensors that
    /// are not trained) on every rank, called after every optimizer step once their updates are
    /// published (see `runner/buffers.rs`): every rank then holds the model rank 0 checkpoints.
    /// Nothing to do on one process. On a failure `model` is left as this rank had it.
    fn broadcast_buffers<M: Module>(&self, model: &mut M) -> Result<(), CollectiveError>;

    /// Combines `values` over ranks with `op`, in place: the losses and counts of a split, and the
    /// flags every rank must agree on (skip a non-finite update, stop on a signal).
    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), CollectiveError>;

    /// Every rank's `bytes`, in rank order, on every rank: the states of the streaming metrics. Any
    /// length a rank can hold (MPI's counts are `int`s: over 2 GiB goes in pieces).
    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError>;

    /// Replaces `bytes` with rank 0's on every rank: the identity, a checkpoint.
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CollectiveError>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<(), CollectiveError>;

    /// The time spent in [`all_reduce_gradients`](Self::all_reduce_gradients) so far: what data
    /// parallelism costs (zero on one process).
    fn gradient_reduce_time(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A borrowed platform is the platform: several runners in one process, one after the other, can
/// share it (an MPI world is joined once per process).
impl<P: Platform> Platform for &P {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn world_size(&self) -> usize {
        (**self).world_size()
    }
    fn is_main(&self) -> bool {
        (**self).is_main()
    }
    fn device(&self) -> &Device {
        (**self).device()
    }
    fn kind(&self) -> config::Device {
        (**self).kind()
    }
    fn description(&self) -> String {
        (**self).description()
    }
    fn precision(&self) -> config::Precision {
        (**self).precision()
    }
    fn train_device(&self) -> Device {
        (**self).train_device()
    }
    fn seed(&self, seed: u64) {
        (**self).seed(seed);
    }
    fn prepare<M: Module>(&self, model: M) -> Result<M, CollectiveError> {
        (**self).prepare(model)
    }
    fn shard<'a>(&self, rows: &'a [usize]) -> &'a [usize] {
        (**self).shard(rows)
    }
    fn step_seed(&self, seed: u64, iter: u64) -> u64 {
        (**self).step_seed(seed, iter)
    }
    fn all_reduce_gradients<M: Module>(
        &self,
        model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError> {
        (**self).all_reduce_gradients(model, gradients)
    }
    fn broadcast_buffers<M: Module>(&self, model: &mut M) -> Result<(), CollectiveError> {
        (**self).broadcast_buffers(model)
    }
    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), CollectiveError> {
        (**self).all_reduce(values, op)
    }
    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
        (**self).all_gather(bytes)
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CollectiveError> {
        (**self).broadcast(bytes)
    }
    fn barrier(&self) -> Result<(), CollectiveError> {
        (**self).barrier()
    }
    fn gradient_reduce_time(&self) -> std::time::Duration {
        (**self).gradient_reduce_time()
    }
}

/// `value` as rank 0 has it, on every rank, sent as JSON through [`Platform::broadcast`]: rank 0
/// keeps its own (and alone encodes it); the other ranks decode rank 0's, and a failure on either
/// side is the broadcast's error, never this rank's own value.
pub(crate) fn broadcast_json<T: Serialize + DeserializeOwned>(
    platform: &impl Platform,
    what: &'static str,
    value: T,
) -> Result<T, CollectiveError> {
    if platform.world_size() <= 1 {
        return Ok(value);
    }
    let failed = |problem| CollectiveError::new(Collective::Broadcast, platform.rank(), problem);
    let mut bytes = match platform.is_main() {
        true => serde_json::to_vec(&value).map_err(|e| {
            failed(CollectiveProblem::Encode {
                what,
                reason: e.to_string(),
            })
        })?,
        false => Vec::new(),
    };
    platform.broadcast(&mut bytes)?;
    if platform.is_main() {
        return Ok(value);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        failed(CollectiveProblem::Decode {
            what,
            from: 0,
            reason: e.to_string(),
        })
    })
}

/// Every rank's `value`, in rank order, on every rank, gathered as JSON through
/// [`Platform::all_gather`]. A rank's value that cannot be read is the gather's error: no rank is
/// left out.
pub(crate) fn all_gather_json<T: Serialize + DeserializeOwned>(
    platform: &impl Platform,
    what: &'static str,
    value: &T,
) -> Result<Vec<T>, CollectiveError> {
    let failed = |problem| CollectiveError::new(Collective::AllGather, platform.rank(), problem);
    let mine = serde_json::to_vec(value).map_err(|e| {
        failed(CollectiveProblem::Encode {
            what,
            reason: e.to_string(),
        })
    })?;
    platform
        .all_gather(mine)?
        .iter()
        .enumerate()
        .map(|(from, bytes)| {
            serde_json::from_slice(bytes).map_err(|e| {
                failed(CollectiveProblem::Decode {
                    what,
                    from,
                    reason: e.to_string(),
                })
            })
        })
        .collect()
}

/// Stream tag of the per-step device reseeding (dropout and the like).
pub(crate) const STEP_STREAM: u64 = 0x57E9;
