//! The platform: the seed's PlatformRunner. Where a run executes (the burn device), the runtime facts
//! that never go into a checkpoint (`rank`, `world_size`), and the collectives a data-parallel run
//! needs. The runner's loops call each of them at its place; [`Local`], one process, makes them no-ops.
//!
//! A data-parallel platform (MPI, say) implements [`Platform`] and nothing else: how a split's order
//! is sharded, how the per-step seed depends on the rank, and how gradients, small values and bytes
//! travel between processes. Every collective is called by every rank in the same order, with the
//! same shapes, so an implementation can map each call onto one collective of its engine.

mod device;
mod launch;
mod local;
#[cfg(feature = "mpi")]
mod mpi;

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

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Where and how a run executes, and how its processes agree.
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
    /// (a data-parallel platform broadcasts rank 0's).
    fn prepare<M: Module>(&self, model: M) -> M {
        model.to_device(&self.train_device()).train()
    }

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
    fn all_reduce_gradients<M: Module>(&self, _model: &M, gradients: GradientsParams) -> GradientsParams {
        gradients
    }

    /// `model` with rank 0's buffers (BatchNorm's running statistics and other float tensors that
    /// are not trained) on every rank, called after every optimizer step once their updates are
    /// published (see `runner/buffers.rs`): every rank then holds the model rank 0 checkpoints.
    /// The identity on one process.
    fn broadcast_buffers<M: Module>(&self, model: M) -> M {
        model
    }

    /// Combines `values` over ranks with `op`, in place: the losses and counts of a split, and the
    /// flags every rank must agree on (skip a non-finite update, stop on a signal).
    fn all_reduce(&self, _values: &mut [f64], _op: ReduceOp) {}

    /// Every rank's `bytes`, in rank order, on every rank: the states of the streaming metrics.
    fn all_gather(&self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        vec![bytes]
    }

    /// Replaces `bytes` with rank 0's on every rank: the identity, a checkpoint.
    fn broadcast(&self, _bytes: &mut Vec<u8>) {}

    /// Returns once every rank has called it.
    fn barrier(&self) {}

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
    fn prepare<M: Module>(&self, model: M) -> M {
        (**self).prepare(model)
    }
    fn shard<'a>(&self, rows: &'a [usize]) -> &'a [usize] {
        (**self).shard(rows)
    }
    fn step_seed(&self, seed: u64, iter: u64) -> u64 {
        (**self).step_seed(seed, iter)
    }
    fn all_reduce_gradients<M: Module>(&self, model: &M, gradients: GradientsParams) -> GradientsParams {
        (**self).all_reduce_gradients(model, gradients)
    }
    fn broadcast_buffers<M: Module>(&self, model: M) -> M {
        (**self).broadcast_buffers(model)
    }
    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) {
        (**self).all_reduce(values, op);
    }
    fn all_gather(&self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        (**self).all_gather(bytes)
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) {
        (**self).broadcast(bytes);
    }
    fn barrier(&self) {
        (**self).barrier();
    }
    fn gradient_reduce_time(&self) -> std::time::Duration {
        (**self).gradient_reduce_time()
    }
}

/// Stream tag of the per-step device reseeding (dropout and the like).
pub(crate) const STEP_STREAM: u64 = 0x57E9;
