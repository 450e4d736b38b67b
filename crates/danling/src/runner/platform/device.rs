//! The devices a build can run on: the `device` key, `auto` included, resolved into a burn device
//! once the hardware behind it is known to be there.
//!
//! burn opens a GPU lazily, on the first tensor, and panics when there is none. The adapters of the
//! wgpu-based devices are therefore probed here first, through wgpu itself, so that a machine
//! without a Vulkan driver gets an error naming what is missing, and so that `auto` can tell a GPU
//! from a software rasteriser.

use std::fmt;

use burn::tensor::Device;

use super::PlatformError;
use crate::config::{self, AUTO_ORDER};

/// The device a run executes on, as found on this machine.
#[derive(Debug, Clone)]
pub struct Found {
    /// The burn device.
    pub device: Device,
    /// Which device it is (never `auto`).
    pub kind: config::Device,
    /// The graphics adapter behind a wgpu-based device.
    pub adapter: Option<Adapter>,
    /// Why `auto` chose it (`None` for a device named in the config).
    pub chosen: Option<String>,
}

impl Found {
    /// The same device under an id of its own, apart from burn's default device: a device set up for
    /// half precision must not be `Device::default()`, on which burn materialises a loaded optimizer
    /// state (it would come back in half precision, and the resume would not be exact). burn
    /// addresses the adapter by its kind instead (`DiscreteGpu(0)`, `Cpu`, …): one adapter, another
    /// device id, with its own default float type.
    pub(super) fn apart_from_default(&mut self) {
        let Some(adapter) = &self.adapter else { return };
        let kind = adapter.selector.clone();
        match self.kind {
            #[cfg(feature = "wgpu")]
            config::Device::Wgpu => self.device = Device::wgpu(kind),
            #[cfg(feature = "vulkan")]
            config::Device::Vulkan => self.device = Device::vulkan(kind),
            #[cfg(feature = "metal")]
            config::Device::Metal => self.device = Device::metal(kind),
            _ => {
                let _ = kind;
            }
        }
    }
}

impl fmt::Display for Found {
    /// `wgpu (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, software)`, `flex (auto: no GPU …)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        let mut details = Vec::new();
        if let Some(adapter) = &self.adapter {
            details.push(adapter.to_string());
        }
        if let Some(chosen) = &self.chosen {
            details.push(format!("auto: {chosen}"));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join("; "))?;
        }
        Ok(())
    }
}

/// A graphics adapter, as wgpu describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// The adapter's name (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The graphics API it was found on (`Vulkan`, `Metal`, `Gl`, `Dx12`).
    pub api: String,
    /// A CPU rasteriser (lavapipe, llvmpipe, WARP) rather than a GPU.
    pub software: bool,
    /// How burn addresses this adapter by its kind: the nth discrete GPU, the CPU adapter, ….
    pub selector: burn::tensor::DeviceKind,
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.name, self.api)?;
        if self.software {
            f.write_str(", software")?;
        }
        Ok(())
    }
}

/// The device `kind` names, after checking that it is compiled in and present; `auto` takes the
/// first of [`AUTO_ORDER`] that is.
pub fn find(kind: config::Device) -> Result<Found, PlatformError> {
    if kind != config::Device::Auto {
        return named(kind);
    }
    let mut passed = Vec::new();
    for candidate in AUTO_ORDER {
        if candidate == config::Device::Flex {
            let chosen = match passed.is_empty() {
                true => "the CPU (this build has no GPU backend)".to_owned(),
                false => format!("the CPU ({})", passed.join("; ")),
            };
            let mut found = named(config::Device::Flex)?;
            found.chosen = Some(chosen);
            return Ok(found);
        }
        if !compiled(candidate) {
            continue;
        }
        match present(candidate) {
            Presence::Gpu(adapter) => {
                let mut found = named(candidate)?;
                found.adapter = adapter.or(found.adapter);
                found.chosen = Some("the first GPU found".to_owned());
                return Ok(found);
            }
            Presence::Absent(why) => passed.push(format!("{candidate}: {why}")),
        }
    }
    named(config::Device::Flex)
}

/// Whether this build has the backend of `kind`.
fn compiled(kind: config::Device) -> bool {
    use config::Device as D;
    match kind {
        D::Auto | D::Flex => true,
        D::Cpu => cfg!(feature = "cpu"),
        D::Cuda(_) => cfg!(feature = "cuda"),
        D::Rocm(_) => cfg!(feature = "rocm"),
        D::Vulkan => cfg!(feature = "vulkan"),
        D::Metal => cfg!(feature = "metal"),
        D::Wgpu => cfg!(feature = "wgpu"),
    }
}

