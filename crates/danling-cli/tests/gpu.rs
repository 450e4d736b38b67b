//! The GPU code path (cubecl kernels, device memory, asynchronous reads), run on every commit through
//! lavapipe, Mesa's software Vulkan driver: training on `device: wgpu`, checkpoints across backends,
//! exact resume, the optimizers against flex, non-finite updates, mixed precision and device errors.
//!
//! Needs the feature and a Vulkan driver (`apt install mesa-vulkan-drivers`):
//! `cargo test -p danling-cli --features wgpu --test gpu`.
// With `vulkan` too, burn compiles `wgpu`'s kernels to SPIR-V, which lavapipe cannot run: tests/vulkan.rs.
#![cfg(all(feature = "wgpu", not(feature = "vulkan")))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::{model_tensors, scratch, stable_results, stderr, stdout};
use serde_json::Value;

/// One training at a time: lavapipe already spreads each over the cores.
static DEVICE: Mutex<()> = Mutex::new(());

/// `danling ARGS` in `dir`, as a user runs it: no `XDG_RUNTIME_DIR` (a container, a CI job), so that
/// noise about it would show.
fn danling(dir: &Path, args: &[&str]) -> Output {
    let _one = DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env_remove("DANLING_LOG")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("danling runs")
}

/// Trains `args` in `dir`; returns the run dir printed last.
fn train(dir: &Path, args: &[&str]) -> PathBuf {
    let output = danling(dir, &[&["train"], args].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_quiet(&output);
    dir.join(stdout(&output).lines().last().unwrap())
}

/// Nothing but danling's own lines on stderr: no driver or loader noise.
fn assert_quiet(output: &Output) {
    let err = stderr(output);
    for noise in ["XDG_RUNTIME_DIR", "MESA", "WARNING: lavapipe", "vkCreate", "wgpu"] {
        assert!(!err.contains(noise), "`{noise}` on stderr:\n{err}");
    }
}

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/digits.yaml")
        .to_string_lossy()
        .into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The largest difference between two checkpoints' model tensors, relative to each tensor's largest
/// magnitude.
fn weight_difference(a: &Path, b: &Path) -> f64 {
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (a, b) = (model_tensors(a), model_tensors(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f64;
    for ((name_a, a), (name_b, b)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        let (a, b) = (floats(a), floats(b));
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max(f64::from((x - y).abs() / scale));
        }
    }
    worst
}

/// The `runtime` metadata of a checkpoint.
fn checkpoint_runtime(path: &Path) -> Value {
    checkpoint_metadata(path, "runtime")
}

/// The JSON document a checkpoint's metadata holds under `key` (`runtime`, `state`, …).
fn checkpoint_metadata(path: &Path, key: &str) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    serde_json::from_str(&metadata[key]).unwrap()
}

/// A split's metric in a results document.
fn metric(doc: &Value, split: &str, name: &str) -> f64 {
    doc[split][name]
        .as_f64()
        .unwrap_or_else(|| panic!("{split}/{name} in {doc}"))
}

#[test]
fn digits_on_wgpu_learns_and_evaluates_the_same_on_flex() {
    let dir = scratch();
    let run = train(
        dir.path(),
        &[&digits(), "--device", "wgpu", "--progress", "false"],
    );
    let best = json(&run.join("best.json"));
    let accuracy = metric(&best, "val", "accuracy");
    assert!(accuracy >= 0.95, "val accuracy {accuracy} on wgpu");
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(log.contains("device wgpu ("), "the adapter is logged:\n{log}");

    // The checkpoint and runner.yaml say where it was trained; flex evaluates it to the same metrics.
    assert_eq!(
        checkpoint_runtime(&run.join("checkpoints/best.safetensors"))["device"],
        "wgpu"
    );
    let yaml = std::fs::read_to_string(run.join("runner.yaml")).unwrap();
    assert!(yaml.contains("\ndevice: wgpu\n"), "{yaml}");
    let output = danling(
        dir.path(),
        &[
            "evaluate",
            &digits(),
            "--checkpoint",
            run.join("checkpoints/best.safetensors").to_str().unwrap(),
            "--split",
            "val",
            "--device",
            "flex",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let on_flex: Value = serde_json::from_str(&stdout(&output)).unwrap();
    for name in ["loss", "accuracy", "auroc", "f1", "mcc"] {
        let (wgpu, flex) = (metric(&best, "val", name), metric(&on_flex, "val", name));
        println!(
            "val {name}: wgpu {wgpu}, flex {flex}, difference {:.3e}",
            (wgpu - flex).abs()
        );
        assert!(
            (wgpu - flex).abs() <= 1e-5,
            "val {name}: wgpu {wgpu}, flex {flex}"
        );
    }
}

/// A synthetic run with dropout, out-of-step log lines and step checkpoints, small enough for
/// lavapipe: 3 epochs of 24 batches.
const SYNTHETIC: [&str; 22] = [
    "--epochs",
    "3",
    "--data.name",
    "synthetic",
    "--data.n_train",
    "1500",
    "--data.n_val",
    "300",
    "--data.features",
    "32",
    "--data.batch_size",
    "64",
    "--model.hidden",
    "[64]",
    "--model.dropout",
    "0.1",
    "--progress",
    "false",
    "--log_interval",
    "5",
    "--save_steps",
    "7",
];

fn synthetic(extra: &[&str]) -> Vec<String> {
    SYNTHETIC.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn train_synthetic(dir: &Path, extra: &[&str]) -> PathBuf {
    let args = synthetic(extra);
    train(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The results files without wall-clock values, and the model tensors of `latest`.
fn outcome(run: &Path) -> (Value, Vec<(String, Vec<u8>)>) {
    (
        stable_results(run),
        model_tensors(&run.join("checkpoints/latest.safetensors")),
    )
}

#[test]
fn a_run_resumed_on_wgpu_is_bit_identical_to_the_straight_run() {
    let dir = scratch();
    let straight = train_synthetic(dir.path(), &["--device", "wgpu"]);
    let again_dir = scratch();
    let again = train_synthetic(again_dir.path(), &["--device", "wgpu"]);
    assert_eq!(
        outcome(&again),
        outcome(&straight),
        "two wgpu runs differ: lavapipe is not deterministic"
    );
    // From step 28 (inside epoch 2, between log lines), into another project root.
    for step in ["step-28", "step-49"] {
        let from = straight.join(format!("checkpoints/{step}.safetensors"));
        let root = dir.path().join(step);
        let resumed = train_synthetic(
            dir.path(),
            &[
                "--device",
                "wgpu",
                "--project_root",
                root.to_str().unwrap(),
                "--checkpoint",
                from.to_str().unwrap(),
            ],
        );
        assert_eq!(outcome(&resumed), outcome(&straight), "resumed from {step}");
    }
}

#[test]
fn a_flex_run_continues_on_wgpu_within_tolerance() {
    let dir = scratch();
    // No dropout: each backend draws its own masks from the same seed.
    let flex = train_synthetic(dir.path(), &["--device", "flex", "--model.dropout", "0"]);
    let from = flex.join("checkpoints/step-28.safetensors");
    let root = dir.path().join("on-wgpu");
    let continued = train_synthetic(
        dir.path(),
        &[
            "--device",
            "wgpu",
            "--model.dropout",
            "0",
            "--project_root",
            root.to_str().unwrap(),
            "--checkpoint",
            from.to_str().unwrap(),
        ],
    );
    assert_eq!(
        checkpoint_runtime(&continued.join("checkpoints/latest.safetensors"))["device"],
        "wgpu"
    );
    let (a, b) = (
        json(&flex.join("latest.json")),
        json(&continued.join("latest.json")),
    );
    for split in ["train", "val"] {
        let (x, y) = (metric(&a, split, "loss"), metric(&b, split, "loss"));
        println!(
            "{split} loss: flex {x}, flex then wgpu {y}, relative difference {:.3e}",
            (x - y).abs() / x
        );
        assert!(
            (x - y).abs() <= 1e-4 * x,
            "{split} loss: flex {x}, continued on wgpu {y}"
        );
    }
    let weights = weight_difference(
        &flex.join("checkpoints/latest.safetensors"),
        &continued.join("checkpoints/latest.safetensors"),
    );
    println!("weights: largest relative difference {weights:.3e}");
    assert!(weights <= 1e-4, "weights differ by {weights}");
}

#[test]
fn pretrained_weights_load_across_backends() {
    let dir = scratch();
    let flex = train_synthetic(dir.path(), &["--device", "flex"]);
    let wgpu_root = dir.path().join("wgpu");
    let wgpu = train_synthetic(
        dir.path(),
        &["--device", "wgpu", "--project_root", wgpu_root.to_str().unwrap()],
    );
    // SGD with a learning rate of 1e-12: one epoch leaves the pretrained weights as they were (to f32's
    // resolution), on the other backend.
    for (source, device) in [(&flex, "wgpu"), (&wgpu, "flex")] {
        let weights = source.join("checkpoints/latest.safetensors");
        let root = dir.path().join(format!("pretrained-on-{device}"));
        let run = train_synthetic(
            dir.path(),
            &[
                "--device",
                device,
                "--epochs",
                "1",
                "--optim.type",
                "sgd",
                "--optim.lr",
                "1e-12",
                "--sched.min_lr",
                "0",
                "--project_root",
                root.to_str().unwrap(),
                "--pretrained",
                weights.to_str().unwrap(),
            ],
        );
        let moved = weight_difference(&run.join("checkpoints/latest.safetensors"), &weights);
        assert!(
            moved <= 1e-7,
            "pretrained on {device}: the weights moved by {moved}"
        );
        let (before, after) = (json(&source.join("latest.json")), json(&run.join("latest.json")));
        let (x, y) = (metric(&before, "val", "loss"), metric(&after, "val", "loss"));
        assert!(
            (x - y).abs() <= 1e-5 * x.max(1.0),
            "val loss {x} before, {y} on {device}"
        );
    }
}

#[test]
fn sgd_adam_and_adamw_on_wgpu_follow_flex_for_20_steps() {
    for (optim, extra) in [
        ("sgd", &["--optim.momentum", "0.9", "--optim.lr", "0.05"][..]),
        ("adam", &["--optim.weight_decay", "0.01"][..]),
        ("adamw", &["--optim.weight_decay", "0.01"][..]),
    ] {
        let dir = scratch();
        // Both start from the same weights: each backend draws its own random initialisation.
        let init_root = dir.path().join("init");
        let init = train_synthetic(
            dir.path(),
            &[
                "--device",
                "flex",
                "--epochs",
                "null",
                "--steps",
                "1",
                "--project_root",
                init_root.to_str().unwrap(),
            ],
        );
        let init = init.join("checkpoints/latest.safetensors");
        let mut args = vec![
            "--pretrained",
            init.to_str().unwrap(),
            "--epochs",
            "null",
            "--steps",
            "20",
            "--model.dropout",
            "0",
            "--optim.type",
            optim,
        ];
        args.extend_from_slice(extra);
        let on = |device: &str, name: &str| {
            let root = dir.path().join(name);
            let mut with: Vec<&str> = args.clone();
            with.extend_from_slice(&["--device", device, "--project_root", root.to_str().unwrap()]);
            train_synthetic(dir.path(), &with)
        };
        let (flex, wgpu) = (on("flex", "flex"), on("wgpu", "wgpu"));
        let difference = weight_difference(
            &flex.join("checkpoints/latest.safetensors"),
            &wgpu.join("checkpoints/latest.safetensors"),
        );
        println!(
            "{optim}: weights after 20 steps differ by {difference:.3e} (relative to each tensor's largest)"
        );
        assert!(difference <= 1e-5, "{optim}: {difference}");
        let (a, b) = (json(&flex.join("latest.json")), json(&wgpu.join("latest.json")));
        let (x, y) = (metric(&a, "train", "loss"), metric(&b, "train", "loss"));
        assert!(
            (x - y).abs() <= 1e-5 * x,
            "{optim} train loss: flex {x}, wgpu {y}"
        );
    }
}

#[test]
fn a_non_finite_update_on_wgpu_is_skipped_or_stops_the_run() {
    let dir = scratch();
    // A learning rate of 1e30 blows the weights up after the first step: every later loss is not finite.
    let blow_up = [
        "--device",
        "wgpu",
        "--optim.type",
        "sgd",
        "--optim.lr",
        "1e30",
        "--epochs",
        "1",
    ];
    let skipping = train_synthetic(dir.path(), &blow_up);
    let latest = json(&skipping.join("latest.json"));
    let skipped = metric(&latest, "train", "skipped");
    assert!(skipped >= 20.0, "{latest}");
    let flex_root = dir.path().join("flex");
    let mut on_flex = blow_up.to_vec();
    on_flex.extend_from_slice(&["--device", "flex", "--project_root", flex_root.to_str().unwrap()]);
    let flex = train_synthetic(dir.path(), &on_flex);
    assert_eq!(
        metric(&json(&flex.join("latest.json")), "train", "skipped"),
        skipped,
        "as on flex"
    );

    let stop_root = dir.path().join("stop");
    let mut stopping = synthetic(&blow_up);
    stopping.extend(
        [
            "--nonfinite",
            "stop",
            "--project_root",
            stop_root.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = ["train"]
        .into_iter()
        .chain(stopping.iter().map(String::as_str))
        .collect();
    let output = danling(dir.path(), &args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("non-finite"), "{}", stderr(&output));
    assert_quiet(&output);
}

#[test]
fn no_vulkan_driver_is_one_line_and_exit_2() {
    let dir = scratch();
    let output = Command::new(common::bin())
        .args(["train", &digits(), "--device", "wgpu", "--progress", "false"])
        .current_dir(dir.path())
        .env_remove("DANLING_LOG")
        // The Vulkan loader finds no driver where these point.
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("danling: error: device `wgpu`: no graphics adapter found")
            && err.contains("mesa-vulkan-drivers"),
        "{err}"
    );
    assert!(!dir.path().join("experiments").exists(), "nothing written");
}

#[test]
fn auto_takes_flex_over_a_software_adapter_and_says_why() {
    let dir = scratch();
    let run = train(
        dir.path(),
        &[
            &digits(),
            "--device",
            "auto",
            "--epochs",
            "1",
            "--progress",
            "false",
        ],
    );
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(
        log.contains("device flex (auto: the CPU (wgpu: only the software adapter"),
        "{log}"
    );
    assert_eq!(
        checkpoint_runtime(&run.join("checkpoints/latest.safetensors"))["device"],
        "flex"
    );
    let yaml = std::fs::read_to_string(run.join("runner.yaml")).unwrap();
    assert!(
        yaml.contains("  device: auto\n") && yaml.contains("\ndevice: flex\n"),
        "{yaml}"
    );
}

/// The `state` document of a checkpoint.
fn checkpoint_state(path: &Path) -> Value {
    checkpoint_metadata(path, "state")
}

#[test]
fn f16_on_wgpu_learns_digits_within_a_point_of_f32_and_resumes_exactly() {
    let dir = scratch();
    let accuracy = |precision: &str| {
        let root = dir.path().join(precision);
        let run = train(
            dir.path(),
            &[
                &digits(),
                "--device",
                "wgpu",
                "--precision",
                precision,
                "--progress",
                "false",
                "--project_root",
                root.to_str().unwrap(),
            ],
        );
        (metric(&json(&run.join("best.json")), "val", "accuracy"), run)
    };
    let (f32_accuracy, f32_run) = accuracy("f32");
    let (f16_accuracy, f16_run) = accuracy("f16");
    println!("digits val accuracy on wgpu: f32 {f32_accuracy:.4}, f16 {f16_accuracy:.4}");
    assert!(
        f16_accuracy >= f32_accuracy - 0.01,
        "f16 {f16_accuracy}, f32 {f32_accuracy}"
    );
    // The forward and backward passes really ran in f16: the weights are not the f32 run's.
    let apart = weight_difference(
        &f32_run.join("checkpoints/latest.safetensors"),
        &f16_run.join("checkpoints/latest.safetensors"),
    );
    println!("weights of the f16 and f32 runs differ by {apart:.3e}");
    assert!(apart > 1e-3, "f16 trained the f32 run's weights ({apart})");
    let scaler = &checkpoint_state(&f16_run.join("checkpoints/latest.safetensors"))["scaler"];
    assert!(
        scaler["scale"].as_f64().unwrap() > 0.0,
        "the loss scaler is in the checkpoint: {scaler}"
    );
    let log = std::fs::read_to_string(f16_run.join("run.log")).unwrap();
    assert!(log.contains("precision f16"), "{log}");

    // Resumed from a step checkpoint, an f16 run with its loss scaler is the straight run, bit for bit.
    let straight = train_synthetic(dir.path(), &["--device", "wgpu", "--precision", "f16"]);
    let from = straight.join("checkpoints/step-28.safetensors");
    assert!(checkpoint_state(&from)["scaler"].is_object());
    let root = dir.path().join("resumed");
    let resumed = train_synthetic(
        dir.path(),
        &[
            "--device",
            "wgpu",
            "--precision",
            "f16",
            "--project_root",
            root.to_str().unwrap(),
            "--checkpoint",
            from.to_str().unwrap(),
        ],
    );
    assert_eq!(outcome(&resumed), outcome(&straight), "f16 resumed from step 28");
    let dtypes = {
        let bytes = std::fs::read(straight.join("checkpoints/latest.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        file.tensors()
            .into_iter()
            .filter(|(n, _)| n.starts_with("model."))
            .map(|(_, v)| v.dtype())
            .collect::<Vec<_>>()
    };
    assert!(
        dtypes.iter().all(|d| *d == safetensors::Dtype::F32),
        "f32 master weights: {dtypes:?}"
    );
}

#[test]
fn mixed_precision_on_flex_is_refused_saying_why() {
    let dir = scratch();
    for precision in ["bf16", "f16"] {
        let output = danling(
            dir.path(),
            &["train", &digits(), "--device", "flex", "--precision", precision],
        );
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("precision `{precision}`")) && err.contains("slower than f32"),
            "{err}"
        );
    }
}

#[test]
fn f16_overflows_halve_the_loss_scale_skip_the_update_and_resume_exactly() {
    // Diabetes' targets reach 346: the f16 gradients of its squared error overflow at the first scale
    // (2^15), and the scaler halves it until they fit. Overflowed updates are not steps.
    let args = |root: &Path, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--data.name",
            "diabetes",
            "--device",
            "wgpu",
            "--precision",
            "f16",
            "--epochs",
            "6",
            "--progress",
            "false",
            "--save_steps",
            "4",
            "--log_interval",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--project_root".to_owned(), root.to_string_lossy().into_owned()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |root: &Path, extra: &[&str]| {
        let args = args(root, extra);
        train(
            root.parent().unwrap(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let dir = scratch();
    let straight = run(&dir.path().join("straight"), &[]);
    let state = checkpoint_state(&straight.join("checkpoints/latest.safetensors"));
    let scaler = &state["scaler"];
    println!("diabetes f16: {scaler}, skipped {}", state["skipped"]);
    let overflows = scaler["overflows"].as_u64().unwrap();
    assert!(overflows >= 3, "{scaler}");
    assert_eq!(
        scaler["scale"].as_f64().unwrap(),
        32768.0 / f64::from(1u32 << overflows),
        "{scaler}"
    );
    assert_eq!(
        state["skipped"], 0,
        "overflows are the scaler's, not non-finite updates"
    );
    assert!(metric(&json(&straight.join("latest.json")), "train", "loss").is_finite());
    // A step budget counts the overflowed updates, as it counts non-finite skips.
    let budget = run(&dir.path().join("budget"), &["--epochs", "null", "--steps", "20"]);
    let state = checkpoint_state(&budget.join("checkpoints/latest.safetensors"));
    let overflowed = state["scaler"]["overflows"].as_u64().unwrap();
    assert!(overflowed > 0);
    assert_eq!(state["step"].as_u64().unwrap() + overflowed, 20, "{state}");
    // From a checkpoint early in the run and from a later one: the scaler comes back as it was.
    for step in ["step-4", "step-20"] {
        let from = straight.join(format!("checkpoints/{step}.safetensors"));
        let resumed = run(&dir.path().join(step), &["--checkpoint", from.to_str().unwrap()]);
        assert_eq!(outcome(&resumed), outcome(&straight), "resumed from {step}");
    }
}
