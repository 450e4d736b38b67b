//! The runner's gradient step and loops, on a linear model small enough to check by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::data::dataset::InMemDataset;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::nn::loss::{MseLoss, Reduction};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use danling::log::Console;
use danling::optim::LrScheduler;
use danling::runner::{Runner, StepOutput, Task, clip_norm, global_norm};
use danling::{Config, Identity, Override};
use serde_json::Value;

/// y = 2a - b + 0.5c + 1, sampled on a fixed grid.
fn samples(n: usize) -> Vec<([f32; 3], f32)> {
    (0..n)
        .map(|i| {
            let x = [
                (i % 7) as f32 / 7.0,
                (i % 5) as f32 / 5.0 - 0.5,
                (i % 3) as f32 / 3.0,
            ];
            (x, 2.0 * x[0] - x[1] + 0.5 * x[2] + 1.0)
        })
        .collect()
}

fn linear(device: &Device) -> Linear {
    Linear {
        weight: Param::from_data(TensorData::new(vec![0.1f32, -0.2, 0.3], [3, 1]), device),
        bias: Some(Param::from_data(TensorData::new(vec![0.05f32], [1]), device)),
    }
}

/// Least squares with an optional poisoned batch (a NaN loss on the item whose first feature is 9).
struct Regression;

impl Task for Regression {
    type Model = Linear;
    type Item = ([f32; 3], f32);
    type Batch = (Tensor<2>, Tensor<2>);

    fn collate(&self, items: Vec<Self::Item>, device: &Device) -> Self::Batch {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|(x, _)| *x).collect();
        let y: Vec<f32> = items.iter().map(|(_, y)| *y).collect();
        (
            Tensor::from_data(TensorData::new(x, [n, 3]), device),
            Tensor::from_data(TensorData::new(y, [n, 1]), device),
        )
    }

    fn forward(&self, model: &Linear, (x, y): &Self::Batch) -> StepOutput {
        let pred = model.forward(x.clone());
        let loss = MseLoss::new().forward(pred.clone(), y.clone(), Reduction::Mean);
        // A poisoned item makes its batch's loss NaN.
        let loss = if has_first_feature(x, 9.0) {
            loss.mul_scalar(f32::NAN)
        } else {
            loss
        };
        // An item of 8 leaves the loss finite but makes every gradient NaN: sqrt(p - p) is 0, and its
        // derivative 1 / (2 sqrt(0)) is infinite.
        let loss = if has_first_feature(x, 8.0) {
            loss + (pred.clone() - pred).sqrt().sum()
        } else {
            loss
        };
        StepOutput {
            loss,
            outputs: None,
            targets: None,
        }
    }
}

/// Whether any item of the batch `x` has `value` as its first feature.
fn has_first_feature(x: &Tensor<2>, value: f32) -> bool {
    x.clone()
        .slice([0..x.dims()[0], 0..1])
        .equal_elem(value)
        .any()
        .into_scalar::<bool>()
}

fn config(root: &std::path::Path, pairs: &[(&str, &str)]) -> Config {
    let mut overrides = vec![
        Override::parse("project_root", &root.display().to_string()).unwrap(),
        Override::parse("progress", "false").unwrap(),
        Override::parse("optim.type", "sgd").unwrap(),
        Override::parse("optim.lr", "0.1").unwrap(),
    ];
    overrides.extend(pairs.iter().map(|(k, v)| Override::parse(k, v).unwrap()));
    Config::load(None, &overrides).unwrap()
}

fn runner(mut config: Config, batch_size: usize, data: Vec<([f32; 3], f32)>) -> Runner<Regression> {
    config.data.batch_size = batch_size as u64;
    config.data.shuffle = false;
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    Runner::with_identity(config, identity, Regression, linear(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data))
}

