//! Exact resume: a run stopped at any step and resumed from its checkpoint ends with bit-identical
//! weights and identical results (but for the wall-clock `time` and `samples_per_s`), with dropout,
//! shuffling, a cosine schedule and gradient accumulation all on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use burn::data::dataset::InMemDataset;
use burn::tensor::Device;
use common::{Classify, Net, comparable, config, data, runner, serial, weights};
use danling::log::Console;
use danling::runner::Runner;

#[test]
fn resuming_from_any_step_matches_the_uninterrupted_run() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[]));
    let trained = straight.train().unwrap();
    let dir: PathBuf = trained.dir.clone().unwrap();
    // 37 samples in batches of 5 is 8 batches, 4 optimizer steps per epoch, 12 in all.
    assert_eq!(trained.state.step, 12);
    let expected_weights = weights(&straight);
    let expected_results = comparable(&trained.results);

    let again = runner(config(root.path(), &[("name", "again")])).train().unwrap();
    assert_eq!(
        comparable(&again.results),
        expected_results,
        "two straight runs are identical"
    );

    // Mid-epoch (1, 2, 6, 9), at the end of an epoch's training (4, 8) and after the last step (12).
    for k in [1u64, 2, 4, 6, 8, 9, 12] {
        let checkpoint = dir.join(format!("checkpoints/step-{k}.safetensors"));
        assert!(checkpoint.is_file(), "step-{k} exists");
        let copy = root.path().join(format!("resume-from-{k}.safetensors"));
        std::fs::copy(&checkpoint, &copy).unwrap();
        let mut resumed = runner(config(root.path(), &[("checkpoint", copy.to_str().unwrap())]));
        let finished = resumed.train().unwrap();
        assert_eq!(
            finished.dir.as_deref(),
            Some(dir.as_path()),
            "the run goes on in its own dir"
        );
        assert_eq!(finished.state.step, 12, "from step {k}");
        assert_eq!(
            weights(&resumed),
            expected_weights,
            "bit-identical weights from step {k}"
        );
        assert_eq!(
            comparable(&finished.results),
            expected_results,
            "identical results from step {k}"
        );
    }
}

/// With 8 batches in groups of 3, an epoch's last group is short (2 batches); a checkpoint written
/// after it resumes past it, not into it.
#[test]
fn resuming_after_a_short_last_group_does_not_train_it_twice() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[("accum_steps", "3")]));
    let trained = straight.train().unwrap();
    assert_eq!(trained.state.step, 9);
    let dir = trained.dir.clone().unwrap();
    for k in 1..=9 {
        let copy = root.path().join(format!("short-{k}.safetensors"));
        std::fs::copy(dir.join(format!("checkpoints/step-{k}.safetensors")), &copy).unwrap();
        let checkpoint = ("checkpoint", copy.to_str().unwrap());
        let mut resumed = runner(config(root.path(), &[("accum_steps", "3"), checkpoint]));
        let finished = resumed.train().unwrap();
        assert_eq!(finished.state, trained.state, "from step {k}");
        assert_eq!(weights(&resumed), weights(&straight), "from step {k}");
        assert_eq!(
            comparable(&finished.results),
            comparable(&trained.results),
            "from step {k}"
        );
    }
}

#[test]
fn resume_true_continues_from_latest_and_a_finished_run_trains_nothing() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut first = runner(config(root.path(), &[("epochs", "2")]));
    let trained = first.train().unwrap();
    let dir = trained.dir.unwrap();
    let results_before = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let latest_before = std::fs::read(dir.join("checkpoints/latest.safetensors")).unwrap();

    let mut again = runner(config(root.path(), &[("epochs", "2"), ("resume", "true")]));
    let finished = again.train().unwrap();
    assert_eq!(finished.state, trained.state, "nothing was trained");
    assert_eq!(weights(&again), weights(&first));
    let results_after = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let strip = |text: &str| {
        text.lines()
            .filter(|l| !l.contains("timestamp"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&results_after), strip(&results_before));
    assert_eq!(
        std::fs::read(dir.join("checkpoints/latest.safetensors")).unwrap(),
        latest_before
    );
    for file in [
        "runner.yaml",
        "run.log",
        "results.json",
        "latest.json",
        "best.json",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("=====")).count(),
        2,
        "the log was appended to"
    );
}

