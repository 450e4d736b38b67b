//! The one-process platform, and the devices a build can run on.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, DeviceError, FloatDType};

use super::device::{Found, find};
use super::{CollectiveError, Platform, ReduceOp};
use crate::config::{self, Precision};

/// Why the platform could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The device needs a cargo feature this build does not have.
    #[error(
        "device `{device}` needs danling built with the cargo feature `{feature}` (this build has: {built})"
    )]
    BackendNotBuilt {
        /// The requested device.
        device: String,
        /// The feature that would enable it.
        feature: &'static str,
        /// The backends this build has.
        built: String,
    },
    /// A launcher started this process, and this build cannot join its other processes.
    #[error(
        "this process was started by an MPI launcher (`{variable}` is set), but danling was built \
         without the cargo feature `mpi`: build with `--features mpi`, or run it without mpiexec/srun"
    )]
    MpiNotBuilt {
        /// The launcher's variable that was found.
        variable: &'static str,
    },
    /// A wgpu-based device was asked for, and the machine has no graphics adapter for it.
    #[error("device `{device}`: no graphics adapter found: {hint}; or train on the CPU with `device: flex`")]
    NoAdapter {
        /// The requested device.
        device: String,
        /// What to install.
        hint: &'static str,
    },
    /// A device whose kernels burn compiles to SPIR-V, on a software Vulkan driver that crashes on
    /// them.
    #[error(
        "device `{device}`: the only Vulkan adapter is the software driver {adapter}, which crashes \
         compiling burn's SPIR-V kernels (docs/vulkan-on-lavapipe.md); {instead}"
    )]
    SoftwareVulkan {
        /// The requested device.
        device: &'static str,
        /// The adapter's name.
        adapter: String,
        /// What to use instead.
        instead: &'static str,
    },
    /// MPI was initialised in this process before.
    #[error("MPI is already initialised in this process: make one MPI platform per process")]
    MpiInitialized,
    /// Mixed precision on a CPU device.
    #[error(
        "precision `{precision}` is not supported on device `{device}`: burn's CPU backends compute \
         half-precision matmuls in f32, measured slower than f32 training; use `precision: f32`, or \
         mixed precision on a GPU device"
    )]
    Precision {
        /// The requested precision.
        precision: &'static str,
        /// The device.
        device: String,
    },
    /// The device cannot compute in the requested precision.
    #[error("precision `{precision}` is not supported on device `{device}`: {reason}; use `precision: f32`")]
    PrecisionUnsupported {
        /// The requested precision.
        precision: &'static str,
        /// The device, with its adapter.
        device: String,
        /// What the backend said.
        reason: String,
    },
}

/// One process: the device named by the config, rank 0 of a world of one. Every collective is the
/// identity.
#[derive(Debug, Clone)]
pub struct Local {
    found: Found,
    precision: Precision,
}

impl Local {
    /// Sets up the device named by the config.
    pub fn new(kind: config::Device, precision_: Precision) -> Result<Self, PlatformError> {
        let mut found = find(kind)?;
        precision(precision_, &mut found)?;
        Ok(Self {
            found,
            precision: precision_,
        })
    }
}

impl Platform for Local {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
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
        Ok(model.to_device(&self.train_device()).train())
    }

    /// This process's gradients are the global batch's.
    fn all_reduce_gradients<M: Module>(
        &self,
        _model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError> {
        Ok(gradients)
    }

    /// This process is rank 0: its buffers are rank 0's.
    fn broadcast_buffers<M: Module>(&self, _model: &mut M) -> Result<(), CollectiveError> {
        Ok(())
    }

    /// One value each: the sum and the largest are the value.
    fn all_reduce(&self, _values: &mut [f64], _op: ReduceOp) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
        Ok(vec![bytes])
    }

    /// This process is rank 0: `bytes` are rank 0's.
    fn broadcast(&self, _bytes: &mut Vec<u8>) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn barrier(&self) -> Result<(), CollectiveError> {
        Ok(())
    }
}

/// Sets the device up for `precision`: f32 as it is; a half precision as the device's default float
/// type, so that batches and new tensors are built in it (the runner keeps the master weights f32).
/// Refused on the CPU devices, and where the backend cannot compute in it.
pub(super) fn precision(precision: Precision, found: &mut Found) -> Result<(), PlatformError> {
    let (name, dtype) = match precision {
        Precision::F32 => return Ok(()),
        Precision::Bf16 => ("bf16", FloatDType::BF16),
        Precision::F16 => ("f16", FloatDType::F16),
    };
    if matches!(found.kind, config::Device::Flex | config::Device::Cpu) {
        return Err(PlatformError::Precision {
            precision: name,
            device: found.to_string(),
        });
    }
    found.apart_from_default();
    found
        .device
        .configure(dtype)
        .map_err(|error| PlatformError::PrecisionUnsupported {
            precision: name,
            device: found.to_string(),
            reason: match error {
                DeviceError::UnsupportedDType { .. } => {
                    format!("the backend has no {name} kernels for this adapter")
                }
                other => other.to_string(),
            },
        })
}
