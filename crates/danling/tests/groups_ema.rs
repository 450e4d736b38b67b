//! `optim.groups` and `ema`: each checked against a run that must equal it (a neutral group against
//! no group, a group's decay against the same decay for all, half the learning rate against
//! `lr_scale: 0.5`, an average with decay 0 against the model), and both through exact resume from
//! every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use common::{Classify, Net, comparable, config, runner, serial, weights};
use danling::Config;
use danling::checkpoint::{load_ema, load_model};
use danling::config::{EmaConfig, OptimKind, ParamGroupConfig};
use danling::runner::{Runner, RunnerError};

fn group(pattern: &str, lr_scale: f64, weight_decay: Option<f64>) -> ParamGroupConfig {
    ParamGroupConfig {
        pattern: pattern.to_owned(),
        lr_scale,
        weight_decay,
    }
}

/// The weights and results of a run of `config`, named `name`.
fn run(mut config: Config, name: &str) -> (Vec<Vec<f32>>, serde_json::Value, Runner<Classify>) {
    config.name = Some(name.to_owned());
    let mut runner = runner(config);
    let trained = runner.train().unwrap();
    (weights(&runner), comparable(&trained.results), runner)
}

fn tensors(path: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, view)| {
            (
                name.strip_prefix(prefix).unwrap().to_owned(),
                view.data().to_vec(),
            )
        })
        .collect();
    tensors.sort();
    tensors
}

#[test]
fn a_group_that_changes_nothing_trains_as_no_group() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    for kind in [OptimKind::Sgd, OptimKind::Adam, OptimKind::Adamw] {
        let mut base = config(
            root.path(),
            &[("optim.weight_decay", "0.01"), ("optim.momentum", "0.9")],
        );
        base.optim.kind = kind;
        let (plain, plain_results, _) = run(base.clone(), &format!("{kind:?}-plain"));
        let mut grouped = base.clone();
        grouped.optim.groups = vec![group("weight$", 1.0, Some(0.01)), group("bias", 1.0, None)];
        let (same, same_results, _) = run(grouped, &format!("{kind:?}-neutral"));
        assert_eq!(same, plain, "{kind:?}: weights");
        assert_eq!(same_results, plain_results, "{kind:?}: results");
    }
}

#[test]
fn a_groups_weight_decay_is_that_decay_for_its_parameters() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    for kind in [OptimKind::Sgd, OptimKind::Adam, OptimKind::Adamw] {
        let mut everywhere = config(root.path(), &[("optim.weight_decay", "0.05")]);
        everywhere.optim.kind = kind;
        let (expected, _, _) = run(everywhere.clone(), &format!("{kind:?}-decay"));
        let mut grouped = everywhere.clone();
        grouped.optim.weight_decay = 0.0;
        grouped.optim.groups = vec![group(".", 1.0, Some(0.05))];
        let (decayed, _, _) = run(grouped.clone(), &format!("{kind:?}-group-decay"));
        assert_eq!(decayed, expected, "{kind:?}");
        // And it is a decay: without it the weights differ.
        grouped.optim.groups.clear();
        let (undecayed, _, _) = run(grouped, &format!("{kind:?}-no-decay"));
        assert_ne!(undecayed, expected, "{kind:?}");
    }
}

#[test]
fn lr_scale_scales_the_scheduled_rate_and_the_first_matching_group_wins() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    // Half the rate, through the cosine schedule, is exactly a run at half the rate (with no
    // `min_lr` floor, the one term of the schedule that does not scale with the rate).
    let floorless = [("sched.min_lr", "0")];
    let mut half = config(root.path(), &floorless);
    half.optim.lr = 0.025;
    let (expected, _, _) = run(half, "half");
    let mut halved = config(root.path(), &floorless);
    halved.optim.groups = vec![group(".", 0.5, None)];
    let (scaled, _, _) = run(halved, "scaled");
    assert_eq!(scaled, expected);

    // `hidden.*` takes the first group (rate 0): it never moves, though the second matches it too.
    let start = weights(&runner(config(root.path(), &[("name", "start")])));
    let mut frozen = config(root.path(), &[]);
    frozen.optim.groups = vec![group("^hidden\\.", 0.0, None), group(".", 2.0, None)];
    let (trained, _, _) = run(frozen, "frozen");
    assert_eq!(trained[0], start[0], "hidden.weight did not move");
    assert_ne!(trained[1], start[1], "output.weight did");
}

