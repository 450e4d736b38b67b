//! The one-process platform, and the devices a build can run on.

use burn::tensor::Device;

use super::Platform;
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
    /// MPI was initialised in this process before.
    #[error("MPI is already initialised in this process: make one MPI platform per process")]
    MpiInitialized,
    /// The precision is not supported on this backend.
    #[error(
        "precision `{precision}` is not supported: burn has no mixed precision, and flex computes half \
         precision matmuls in f32 (slower than f32); use `precision: f32`"
    )]
    Precision {
        /// The requested precision.
        precision: &'static str,
    },
}

/// One process: the device named by the config, rank 0 of a world of one. Every collective is the
/// identity.
#[derive(Debug, Clone)]
pub struct Local {
    device: Device,
    kind: config::Device,
}

impl Local {
    /// Sets up the device named by the config.
    pub fn new(kind: config::Device, precision_: Precision) -> Result<Self, PlatformError> {
        precision(precision_)?;
        Ok(Self {
            device: device(kind)?,
            kind,
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
        &self.device
    }

    fn kind(&self) -> config::Device {
        self.kind
    }
}

/// The backends compiled into this build, for error messages.
fn built() -> String {
    let backends = [
        ("flex", true),
        ("cpu", cfg!(feature = "cpu")),
        ("cuda", cfg!(feature = "cuda")),
        ("rocm", cfg!(feature = "rocm")),
        ("wgpu", cfg!(feature = "wgpu")),
        ("vulkan", cfg!(feature = "vulkan")),
        ("metal", cfg!(feature = "metal")),
    ];
    backends
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_built(kind: config::Device, feature: &'static str) -> PlatformError {
    PlatformError::BackendNotBuilt {
        device: kind.to_string(),
        feature,
        built: built(),
    }
}

/// Refuses the precisions no backend computes.
pub(super) fn precision(precision: Precision) -> Result<(), PlatformError> {
    match precision {
        Precision::F32 => Ok(()),
        Precision::Bf16 => Err(PlatformError::Precision { precision: "bf16" }),
        Precision::F16 => Err(PlatformError::Precision { precision: "f16" }),
    }
}

/// The burn device the config names, when this build has its backend.
pub(super) fn device(kind: config::Device) -> Result<Device, PlatformError> {
    use config::Device as D;
    match kind {
        D::Flex => Ok(Device::flex()),
        #[cfg(feature = "cpu")]
        D::Cpu => Ok(Device::cpu()),
        #[cfg(feature = "cuda")]
        D::Cuda(i) => Ok(Device::cuda(i)),
        #[cfg(feature = "rocm")]
        D::Rocm(i) => Ok(Device::rocm(i)),
        #[cfg(feature = "wgpu")]
        D::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "vulkan")]
        D::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "metal")]
        D::Metal => Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice)),
        #[allow(unreachable_patterns)]
        other => Err(not_built(other, feature_of(other))),
    }
}

fn feature_of(kind: config::Device) -> &'static str {
    use config::Device as D;
    match kind {
        D::Flex => "flex",
        D::Cpu => "cpu",
        D::Cuda(_) => "cuda",
        D::Rocm(_) => "rocm",
        D::Vulkan => "vulkan",
        D::Metal => "metal",
        D::Wgpu => "wgpu",
    }
}
