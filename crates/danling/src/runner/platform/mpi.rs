//! Data-parallel training across processes over MPI (cargo feature `mpi`): every collective of
//! [`Platform`] is one MPI collective on `MPI_COMM_WORLD`.
//!
//! MPI is initialised once, when the first [`Mpi`] is made, and finalised by [`end`], which the
//! program calls as it exits: a run that fails on one rank must not wait in `MPI_Finalize` for ranks
//! that are blocked in a collective, so a failure ends the whole job with `MPI_Abort` instead.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use super::device::{Found, find};
use super::local::{PlatformError, precision};
use super::{Platform, ReduceOp};
use crate::config::{self, Precision};
use crate::runner::buffers::{buffers_from_slice, buffers_to_vec};
use crate::runner::grads::{
    gradients_from_slice, gradients_to_vec, parameters_from_slice, parameters_to_vec,
};

/// Whether this process initialised MPI and has not finalised it.
static ACTIVE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The MPI environment, on the thread that initialised it: dropping it finalises MPI.
    static UNIVERSE: RefCell<Option<mpi::environment::Universe>> = const { RefCell::new(None) };
}

/// One rank of an MPI world: the processes `mpiexec` (or `srun`) started.
pub struct Mpi {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    found: Found,
    precision: Precision,
    /// The one receive buffer of the gradients' all-reduce (rsmpi has no `MPI_IN_PLACE`).
    received: RefCell<Vec<f32>>,
    /// The time spent reducing gradients, from the host copy out to the copy back.
    reducing: Cell<Duration>,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("device", &self.found.kind)
            .finish()
    }
}

impl Mpi {
    /// Joins the MPI world this process was started in (a world of one without a launcher) on the
    /// device the config names.
    pub fn new(kind: config::Device, precision_: Precision) -> Result<Self, PlatformError> {
        let mut found = find(kind)?;
        precision(precision_, &mut found)?;
        let (universe, _threading) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or(PlatformError::MpiInitialized)?;
        let world = universe.world();
        // Finalised by `end`, not when this platform is dropped: see the module's documentation.
        UNIVERSE.with(|slot| *slot.borrow_mut() = Some(universe));
        ACTIVE.store(true, Ordering::SeqCst);
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        super::set_process_rank(rank, size);
        Ok(Self {
            world,
            rank,
            size,
            found,
            precision: precision_,
            received: RefCell::new(Vec::new()),
            reducing: Cell::new(Duration::ZERO),
        })
    }
}

/// Ends this process's part of the MPI world, if it joined one: after a success (`code` 0) or a
/// failure every rank met alike, it waits for every rank and finalises MPI; after any other failure it
/// aborts the whole job with `code`, so that no rank is left waiting in a collective. Returns at
/// once when MPI was not initialised.
pub fn end(code: i32, collective: bool) {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let world = SimpleCommunicator::world();
    if code != 0 && !collective {
        world.abort(code);
    }
    world.barrier();
    UNIVERSE.with(|slot| drop(slot.borrow_mut().take()));
}

fn system(op: ReduceOp) -> SystemOperation {
    match op {
        ReduceOp::Sum => SystemOperation::sum(),
        ReduceOp::Max => SystemOperation::max(),
    }
}

impl Platform for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn device(&self) -> &Device {
        &self.found.device
    }

    fn kind(&self) -> config::Device {
        self.found.kind
    }

    fn description(&self) -> String {
        self.found.to_string()
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn prepare<M: Module>(&self, model: M) -> M {
        let model = model.to_device(&self.train_device()).train();
        if self.size <= 1 {
            return model;
        }
        let mut values = parameters_to_vec(&model);
        self.world.process_at_rank(0).broadcast_into(&mut values[..]);
        // Every rank built the same model, so the lengths agree and this cannot fail.
        parameters_from_slice(model.clone(), &values).unwrap_or(model)
    }

    fn all_reduce_gradients<M: Module>(&self, model: &M, gradients: GradientsParams) -> GradientsParams {
        if self.size <= 1 {
            return gradients;
        }
        let start = Instant::now();
        let mine = gradients_to_vec(model, &gradients);
        let mut received = self.received.borrow_mut();
        received.resize(mine.len(), 0.0);
        self.world
            .all_reduce_into(&mine[..], &mut received[..], SystemOperation::sum());
        let reduced = gradients_from_slice(model, &received, &self.found.device).unwrap_or(gradients);
        self.reducing.set(self.reducing.get() + start.elapsed());
        reduced
    }

    fn broadcast_buffers<M: Module>(&self, model: M) -> M {
        if self.size <= 1 {
            return model;
        }
        let mut values = buffers_to_vec(&model);
        // Every rank has the same model, so every rank skips, or none does.
        if values.is_empty() {
            return model;
        }
        let root = self.world.process_at_rank(0);
        // MPI counts in `int`s: more than 2^31 values go in pieces.
        for piece in values.chunks_mut(1 << 28) {
            root.broadcast_into(piece);
        }
        // The values came from this very model's layout, so the lengths agree.
        buffers_from_slice(model.clone(), &values).unwrap_or(model)
    }

    fn gradient_reduce_time(&self) -> Duration {
        self.reducing.get()
    }

    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) {
        if self.size <= 1 || values.is_empty() {
            return;
        }
        let mine = values.to_vec();
        self.world.all_reduce_into(&mine[..], values, system(op));
    }

    fn all_gather(&self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        if self.size <= 1 {
            return vec![bytes];
        }
        let count = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        let mut counts = vec![0i32; self.size];
        self.world.all_gather_into(&count, &mut counts[..]);
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |at, &n| {
                let start = *at;
                *at = at.saturating_add(n);
                Some(start)
            })
            .collect();
        let total = counts.iter().map(|&n| n as usize).sum();
        let mut all = vec![0u8; total];
        {
            let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(&bytes[..], &mut partition);
        }
        counts
            .iter()
            .zip(&displs)
            .map(|(&n, &at)| all[at as usize..(at + n) as usize].to_vec())
            .collect()
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) {
        if self.size <= 1 {
            return;
        }
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        // MPI counts in `int`s: a checkpoint over 2 GiB goes in pieces.
        for piece in bytes.chunks_mut(1 << 30) {
            root.broadcast_into(piece);
        }
    }

    fn barrier(&self) {
        if self.size > 1 {
            self.world.barrier();
        }
    }
}
