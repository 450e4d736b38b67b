//! `device: vulkan` on a software adapter is refused, not crashed: Mesa's lavapipe dies compiling
//! burn's SPIR-V kernels (docs/vulkan-on-lavapipe.md).
//!
//! Needs the feature and lavapipe (`apt install mesa-vulkan-drivers`):
//! `cargo test -p danling-cli --features vulkan --test vulkan`.
#![cfg(feature = "vulkan")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{danling, scratch, stderr};

#[test]
fn vulkan_on_lavapipe_is_refused_with_one_line_and_exit_2() {
    let dir = scratch();
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits.yaml");
    let output = danling(
        dir.path(),
        &[
            "train",
            digits.to_str().unwrap(),
            "--device",
            "vulkan",
            "--progress",
            "false",
        ],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("device `vulkan`: the only Vulkan adapter is the software driver")
            && err.contains("device: wgpu"),
        "{err}"
    );
    assert!(!dir.path().join("experiments").exists(), "nothing written");
}