#[test]
fn a_bad_group_is_named_before_anything_is_written() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let error = Config::<danling::config::NoSections>::from_value(serde_json::json!({
        "optim": {"groups": [{"match": "bias$"}, {"match": "(unclosed"}]}
    }))
    .unwrap_err()
    .to_string();
    assert!(error.contains("optim.groups[1].match"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");

    let mut typo = config(root.path(), &[]);
    typo.optim.groups = vec![group("bias$", 1.0, Some(0.0)), group("^hiden\\.", 0.1, None)];
    let error = runner(typo).train().unwrap_err();
    assert!(matches!(error, RunnerError::Optimizer(_)), "{error:?}");
    assert!(error.to_string().contains("optim.groups[1].match"), "{error}");
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "nothing written"
    );

    let error = Config::<danling::config::NoSections>::from_value(serde_json::json!({
        "optim": {"type": "custom", "custom": {"name": "mine"}, "groups": [{"match": "bias", "weight_decay": 0}]}
    }))
    .unwrap_err()
    .to_string();
    assert!(error.contains("optim.groups[0].weight_decay"), "{error}");
}

#[test]
fn an_average_with_decay_zero_is_the_model_and_is_reported_beside_it() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut zero = config(root.path(), &[]);
    zero.ema = Some(EmaConfig { decay: 0.0 });
    let (_, results, runner) = run(zero, "ema-zero");
    for (index, record) in results.as_object().unwrap() {
        let val = &record["val"];
        assert_eq!(val["ema_loss"], val["loss"], "epoch {index}: {val}");
        assert_eq!(val["ema_accuracy"], val["accuracy"], "epoch {index}: {val}");
        assert!(
            record["train"].get("ema_loss").is_none(),
            "only evaluation splits"
        );
    }
    let latest = runner.identity().checkpoint_dir.join("latest.safetensors");
    assert_eq!(tensors(&latest, "ema."), tensors(&latest, "model."));
}

#[test]
fn the_average_is_saved_in_every_checkpoint_scored_and_loaded() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut averaged = config(root.path(), &[("score_name", "ema_loss"), ("epochs", "4")]);
    averaged.ema = Some(EmaConfig { decay: 0.9 });
    let (_, results, runner) = run(averaged, "ema");
    let losses: Vec<f64> = (1..=4)
        .map(|epoch| results[epoch.to_string()]["val"]["ema_loss"].as_f64().unwrap())
        .collect();
    let raw: Vec<f64> = (1..=4)
        .map(|epoch| results[epoch.to_string()]["val"]["loss"].as_f64().unwrap())
        .collect();
    assert_ne!(losses, raw, "the average is not the model");
    // `ema_loss` is scored low-is-better (a loss), ties to the later epoch.
    let best = (0..4)
        .rev()
        .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
        .unwrap()
        + 1;
    let dir = runner.identity().dir.clone();
    let best_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("best.json")).unwrap()).unwrap();
    assert_eq!(best_json["index"], best, "{losses:?}");

    // Every checkpoint holds the average, and it loads into the user's model.
    let checkpoints = runner.identity().checkpoint_dir.clone();
    for name in ["latest", "best", "step-1", "step-7"] {
        let path = checkpoints.join(format!("{name}.safetensors"));
        assert!(!tensors(&path, "ema.").is_empty(), "{name}");
        assert_eq!(
            tensors(&path, "ema.").len(),
            tensors(&path, "model.").len(),
            "{name}"
        );
    }
    let latest = checkpoints.join("latest.safetensors");
    let loaded = load_ema(Net::new(&Device::flex()), &latest).unwrap();
    let in_memory = runner.ema_model().unwrap();
    assert_eq!(
        loaded
            .hidden
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        in_memory
            .hidden
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    );
    // The model's own weights load as before, the average beside them ignored.
    let model = load_model(Net::new(&Device::flex()), &latest).unwrap();
    assert_eq!(
        model.output.weight.val().into_data().try_to_vec::<f32>().unwrap(),
        runner
            .model()
            .valid()
            .output
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    );
}

#[test]
fn groups_and_the_average_resume_exactly_from_every_step() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let settings = |extra: &[(&str, &str)]| {
        let mut config = config(root.path(), extra);
        config.ema = Some(EmaConfig { decay: 0.8 });
        config.optim.weight_decay = 0.02;
        config.optim.groups = vec![group("bias$", 1.0, Some(0.0)), group("^hidden\\.", 0.5, None)];
        config.score_name = "ema_accuracy".to_owned();
        config
    };
    let (expected, expected_results, straight) = run(settings(&[]), "straight");
    let checkpoints = straight.identity().checkpoint_dir.clone();
    let expected_average = tensors(&checkpoints.join("latest.safetensors"), "ema.");
    for k in 1..=12 {
        let copy = root.path().join(format!("from-{k}.safetensors"));
        std::fs::copy(checkpoints.join(format!("step-{k}.safetensors")), &copy).unwrap();
        let (resumed, resumed_results, _) =
            run(settings(&[("checkpoint", copy.to_str().unwrap())]), "straight");
        assert_eq!(resumed, expected, "weights from step {k}");
        assert_eq!(resumed_results, expected_results, "results from step {k}");
        assert_eq!(
            tensors(&checkpoints.join("latest.safetensors"), "ema."),
            expected_average,
            "the average from step {k}"
        );
    }
}
