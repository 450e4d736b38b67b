//! `device: vulkan` on a software adapter is refused, not crashed: Mesa's lavapipe dies compiling
//! burn's SPIR-V kernels (docs/vulkan-on-lavapipe.md). So is `device: wgpu` in a build that also has
//! the `vulkan` feature, with which burn compiles `wgpu`'s kernels to SPIR-V as well.
//!
//! Needs the features and lavapipe (`apt install mesa-vulkan-drivers`):
//! `cargo test -p danling-cli --features wgpu,vulkan --test vulkan`.
#![cfg(feature = "vulkan")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{danling, scratch, stderr};

fn digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits.yaml")
}

/// Trains the digits example on `device`, expecting the refusal, which names what to do `instead`.
fn refused(device: &str, instead: &str) {
    let dir = scratch();
    let output = danling(
        dir.path(),
        &[
            "train",
            digits().to_str().unwrap(),
            "--device",
            device,
            "--progress",
            "false",
        ],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "device `{device}`: the only Vulkan adapter is the software driver"
        )) && err.contains(instead),
        "{err}"
    );
    assert!(!dir.path().join("experiments").exists(), "nothing written");
}

#[test]
fn vulkan_on_lavapipe_is_refused_with_one_line_and_exit_2() {
    refused("vulkan", "device: wgpu");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_in_a_build_with_vulkan_is_refused_on_lavapipe_too() {
    refused("wgpu", "build without it");
}

#[test]
fn auto_takes_flex_over_lavapipe() {
    let dir = scratch();
    let output = danling(
        dir.path(),
        &[
            "train",
            digits().to_str().unwrap(),
            "--epochs",
            "1",
            "--progress",
            "false",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let log = std::fs::read_to_string(common::run_dir(dir.path()).unwrap().join("run.log")).unwrap();
    assert!(
        log.contains("device flex (auto: the CPU (vulkan: only the software adapter"),
        "{log}"
    );
}
