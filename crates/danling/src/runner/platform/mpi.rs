//! Data-parallel training across processes over MPI (cargo feature `mpi`): every collective of
//! [`Platform`] is one MPI collective on `MPI_COMM_WORLD`.
//!
//! MPI is initialised once, when the first [`Mpi`] is made, and finalised by [`end`], which the
//! program calls as it exits: a run that fails on one rank must not wait in `MPI_Finalize` for ranks
//! that are blocked in a collective, so a failure ends the whole job with `MPI_Abort` instead.
//!
//! A collective completes or returns a [`CollectiveError`] (rank 0's model has another length than
//! this rank's, say), which ends the job that way. An error inside MPI itself ends the job through
//! MPI's default error handler (`MPI_ERRORS_ARE_FATAL`). MPI counts in `int`s, so everything larger
//! than 2^31 elements moves in pieces.

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
use super::{
    Collective, CollectiveError, CollectiveProblem, GatherPlan, Platform, ReduceOp, gather_in_pieces,
};
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

/// Elements per piece of a collective: MPI counts in `int`s (2^31 - 1 at most).
const PIECE: usize = 1 << 28;
/// Bytes per round of the all-gather, over all ranks (its displacements are `int`s too).
const GATHER_ROUND: usize = 1 << 30;

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

    fn prepare<M: Module>(&self, model: M) -> Result<M, CollectiveError> {
        let model = model.to_device(&self.train_device()).train();
        if self.size <= 1 {
            return Ok(model);
        }
        let mut values = parameters_to_vec(&model);
        let what = "the model's parameters";
        self.broadcast_values(Collective::Prepare, what, &mut values)?;
        let len = values.len();
        parameters_from_slice(model, &values).ok_or_else(|| self.misfit(Collective::Prepare, what, len))
    }

    fn all_reduce_gradients<M: Module>(
        &self,
        model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError> {
        if self.size <= 1 {
            return Ok(gradients);
        }
        let start = Instant::now();
        let mine = gradients_to_vec(model, &gradients);
        let mut received = self.received.borrow_mut();
        received.resize(mine.len(), 0.0);
        for (piece, into) in mine.chunks(PIECE).zip(received.chunks_mut(PIECE)) {
            self.world.all_reduce_into(piece, into, SystemOperation::sum());
        }
        let reduced = gradients_from_slice(model, &received, &self.found.device).ok_or_else(|| {
            self.misfit(
                Collective::AllReduceGradients,
                "the model's gradients",
                received.len(),
            )
        });
        self.reducing.set(self.reducing.get() + start.elapsed());
        reduced
    }

    fn broadcast_buffers<M: Module>(&self, model: &mut M) -> Result<(), CollectiveError> {
        if self.size <= 1 {
            return Ok(());
        }
        let mut values = buffers_to_vec(&*model);
        let what = "the model's buffers";
        // The length goes first even when it is 0: a rank whose model has other buffers than rank
        // 0's fails here, rather than skipping a broadcast that rank 0 makes.
        self.broadcast_values(Collective::BroadcastBuffers, what, &mut values)?;
        if values.is_empty() {
            return Ok(());
        }
        let len = values.len();
        *model = buffers_from_slice(model.clone(), &values)
            .ok_or_else(|| self.misfit(Collective::BroadcastBuffers, what, len))?;
        Ok(())
    }

    fn gradient_reduce_time(&self) -> Duration {
        self.reducing.get()
    }

    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), CollectiveError> {
        if self.size <= 1 || values.is_empty() {
            return Ok(());
        }
        let mine = values.to_vec();
        for (piece, into) in mine.chunks(PIECE).zip(values.chunks_mut(PIECE)) {
            self.world.all_reduce_into(piece, into, system(op));
        }
        Ok(())
    }

    /// The lengths go as `u64`s, then the bytes in rounds of at most `GATHER_ROUND` bytes in all,
    /// so that every count and displacement fits MPI's `int`.
    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
        if self.size <= 1 {
            return Ok(vec![bytes]);
        }
        let failed = |problem| CollectiveError::new(Collective::AllGather, self.rank, problem);
        let mut lengths = vec![0u64; self.size];
        self.world
            .all_gather_into(&(bytes.len() as u64), &mut lengths[..]);
        let plan = GatherPlan::new(&lengths, GATHER_ROUND).map_err(|len| {
            failed(CollectiveProblem::Failed(format!(
                "a rank sends {len} bytes, more than this process can address"
            )))
        })?;
        let int = |n: usize| {
            i32::try_from(n).map_err(|_| {
                failed(CollectiveProblem::Failed(format!(
                    "a piece of {n} bytes is over MPI's count limit"
                )))
            })
        };
        gather_in_pieces(&plan, self.rank, &bytes, |round, mine, received| {
            let counts = round
                .counts
                .iter()
                .map(|&n| int(n))
                .collect::<Result<Vec<_>, _>>()?;
            let displs = round
                .displs
                .iter()
                .map(|&n| int(n))
                .collect::<Result<Vec<_>, _>>()?;
            let mut partition = PartitionMut::new(received, &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(mine, &mut partition);
            Ok(())
        })
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CollectiveError> {
        if self.size <= 1 {
            return Ok(());
        }
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        let len = usize::try_from(len).map_err(|_| {
            CollectiveError::new(
                Collective::Broadcast,
                self.rank,
                CollectiveProblem::Failed(format!(
                    "rank 0 sends {len} bytes, more than this process can address"
                )),
            )
        })?;
        bytes.resize(len, 0);
        // MPI counts in `int`s: a checkpoint over 2 GiB goes in pieces.
        for piece in bytes.chunks_mut(1 << 30) {
            root.broadcast_into(piece);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<(), CollectiveError> {
        if self.size > 1 {
            self.world.barrier();
        }
        Ok(())
    }
}

impl Mpi {
    /// Rank 0's `values` on every rank: the length first, as a `u64`, then the values in pieces.
    /// A rank whose `values` have another length than rank 0's fails, naming `what` they are,
    /// before the values move.
    fn broadcast_values(
        &self,
        collective: Collective,
        what: &'static str,
        values: &mut [f32],
    ) -> Result<(), CollectiveError> {
        let root = self.world.process_at_rank(0);
        let mut len = values.len() as u64;
        root.broadcast_into(&mut len);
        if len != values.len() as u64 {
            return Err(self.length(collective, what, len, values.len()));
        }
        for piece in values.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
        Ok(())
    }

    /// `received` values of `what` arrived where this rank has `expected`.
    fn length(
        &self,
        collective: Collective,
        what: &'static str,
        received: u64,
        expected: usize,
    ) -> CollectiveError {
        let problem = CollectiveProblem::Length {
            what,
            received,
            expected: expected as u64,
        };
        CollectiveError::new(collective, self.rank, problem)
    }

    /// The `len` values of `what`, of this rank's own length, do not fit its model.
    fn misfit(&self, collective: Collective, what: &'static str, len: usize) -> CollectiveError {
        let problem =
            CollectiveProblem::Failed(format!("{len} values of {what} do not fit this rank's model"));
        CollectiveError::new(collective, self.rank, problem)
    }
}
