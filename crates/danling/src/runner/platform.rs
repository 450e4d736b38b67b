//! The platform: where a run executes (the burn device and precision) and the runtime facts that are
//! never checkpointed (world size, rank). Today it is one process; a multi-process platform will slot in
//! behind the same methods.

use burn::module::Module;
use burn::tensor::Device;

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

/// Where and how a run executes.
#[derive(Debug, Clone)]
pub struct Platform {
    device: Device,
    kind: config::Device,
}

impl Platform {
    /// Sets up the device named by the config.
    pub fn new(kind: config::Device, precision: Precision) -> Result<Self, PlatformError> {
        match precision {
            Precision::F32 => {}
            Precision::Bf16 => return Err(PlatformError::Precision { precision: "bf16" }),
            Precision::F16 => return Err(PlatformError::Precision { precision: "f16" }),
        }
        Ok(Self {
            device: device(kind)?,
            kind,
        })
    }

    /// The plain (non-autodiff) device, for evaluation and inference.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The device with autodiff, for training.
    pub fn train_device(&self) -> Device {
        self.device.clone().autodiff()
    }

    /// The configured device kind.
    pub fn kind(&self) -> config::Device {
        self.kind
    }

    /// Moves a model onto the training device.
    pub fn prepare<M: Module>(&self, model: M) -> M {
        model.to_device(&self.train_device()).train()
    }

    /// Seeds the device's RNG (dropout and random initialisation).
    pub fn seed(&self, seed: u64) {
        self.device.seed(seed);
        self.train_device().seed(seed);
    }

    /// Number of processes in the run.
    pub fn world_size(&self) -> usize {
        1
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        0
    }

    /// Whether this process writes files and logs.
    pub fn is_main_process(&self) -> bool {
        self.rank() == 0
    }

    /// Sums a value over processes (the identity on one process).
    pub fn reduce(&self, value: f64) -> f64 {
        value
    }

    /// Sends a value from the main process to all (the identity on one process).
    pub fn broadcast<T>(&self, value: T) -> T {
        value
    }

    /// Waits for all processes (returns at once on one process).
    pub fn barrier(&self) {}
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

fn device(kind: config::Device) -> Result<Device, PlatformError> {
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
