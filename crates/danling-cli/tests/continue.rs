//! `save_steps` changes nothing reported, and `--checkpoint PATH` continues a run in the run
//! directory of the resolved config, never in the one the checkpoint came from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{danling, model_tensors, stable_results, stderr, stdout};
use serde_json::Value;

/// 3000 samples in batches of 64 is 47 batches an epoch; `log_interval` defaults to a tenth of that
/// (4), so step checkpoints every 15 steps fall between log flushes.
const RUN: [&str; 21] = [
    "train",
    "--epochs",
    "2",
    "--data.name",
    "synthetic",
    "--data.n_train",
    "3000",
    "--data.n_val",
    "500",
    "--data.features",
    "128",
    "--data.classes",
    "5",
    "--data.batch_size",
    "64",
    "--model.hidden",
    "[128]",
    "--optim.type",
    "adam",
    "--progress",
    "false",
];

/// Trains `RUN` plus `extra` in `dir`; returns the run dir it printed last.
fn train(dir: &Path, extra: &[&str]) -> PathBuf {
    let output = danling(dir, &[&RUN[..], extra].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    dir.join(stdout(&output).lines().last().unwrap())
}

/// The results files without their wall-clock values, and the model tensors of `latest`.
fn outcome(run: &Path) -> (Value, Vec<(String, Vec<u8>)>) {
    (
        stable_results(run),
        model_tensors(&run.join("checkpoints/latest.safetensors")),
    )
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn save_steps_and_checkpoint_continue_change_nothing_and_write_only_the_resolved_run_dir() {
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = train(plain_dir.path(), &[]);
    let expected = outcome(&plain);

    // Step checkpoints between log flushes report what the plain run reports.
    let saving_dir = tempfile::tempdir().unwrap();
    let saving = train(saving_dir.path(), &["--save_steps", "15"]);
    assert_eq!(saving.file_name(), plain.file_name(), "save_steps is not hashed");
    assert_eq!(outcome(&saving), expected, "save_steps changed the results");
    let source = snapshot(saving_dir.path());

    // Continued from a step checkpoint into another project root: written there, not in the source.
    let elsewhere = tempfile::tempdir().unwrap();
    let step = saving.join("checkpoints/step-60.safetensors");
    let root = elsewhere.path().join("B");
    let continued = train(
        elsewhere.path(),
        &[
            "--save_steps",
            "15",
            "--project_root",
            root.to_str().unwrap(),
            "--checkpoint",
            step.to_str().unwrap(),
        ],
    );
    assert_eq!(continued, root.join(plain.file_name().unwrap()));
    assert_eq!(outcome(&continued), expected, "continued from step 60");
    let log = std::fs::read_to_string(continued.join("run.log")).unwrap();
    assert!(
        log.lines()
            .next()
            .unwrap()
            .ends_with(&format!("continued from {} at step 60 =====", step.display())),
        "{log}"
    );
    assert!(
        snapshot(saving_dir.path()) == source,
        "the source run dir was written to"
    );

    // A changed hashed key is a new run that names its parent.
    let extended = train(
        elsewhere.path(),
        &[
            "--epochs",
            "3",
            "--project_root",
            root.to_str().unwrap(),
            "--checkpoint",
            step.to_str().unwrap(),
        ],
    );
    assert_ne!(extended.file_name(), plain.file_name());
    // Its runner.yaml reproduces its id.
    let document = danling(
        elsewhere.path(),
        &["config", "--json", extended.join("runner.yaml").to_str().unwrap()],
    );
    let document: Value = serde_json::from_slice(&document.stdout).unwrap();
    let id = document["identity"]["id"].as_str().unwrap();
    assert!(extended.to_string_lossy().ends_with(id));
    let yaml: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(extended.join("runner.yaml")).unwrap()).unwrap();
    let parent = &yaml["identity"]["parent"];
    let plain_name = plain.file_name().unwrap().to_string_lossy().into_owned();
    assert!(plain_name.ends_with(parent["id"].as_str().unwrap()), "{parent}");
    assert_eq!(parent["step"], 60);
    assert_eq!(
        Path::new(parent["checkpoint"].as_str().unwrap()),
        step.canonicalize().unwrap()
    );
    let (files, _) = outcome(&extended);
    assert_eq!(
        files["results.json"]["results"]["1"], expected.0["results.json"]["results"]["1"],
        "the history carried over"
    );
    assert!(files["results.json"]["results"]["3"].is_object());
    assert!(
        snapshot(saving_dir.path()) == source,
        "the source run dir was written to"
    );
}