#[test]
fn keep_latest_k_keeps_the_newest_history_and_never_latest_or_best() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let trained = runner(config(
        root.path(),
        &[("keep_latest_k", "2"), ("save_interval", "1")],
    ))
    .train()
    .unwrap();
    let dir = trained.dir.unwrap().join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "best.safetensors",
            "epoch-2.safetensors",
            "epoch-3.safetensors",
            "latest.safetensors",
            "step-11.safetensors",
            "step-12.safetensors"
        ]
    );
}

#[test]
fn the_checkpoint_file_holds_model_optimizer_scheduler_and_metadata() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let trained = runner(config(root.path(), &[("epochs", "1")])).train().unwrap();
    let path = trained.dir.unwrap().join("checkpoints/latest.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(
        names,
        [
            "model.hidden.bias",
            "model.hidden.weight",
            "model.output.bias",
            "model.output.weight",
            "optimizer.record",
            "scheduler.state"
        ]
    );
    // PyTorch layout: a linear layer's weight is [out, in].
    let hidden = file.tensor("model.hidden.weight").unwrap();
    assert_eq!(
        (hidden.shape(), hidden.dtype()),
        (&[16, 4][..], safetensors::Dtype::F32)
    );
    assert_eq!(file.tensor("model.output.weight").unwrap().shape(), [3, 16]);
    assert_eq!(
        file.tensor("optimizer.record").unwrap().dtype(),
        safetensors::Dtype::U8
    );
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["format"], "danling.checkpoint");
    assert_eq!(metadata["version"], "1");
    for key in ["config", "state", "results", "identity", "param_ids"] {
        let value: serde_json::Value = serde_json::from_str(&metadata[key]).unwrap();
        assert!(value.is_object(), "{key}");
    }
    let state: serde_json::Value = serde_json::from_str(&metadata["state"]).unwrap();
    assert_eq!(state["epoch"], 1);
    assert_eq!(state["step"], 4);
}

#[test]
fn from_checkpoint_continues_the_run_of_a_file() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[]));
    let trained = straight.train().unwrap();
    let step = trained
        .dir
        .clone()
        .unwrap()
        .join("checkpoints/step-5.safetensors");
    let mut resumed = Runner::from_checkpoint(&step, Classify, Net::new(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data(37, 0)))
        .eval_split("val", InMemDataset::new(data(12, 100)));
    let finished = resumed.train().unwrap();
    assert_eq!(weights(&resumed), weights(&straight));
    assert_eq!(comparable(&finished.results), comparable(&trained.results));
}

#[test]
fn a_corrupt_latest_falls_back_to_the_newest_intact_checkpoint() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[]));
    let trained = straight.train().unwrap();
    let dir = trained.dir.unwrap();
    let checkpoints = dir.join("checkpoints");
    // Keep only latest (now truncated), a flipped step-12 and an intact step-7.
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !["latest.safetensors", "step-12.safetensors", "step-7.safetensors"].contains(&name.as_str()) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let latest = checkpoints.join("latest.safetensors");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).unwrap();
    let step12 = checkpoints.join("step-12.safetensors");
    let mut bytes = std::fs::read(&step12).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&step12, &bytes).unwrap();

    let err = danling::checkpoint::read_checkpoint(&step12)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum") && err.contains("step-12"), "{err}");

    let mut resumed = runner(config(root.path(), &[("resume", "true")]));
    let finished = resumed.train().unwrap();
    assert_eq!(finished.state.step, 12);
    assert_eq!(
        weights(&resumed),
        weights(&straight),
        "resumed from step-7 and finished identically"
    );
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(
        log.contains("latest.safetensors") && log.contains("step-12.safetensors"),
        "{log}"
    );
    assert!(
        log.contains("resuming from") && log.contains("step-7.safetensors"),
        "{log}"
    );
}
