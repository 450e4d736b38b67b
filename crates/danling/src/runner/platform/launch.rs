//! The platform a process was started on: one rank of an MPI world when a launcher started it, one
//! process otherwise.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;

#[cfg(feature = "mpi")]
use super::Mpi;
use super::{CollectiveError, Local, Platform, PlatformError, ReduceOp};
use crate::config::{self, Precision};

/// [`Local`], or [`Mpi`](super::Mpi) when a launcher (`mpiexec`, `srun`) started this process.
#[derive(Debug)]
pub enum Launched {
    /// One process.
    Local(Local),
    /// One rank of an MPI world.
    #[cfg(feature = "mpi")]
    Mpi(Mpi),
}

impl Launched {
    /// The platform of this process: MPI when one of the launcher's variables
    /// ([`crate::env::LAUNCHER_VARIABLES`]) is set, else one process. A launched process in a build
    /// without the `mpi` feature is an error: N copies of one run would race for its files.
    pub fn new(kind: config::Device, precision: Precision) -> Result<Self, PlatformError> {
        match crate::env::launcher() {
            None => Local::new(kind, precision).map(Self::Local),
            #[cfg(feature = "mpi")]
            Some(_) => Mpi::new(kind, precision).map(Self::Mpi),
            #[cfg(not(feature = "mpi"))]
            Some(variable) => Err(PlatformError::MpiNotBuilt { variable }),
        }
    }
}

/// Calls `$call` on the platform inside.
macro_rules! inside {
    ($self:ident, $p:ident => $call:expr) => {
        match $self {
            Launched::Local($p) => $call,
            #[cfg(feature = "mpi")]
            Launched::Mpi($p) => $call,
        }
    };
}

impl Platform for Launched {
    fn rank(&self) -> usize {
        inside!(self, p => p.rank())
    }

    fn world_size(&self) -> usize {
        inside!(self, p => p.world_size())
    }

    fn device(&self) -> &Device {
        inside!(self, p => p.device())
    }

    fn kind(&self) -> config::Device {
        inside!(self, p => p.kind())
    }

    fn description(&self) -> String {
        inside!(self, p => p.description())
    }

    fn precision(&self) -> Precision {
        inside!(self, p => p.precision())
    }

    fn prepare<M: Module>(&self, model: M) -> Result<M, CollectiveError> {
        inside!(self, p => p.prepare(model))
    }

    fn all_reduce_gradients<M: Module>(
        &self,
        model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError> {
        inside!(self, p => p.all_reduce_gradients(model, gradients))
    }

    fn broadcast_buffers<M: Module>(&self, model: &mut M) -> Result<(), CollectiveError> {
        inside!(self, p => p.broadcast_buffers(model))
    }

    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), CollectiveError> {
        inside!(self, p => p.all_reduce(values, op))
    }

    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
        inside!(self, p => p.all_gather(bytes))
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CollectiveError> {
        inside!(self, p => p.broadcast(bytes))
    }

    fn barrier(&self) -> Result<(), CollectiveError> {
        inside!(self, p => p.barrier())
    }

    fn gradient_reduce_time(&self) -> std::time::Duration {
        inside!(self, p => p.gradient_reduce_time())
    }
}
