//! The `device` key: where a run executes, and its spellings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a run executes. Every backend but `flex` needs its cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// The best device this build has and this machine holds (the default): the first of
    /// [`AUTO_ORDER`] that is compiled in and present, a GPU before the CPU. A software Vulkan
    /// driver (lavapipe) counts as no GPU: on it, flex is faster.
    Auto,
    /// burn's pure-Rust CPU backend (the default).
    Flex,
    /// burn's LLVM CPU backend.
    Cpu,
    /// An NVIDIA GPU, by index.
    Cuda(usize),
    /// An AMD GPU, by index.
    Rocm(usize),
    /// The Vulkan backend.
    Vulkan,
    /// The Metal backend.
    Metal,
    /// The wgpu backend on its default adapter.
    Wgpu,
}

/// The spellings [`Device`] accepts, for error messages.
pub const DEVICE_SPELLINGS: &str = "auto, flex, cpu, cuda:N, rocm:N, vulkan, metal, wgpu";

/// The order in which `device: auto` tries the devices: the first one compiled in and present wins.
/// `cpu` (burn's LLVM backend) is never picked on its own: flex, always built, is the CPU device.
pub const AUTO_ORDER: [Device; 6] = [
    Device::Cuda(0),
    Device::Rocm(0),
    Device::Metal,
    Device::Vulkan,
    Device::Wgpu,
    Device::Flex,
];

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Flex => f.write_str("flex"),
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Rocm(i) => write!(f, "rocm:{i}"),
            Device::Vulkan => f.write_str("vulkan"),
            Device::Metal => f.write_str("metal"),
            Device::Wgpu => f.write_str("wgpu"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    /// Parses `auto`, `flex`, `cpu`, `cuda`, `cuda:N`, `rocm`, `rocm:N`, `vulkan`, `metal` or `wgpu`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, index) = match s.split_once(':') {
            Some((kind, index)) => {
                let index = index
                    .parse::<usize>()
                    .map_err(|_| format!("bad device index in {s:?}"))?;
                (kind, Some(index))
            }
            None => (s, None),
        };
        match (kind, index) {
            ("auto", None) => Ok(Device::Auto),
            ("flex", None) => Ok(Device::Flex),
            ("cpu", None) => Ok(Device::Cpu),
            ("cuda", i) => Ok(Device::Cuda(i.unwrap_or(0))),
            ("rocm", i) => Ok(Device::Rocm(i.unwrap_or(0))),
            ("vulkan", None) => Ok(Device::Vulkan),
            ("metal", None) => Ok(Device::Metal),
            ("wgpu", None) => Ok(Device::Wgpu),
            _ => Err(format!("unknown device {s:?}")),
        }
    }
}

impl Serialize for Device {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::invalid_value(serde::de::Unexpected::Str(&text), &DeviceExpected))
    }
}

struct DeviceExpected;

impl serde::de::Expected for DeviceExpected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "one of {DEVICE_SPELLINGS}")
    }
}