fn weights(model: &Linear) -> Vec<f32> {
    let mut w = model.weight.val().into_data().try_to_vec::<f32>().unwrap();
    w.extend(
        model
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    w
}

/// Trains `n` samples twice, with accumulation (`small` batches, `accum` of them per step) and with
/// batches as large as a whole group, and checks both end at the same weights.
fn assert_accumulation_matches_big_batches(budget: (&str, &str), n: usize, small: usize, accum: usize) {
    let root = tempfile::tempdir().unwrap();
    let accum_text = accum.to_string();
    let accumulated = [budget, ("accum_steps", accum_text.as_str()), ("name", "a")];
    let mut accumulated = runner(config(root.path(), &accumulated), small, samples(n));
    let mut big = runner(
        config(root.path(), &[budget, ("name", "b")]),
        small * accum,
        samples(n),
    );
    accumulated.train().unwrap();
    big.train().unwrap();
    assert_eq!(accumulated.state().step, big.state().step);
    let (a, b) = (weights(accumulated.model()), weights(big.model()));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    assert_ne!(a, weights(&linear(&Device::flex())), "training moved the weights");
}

#[test]
fn accumulating_k_batches_of_b_equals_one_batch_of_k_times_b() {
    assert_accumulation_matches_big_batches(("epochs", "3"), 48, 3, 4);
}

#[test]
fn accumulation_weights_an_uneven_last_group_by_its_samples() {
    // 10 samples, batch 4, accum 2: groups are (4+4) and (2); each group's gradient is its mean.
    assert_accumulation_matches_big_batches(("steps", "2"), 10, 4, 2);
}

/// The gradients of loss = sum(w·x + b) with x = [1, 2, 3]: dL/dw = x and dL/db = 1, and their norm.
fn hand_gradients() -> (Linear, GradientsParams, Tensor<1>) {
    let device = Device::flex().autodiff();
    let model = linear(&device).train();
    let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
    let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
    let norm = global_norm(&model, &grads).unwrap();
    (model, grads, norm)
}

#[test]
fn global_norm_clipping_matches_a_hand_computation() {
    let (model, grads, norm) = hand_gradients();
    let expected_norm = (1.0f32 + 4.0 + 9.0 + 1.0).sqrt();
    assert!((norm.clone().into_scalar::<f32>() - expected_norm).abs() < 1e-5);

    let mut clipped = grads;
    clip_norm(&model, &mut clipped, &norm, 1.0);
    let factor = 1.0 / (expected_norm + 1e-6);
    let w = clipped
        .get::<2>(model.weight.id)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b = clipped
        .get::<1>(model.bias.as_ref().unwrap().id)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    for (got, want) in w.iter().zip([1.0, 2.0, 3.0]) {
        assert!((got - want * factor).abs() < 1e-6, "{w:?}");
    }
    assert!((b[0] - factor).abs() < 1e-6);
    let after = global_norm(&model, &clipped).unwrap().into_scalar::<f32>();
    assert!(
        (after - 1.0).abs() < 1e-5,
        "the clipped global norm is max_norm: {after}"
    );
}

#[test]
fn clipping_below_the_norm_leaves_gradients_alone() {
    let (model, grads, norm) = hand_gradients();
    let mut clipped = grads;
    clip_norm(&model, &mut clipped, &norm, 100.0);
    let w = clipped
        .get::<2>(model.weight.id)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(w, [1.0, 2.0, 3.0]);
}

#[test]
fn the_scheduler_steps_once_per_optimizer_step() {
    let root = tempfile::tempdir().unwrap();
    let config = config(
        root.path(),
        &[
            ("steps", "7"),
            ("accum_steps", "2"),
            ("sched.type", "linear"),
            ("sched.warmup_steps", "2"),
        ],
    );
    let expected = {
        let mut scheduler = LrScheduler::new(&config.sched, config.optim.lr, 7).unwrap();
        for _ in 0..7 {
            scheduler.step();
        }
        scheduler.lr()
    };
    let mut runner = runner(config, 2, samples(40));
    let trained = runner.train().unwrap();
    assert_eq!(trained.state.step, 7);
    assert_eq!(trained.state.iter, 14, "two micro-batches per optimizer step");
    let (_, record) = trained.results.latest().unwrap();
    assert_eq!(record["train"]["lr"], expected, "the lr after 7 scheduler steps");
}

#[test]
fn non_finite_updates_are_skipped_and_counted_or_stop_the_run() {
    let root = tempfile::tempdir().unwrap();
    let mut data = samples(12);
    data[5].0[0] = 9.0;
    let mut skipping = runner(
        config(root.path(), &[("epochs", "2"), ("name", "skip")]),
        4,
        data.clone(),
    );
    let trained = skipping.train().unwrap();
    assert_eq!(trained.state.skipped, 2, "one poisoned batch per epoch");
    assert_eq!(trained.state.step, 4);
    assert!(weights(skipping.model()).iter().all(|w| w.is_finite()));
    let (_, record) = trained.results.latest().unwrap();
    assert_eq!(record["train"]["skipped"], 1.0);

    let mut stopping = runner(
        config(
            root.path(),
            &[("epochs", "2"), ("nonfinite", "stop"), ("name", "stop")],
        ),
        4,
        data,
    );
    let err = stopping.train().unwrap_err().to_string();
    assert!(err.contains("non-finite") && err.contains("step 2"), "{err}");
    let latest = stopping.identity().checkpoint_dir.join("latest.safetensors");
    assert!(latest.is_file(), "`stop` writes a checkpoint before it stops");
}

#[test]
fn a_finite_loss_with_non_finite_gradients_is_skipped_too() {
    let root = tempfile::tempdir().unwrap();
    let mut data = samples(12);
    data[5].0[0] = 8.0;
    let mut runner = runner(config(root.path(), &[("epochs", "2")]), 4, data);
    let trained = runner.train().unwrap();
    assert_eq!(trained.state.skipped, 2, "one batch with NaN gradients per epoch");
    assert!(weights(runner.model()).iter().all(|w| w.is_finite()));
    let (_, record) = trained.results.latest().unwrap();
    assert!(record["train"]["loss"].is_finite(), "{record:?}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let root = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let config = config(
            root.path(),
            &[("epochs", "2"), ("name", name), ("data.batch_size", "5")],
        );
        let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
        let mut runner = Runner::with_identity(config, identity, Regression, linear(&Device::flex()))
            .unwrap()
            .console(Console::Off)
            .train_split("train", InMemDataset::new(samples(23)));
        runner.train().unwrap();
        weights(runner.model())
    };
    assert_eq!(run("one"), run("two"));
}