/// What `auto` found of a compiled-in device.
#[cfg_attr(
    not(any(
        feature = "wgpu",
        feature = "vulkan",
        feature = "metal",
        feature = "cuda",
        feature = "rocm"
    )),
    allow(dead_code)
)]
enum Presence {
    Gpu(Option<Adapter>),
    Absent(String),
}

/// Whether a GPU stands behind `kind` on this machine.
fn present(kind: config::Device) -> Presence {
    use config::Device as D;
    match kind {
        D::Vulkan | D::Wgpu | D::Metal => {
            #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
            {
                let adapters = probe::adapters(probe::apis(kind));
                match adapters.iter().find(|a| !a.software) {
                    Some(gpu) => Presence::Gpu(Some(gpu.clone())),
                    None if adapters.is_empty() => Presence::Absent("no adapter".to_owned()),
                    None => Presence::Absent(format!("only the software adapter {}", adapters[0].name)),
                }
            }
            #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "metal")))]
            Presence::Absent("not built".to_owned())
        }
        D::Cuda(_) | D::Rocm(_) => {
            #[cfg(any(feature = "cuda", feature = "rocm"))]
            {
                let devices = quietly(move || match kind {
                    #[cfg(feature = "cuda")]
                    D::Cuda(_) => Device::enumerate(burn::tensor::DeviceType::Cuda),
                    #[cfg(feature = "rocm")]
                    D::Rocm(_) => Device::enumerate(burn::tensor::DeviceType::Rocm),
                    _ => Vec::new(),
                });
                match devices {
                    Some(devices) if !devices.is_empty() => Presence::Gpu(None),
                    Some(_) => Presence::Absent("no device".to_owned()),
                    None => Presence::Absent("no driver".to_owned()),
                }
            }
            #[cfg(not(any(feature = "cuda", feature = "rocm")))]
            Presence::Absent("not built".to_owned())
        }
        D::Auto | D::Flex | D::Cpu => Presence::Absent("not a GPU".to_owned()),
    }
}

/// `f()`, or `None` where it panics, without the panic's message: a driver library that is not
/// installed makes the CUDA and ROCm runtimes panic when asked for their devices, and to `auto`
/// that only means "no such GPU". Called while the process sets up, before its threads start.
#[cfg(any(feature = "cuda", feature = "rocm"))]
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(f).ok();
    std::panic::set_hook(hook);
    out
}

/// The device the config names, when this build has its backend and, for the wgpu-based ones, the
/// machine has an adapter.
fn named(kind: config::Device) -> Result<Found, PlatformError> {
    use config::Device as D;
    let found = |device: Device| Found {
        device,
        kind,
        adapter: None,
        chosen: None,
    };
    match kind {
        D::Flex => Ok(found(Device::flex())),
        #[cfg(feature = "cpu")]
        D::Cpu => Ok(found(Device::cpu())),
        #[cfg(feature = "cuda")]
        D::Cuda(i) => Ok(found(Device::cuda(i))),
        #[cfg(feature = "rocm")]
        D::Rocm(i) => Ok(found(Device::rocm(i))),
        #[cfg(feature = "wgpu")]
        D::Wgpu => {
            let adapter = probe::adapter_for(kind)?;
            // With the `vulkan` feature, burn compiles the kernels of every device on Vulkan to
            // SPIR-V, `wgpu`'s included.
            if cfg!(feature = "vulkan") && adapter.software && adapter.api == "Vulkan" {
                return Err(PlatformError::SoftwareVulkan {
                    device: "wgpu",
                    adapter: adapter.name,
                    instead: "this build has the cargo feature `vulkan`, with which burn compiles \
                              `wgpu`'s kernels to SPIR-V too: build without it to train on this \
                              driver through WGSL, or use `device: flex`",
                });
            }
            Ok(Found {
                adapter: Some(adapter),
                ..found(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
            })
        }
        #[cfg(feature = "vulkan")]
        D::Vulkan => {
            let adapter = probe::adapter_for(kind)?;
            if adapter.software {
                return Err(PlatformError::SoftwareVulkan {
                    device: "vulkan",
                    adapter: adapter.name,
                    instead: "use `device: wgpu` (the same driver through WGSL, in a build without \
                              the `vulkan` feature) or `device: flex`",
                });
            }
            Ok(Found {
                adapter: Some(adapter),
                ..found(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice))
            })
        }
        #[cfg(feature = "metal")]
        D::Metal => probe::adapter_for(kind).map(|adapter| Found {
            adapter: Some(adapter),
            ..found(Device::metal(burn::tensor::DeviceKind::DefaultDevice))
        }),
        #[allow(unreachable_patterns)]
        other => Err(PlatformError::BackendNotBuilt {
            device: other.to_string(),
            feature: feature_of(other),
            built: built(),
        }),
    }
}

