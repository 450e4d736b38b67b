//! The smallest program that shows why danling refuses `device: vulkan` on a software adapter: one
//! matmul on burn's Vulkan device (cubecl's SPIR-V compiler) crashes Mesa's lavapipe while it builds
//! the compute pipeline. burn only, no danling. See `docs/vulkan-on-lavapipe.md`.
//!
//! ```sh
//! cargo run -p danling --features vulkan --example vulkan_matmul   # SIGSEGV on lavapipe 22.3
//! ```

use burn::tensor::{Device, DeviceKind, Tensor};

fn main() {
    let device = Device::vulkan(DeviceKind::DefaultDevice);
    let a = Tensor::<2>::ones([64, 64], &device);
    println!("ones: {}", a.clone().sum().into_scalar::<f32>());
    let product = a.clone().matmul(a);
    println!("matmul: {}", product.sum().into_scalar::<f32>());
}