#[test]
fn the_run_dir_has_the_seeds_layout() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[("epochs", "3"), ("save_interval", "2")]);
    let mut runner = runner(config, 4, samples(16)).eval_split("val", InMemDataset::new(samples(8)));
    let trained = runner.train().unwrap();
    let dir = trained.dir.unwrap();
    for file in [
        "runner.yaml",
        "run.log",
        "results.json",
        "latest.json",
        "best.json",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    for file in ["latest.safetensors", "best.safetensors", "epoch-2.safetensors"] {
        assert!(dir.join("checkpoints").join(file).is_file(), "{file}");
    }
    assert!(!dir.join("checkpoints/epoch-1.safetensors").exists());
    assert!(!dir.join("run.lock").exists(), "the lock is released");
    let (_, latest) = trained.results.latest().unwrap();
    for key in ["loss", "lr", "time", "samples_per_s"] {
        assert!(latest["train"].contains_key(key), "train has {key}");
    }
    for key in ["loss", "time", "samples_per_s"] {
        assert!(latest["val"].contains_key(key), "val has {key}");
    }
}

/// Everything a program sets that changes what is trained is a config key: changed in code, it
/// changes the id, and `runner.yaml`'s config records it. (The builder keeps only `console`,
/// `overwrite` and `handle_signals`, which change no weight and no result.)
#[test]
fn every_training_setting_made_in_code_changes_the_id_and_is_recorded() {
    let root = tempfile::tempdir().unwrap();
    let base = config(root.path(), &[]);
    let id = |config: &Config| {
        let identity = Identity::with_experiment_id(config, "xxxxxxxxxxxxxxxx", "").unwrap();
        Runner::with_identity(config.clone(), identity, Regression, linear(&Device::flex()))
            .unwrap()
            .identity()
            .id
            .clone()
    };
    type Setting = (&'static str, fn(&mut Config), Value);
    let settings: [Setting; 2] = [
        ("batch_size", |c| c.data.batch_size = 16, Value::from(16)),
        ("shuffle", |c| c.data.shuffle = false, Value::from(false)),
    ];
    for (key, change, recorded) in settings {
        let mut changed = base.clone();
        change(&mut changed);
        assert_ne!(id(&changed), id(&base), "data.{key} set in code changes the id");
        assert_eq!(
            changed.to_value()["data"][key],
            recorded,
            "data.{key} is recorded"
        );
        // And the same key from a file or an override gives the same id as in code.
        let text = format!("data:\n  {key}: {recorded}\n");
        let path = root.path().join(format!("{key}.yaml"));
        std::fs::write(&path, text).unwrap();
        let mut from_file: Config = Config::load(Some(&path), &[]).unwrap();
        from_file.project_root = changed.project_root.clone();
        from_file.progress = changed.progress;
        from_file.optim = changed.optim.clone();
        assert_eq!(id(&from_file), id(&changed), "data.{key} from a file");
    }
}

/// A program without a `data` section of its own still gets a one-line error naming a typo in the
/// runner's `data` keys, with the closest one.
#[test]
fn a_typo_in_the_runners_data_keys_is_named() {
    let error = Config::<danling::NoSections>::load(None, &[Override::parse("data.batch_sze", "8").unwrap()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("data.batch_sze"), "{error}");
    assert!(error.contains("data.batch_size"), "{error}");
    let error =
        Config::<danling::NoSections>::load(None, &[Override::parse("data.batch_size", "0").unwrap()])
            .unwrap_err()
            .to_string();
    assert!(error.contains("data.batch_size"), "{error}");
}