/// The backends compiled into this build, for error messages.
pub(super) fn built() -> String {
    [
        config::Device::Flex,
        config::Device::Cpu,
        config::Device::Cuda(0),
        config::Device::Rocm(0),
        config::Device::Wgpu,
        config::Device::Vulkan,
        config::Device::Metal,
    ]
    .into_iter()
    .filter(|kind| compiled(*kind))
    .map(feature_of)
    .collect::<Vec<_>>()
    .join(", ")
}

fn feature_of(kind: config::Device) -> &'static str {
    use config::Device as D;
    match kind {
        D::Auto | D::Flex => "flex",
        D::Cpu => "cpu",
        D::Cuda(_) => "cuda",
        D::Rocm(_) => "rocm",
        D::Vulkan => "vulkan",
        D::Metal => "metal",
        D::Wgpu => "wgpu",
    }
}

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "metal"))]
mod probe {
    //! The adapters wgpu finds, asked once per process and kept: an instance is never dropped, as
    //! the Vulkan loader is not safe against instances created and destroyed on several threads.

    use std::future::Future;
    use std::sync::{Mutex, OnceLock};
    use std::task::{Context, Poll, Waker};

    use burn::tensor::DeviceKind;

    use super::Adapter;
    use crate::config;
    use crate::runner::PlatformError;

    /// The graphics APIs `kind` runs on, best first, as burn's wgpu runtime tries them (OpenGL,
    /// its last resort, is left out: its compute shaders are not what danling is tested on).
    pub(super) fn apis(kind: config::Device) -> &'static [wgpu::Backend] {
        match kind {
            config::Device::Vulkan => &[wgpu::Backend::Vulkan],
            config::Device::Metal => &[wgpu::Backend::Metal],
            _ if cfg!(target_os = "macos") => &[wgpu::Backend::Metal],
            _ => &[wgpu::Backend::Vulkan, wgpu::Backend::Dx12],
        }
    }

    /// Every adapter on `apis`, in that order.
    pub(super) fn adapters(apis: &[wgpu::Backend]) -> Vec<Adapter> {
        apis.iter().flat_map(|api| of_api(*api)).collect()
    }

    /// The adapter burn will open for `kind`: the first GPU on the first API that has one, else the
    /// first software adapter; an error naming what to install when there is none.
    pub(super) fn adapter_for(kind: config::Device) -> Result<Adapter, PlatformError> {
        let adapters = adapters(apis(kind));
        adapters
            .iter()
            .find(|a| !a.software)
            .or(adapters.first())
            .cloned()
            .ok_or_else(|| PlatformError::NoAdapter {
                device: kind.to_string(),
                hint: hint(kind),
            })
    }

    fn hint(kind: config::Device) -> &'static str {
        match kind {
            config::Device::Metal => "Metal needs macOS on Apple or AMD graphics",
            _ if cfg!(target_os = "linux") => {
                "no Vulkan driver is installed: install the Vulkan loader and a driver (Debian/Ubuntu: \
                 `apt install libvulkan1 mesa-vulkan-drivers` for the software driver lavapipe, or \
                 your GPU's driver)"
            }
            _ => "no Vulkan, Metal or DirectX 12 driver answered: install your GPU's driver",
        }
    }

    fn of_api(api: wgpu::Backend) -> Vec<Adapter> {
        static FOUND: Mutex<Vec<(wgpu::Backend, Vec<Adapter>)>> = Mutex::new(Vec::new());
        static INSTANCES: OnceLock<Mutex<Vec<wgpu::Instance>>> = OnceLock::new();
        let mut found = FOUND.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, adapters)) = found.iter().find(|(a, _)| *a == api) {
            return adapters.clone();
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: api.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        // burn counts the adapters of each kind apart (`DiscreteGpu(1)` is the second discrete one).
        let mut seen: Vec<wgpu::DeviceType> = Vec::new();
        let adapters: Vec<Adapter> = block_on(instance.enumerate_adapters(api.into()))
            .iter()
            .map(|adapter| {
                let info = adapter.get_info();
                let nth = seen.iter().filter(|t| **t == info.device_type).count();
                seen.push(info.device_type);
                let selector = match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(nth),
                    wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(nth),
                    wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(nth),
                    wgpu::DeviceType::Cpu => DeviceKind::Cpu,
                    wgpu::DeviceType::Other => DeviceKind::DefaultDevice,
                };
                Adapter {
                    name: info.name,
                    api: format!("{:?}", info.backend),
                    software: info.device_type == wgpu::DeviceType::Cpu,
                    selector,
                }
            })
            .collect();
        INSTANCES
            .get_or_init(|| Mutex::new(Vec::new()))
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(instance);
        found.push((api, adapters.clone()));
        adapters
    }

    /// Waits for a future that native wgpu completes at once.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::yield_now();
        }
    }
}
