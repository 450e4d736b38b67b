//! A user's program, outside the crate, that plugs everything it can into the runner: a small CNN
//! (convolution, BatchNorm2d, dropout, as burn's MNIST example), a metric of its own (top-2
//! accuracy), a callback of its own that logs a scalar every few steps and stops the run at a step it
//! chooses, an SGD with Nesterov momentum that it builds itself, and an EMA of the weights.
//!
//! It checks that all of it resumes exactly from a mid-epoch checkpoint and after the callback's
//! stop, and (with `--features mpi`, where this binary re-runs itself under `mpiexec -n 2`) that
//! the metric merges over two ranks as one process computes it, that every rank holds the same
//! average, and that a two-rank resume is exact too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
#[cfg(feature = "mpi")]
use std::path::PathBuf;

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use danling::config::{EmaConfig, OptimKind};
use danling::log::Console;
use danling::metrics::{Metric, MetricBatch, MetricError, MetricKind, MetricSet, TargetSlice};
use danling::runner::callback::Step;
use danling::runner::{Callback, CallbackError, Control, Launched, Platform, Runner, StepOutput, Task};
use danling::{Config, Identity, Override};
use serde_json::Value;

use common::stable_results;

/// burn's RNG is process-wide: one training at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CLASSES: usize = 4;
const SIDE: usize = 6;

/// A 6×6 grey image whose bright quadrant is its class, and the class.
#[derive(Debug, Clone)]
struct Image {
    pixels: [f32; SIDE * SIDE],
    label: i64,
}

fn images(n: usize, offset: usize) -> Vec<Image> {
    (offset..offset + n)
        .map(|i| {
            let label = (i % CLASSES) as i64;
            let pixels = std::array::from_fn(|k| {
                let (row, col) = (k / SIDE, k % SIDE);
                let quadrant = (row / 3) * 2 + col / 3;
                let noise = ((i * 37 + k * 11) % 17) as f32 / 17.0 - 0.5;
                noise + if quadrant == label as usize { 1.0 } else { 0.0 }
            });
            Image { pixels, label }
        })
        .collect()
}

/// Conv → BatchNorm2d → ReLU → dropout → Linear, as burn's MNIST model in small.
#[derive(Module, Debug)]
struct Cnn {
    conv: Conv2d,
    norm: BatchNorm,
    dropout: Dropout,
    output: Linear,
}

impl Cnn {
    fn new(device: &Device) -> Self {
        device.seed(11);
        Self {
            conv: Conv2dConfig::new([1, 4], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            norm: BatchNormConfig::new(4).init(device),
            dropout: DropoutConfig::new(0.2).init(),
            output: LinearConfig::new(4 * SIDE * SIDE, CLASSES).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let [n, ..] = images.dims();
        let x = activation::relu(self.norm.forward(self.conv.forward(images)));
        self.output
            .forward(self.dropout.forward(x).reshape([n, 4 * SIDE * SIDE]))
    }
}

struct Classify;

impl Task for Classify {
    type Model = Cnn;
    type Item = Image;
    type Batch = (Tensor<4>, Tensor<1, Int>);

    fn collate(&self, items: Vec<Image>, device: &Device) -> Self::Batch {
        let n = items.len();
        let pixels: Vec<f32> = items.iter().flat_map(|i| i.pixels).collect();
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        (
            Tensor::from_data(TensorData::new(pixels, [n, 1, SIDE, SIDE]), device),
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }

    fn forward(&self, model: &Cnn, (images, labels): &Self::Batch) -> StepOutput {
        StepOutput::classification(model.forward(images.clone()), labels.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(CLASSES)
    }

    fn metric_set(&self) -> MetricSet {
        MetricSet::from(self.metrics()).with(Top2::default())
    }
}

/// The program's metric: the share of samples whose class is among the two highest outputs.
#[derive(Debug, Default)]
struct Top2 {
    hits: u64,
    seen: u64,
}

impl Metric for Top2 {
    fn names(&self) -> Vec<String> {
        vec!["top2".into()]
    }

    fn update(&mut self, batch: &MetricBatch<'_>) {
        let TargetSlice::Labels(labels) = batch.targets else {
            return;
        };
        for (row, &label) in batch.outputs.chunks(batch.width).zip(labels) {
            let above = row.iter().filter(|&&v| v > row[label as usize]).count();
            self.hits += u64::from(above < 2);
            self.seen += 1;
        }
    }

    fn compute(&self) -> Vec<f64> {
        vec![self.hits as f64 / self.seen.max(1) as f64]
    }

    fn state(&self) -> Value {
        serde_json::json!([self.hits, self.seen])
    }

    fn merge(&mut self, state: &Value) -> Result<(), MetricError> {
        let [hits, seen]: [u64; 2] = serde_json::from_value(state.clone())?;
        self.hits += hits;
        self.seen += seen;
        Ok(())
    }
}

/// The program's callback: every `every` steps it records the step's learning rate times the steps
/// it has counted (a scalar that depends on its saved state), and it stops the run at `stop_at`.
struct Probe {
    every: u64,
    stop_at: Option<u64>,
    counted: u64,
}

impl Probe {
    fn new(stop_at: Option<u64>) -> Self {
        Self {
            every: 3,
            stop_at,
            counted: 0,
        }
    }
}

impl Callback<Cnn> for Probe {
    fn name(&self) -> String {
        "probe".into()
    }

    fn on_step(&mut self, step: &Step<'_, Cnn>, control: &mut Control) {
        self.counted += 1;
        if step.step.is_multiple_of(self.every) {
            control.record("train", "probe", step.lr * self.counted as f64);
        }
        if Some(step.step) == self.stop_at {
            control.stop(format!("the probe stops at step {}", step.step));
        }
    }

    fn state(&self) -> Option<Value> {
        Some(serde_json::json!(self.counted))
    }

    fn load_state(&mut self, state: &Value) -> Result<(), CallbackError> {
        self.counted = serde_json::from_value(state.clone())?;
        Ok(())
    }
}

/// SGD with Nesterov momentum, which the program builds (again on every resume).
fn nesterov() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
        }))
        .init()
}

const TRAIN: usize = 30;
const EVAL: usize = 13;

fn config(root: &Path, name: &str, extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("project_root", root.to_str().unwrap()),
        ("name", name),
        ("progress", "false"),
        ("log", "false"),
        ("epochs", "2"),
        ("save_steps", "1"),
        ("data.batch_size", "4"),
        ("optim.lr", "0.03"),
        ("sched.type", "cosine"),
        ("score_name", "ema_top2"),
        ("device", "flex"),
    ];
    pairs.extend_from_slice(extra);
    let overrides: Vec<Override> = pairs
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect();
    let mut config: Config = Config::load(None, &overrides).unwrap();
    config.optim.kind = OptimKind::Custom;
    config.optim.custom = Some(serde_json::json!({"sgd": {"momentum": 0.9, "nesterov": true}}));
    config.ema = Some(EmaConfig { decay: 0.8 });
    config
}

/// What a run ends with: the weights and the average in memory (this rank's), the final `latest`'s
/// model and average tensors and the results files without wall-clock values (rank 0's).
#[derive(Debug, PartialEq)]
struct Outcome {
    weights: Vec<u32>,
    average: Vec<u32>,
    saved: Vec<(String, Vec<u8>)>,
    results: Value,
    step: u64,
}

fn bits(values: Vec<f32>) -> Vec<u32> {
    values.into_iter().map(f32::to_bits).collect()
}

fn train<P: Platform>(
    platform: P,
    config: Config,
    stop_at: Option<u64>,
) -> (Outcome, Runner<Classify, danling::NoSections, P>) {
    let model = Cnn::new(platform.device());
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let is_main = platform.is_main();
    let mut runner = Runner::with_platform(config, identity, platform, Classify, model)
        .unwrap()
        .console(Console::Off)
        .optimizer(nesterov)
        .callback(Probe::new(stop_at))
        .train_split("train", InMemDataset::new(images(TRAIN, 0)))
        .eval_split("val", InMemDataset::new(images(EVAL, 500)));
    let trained = runner.train().unwrap();
    let dir = runner.identity().dir.clone();
    let (saved, results) = match is_main {
        true => (
            saved_tensors(&dir.join("checkpoints/latest.safetensors")),
            stable_results(&dir),
        ),
        false => (Vec::new(), Value::Null),
    };
    let outcome = Outcome {
        weights: bits(danling::runner::parameters_to_vec(runner.model())),
        average: bits(danling::runner::parameters_to_vec(runner.ema_model().unwrap())),
        saved,
        results,
        step: trained.state.step,
    };
    (outcome, runner)
}

/// The `model.*` and `ema.*` tensors of a checkpoint.
fn saved_tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("model.") || name.starts_with("ema."))
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    tensors.sort();
    tensors
}

fn flex() -> Launched {
    Launched::new(danling::Device::Flex, danling::Precision::F32).unwrap()
}

/// The straight run, checked for what each piece adds; resumed from each mid-epoch `step-k` it must
/// end the same. `platform` makes each run's platform.
fn resumes_exactly<P: Platform>(root: &Path, label: &str, platform: impl Fn() -> P, from: &[u64]) -> Outcome {
    let (straight, runner) = train(platform(), config(root, label, &[]), None);
    let dir = runner.identity().dir.clone();
    drop(runner);
    for &k in from {
        let copy = root.join(format!("{label}-from-{k}.safetensors"));
        if platform().is_main() {
            std::fs::copy(dir.join(format!("checkpoints/step-{k}.safetensors")), &copy).unwrap();
        }
        platform().barrier().unwrap();
        let (resumed, _) = train(
            platform(),
            config(root, label, &[("checkpoint", copy.to_str().unwrap())]),
            None,
        );
        assert_eq!(
            resumed.weights, straight.weights,
            "{label}: weights, resumed from step {k}"
        );
        assert_eq!(
            resumed.average, straight.average,
            "{label}: the average, resumed from step {k}"
        );
        assert_eq!(
            resumed.saved, straight.saved,
            "{label}: latest's tensors, resumed from step {k}"
        );
        assert_eq!(
            resumed.results, straight.results,
            "{label}: results, resumed from step {k}"
        );
    }
    straight
}

#[test]
fn a_users_metric_callback_optimizer_and_average_resume_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    // 30 samples in batches of 4: 8 steps an epoch, the last of 2 samples; 16 in all.
    let straight = resumes_exactly(root.path(), "user", flex, &[3, 5, 8, 11, 15]);
    assert_eq!(straight.step, 16);
    let results = &straight.results["results.json"]["results"];
    for epoch in ["1", "2"] {
        let (train, val) = (&results[epoch]["train"], &results[epoch]["val"]);
        for name in ["top2", "accuracy", "ema_top2", "ema_accuracy", "ema_loss"] {
            assert!(val[name].is_number(), "val.{name} in epoch {epoch}: {val}");
        }
        assert!(train["top2"].is_number(), "{train}");
        assert!(train["probe"].as_f64().unwrap() > 0.0, "{train}");
    }
    // `ema_top2` scores the run, higher is better (the metric's own direction).
    let scores: Vec<f64> = ["1", "2"]
        .iter()
        .map(|e| results[*e]["val"]["ema_top2"].as_f64().unwrap())
        .collect();
    let best = if scores[0] > scores[1] { 1 } else { 2 };
    assert_eq!(straight.results["best.json"]["index"], best, "{scores:?}");

    // Stopped by the callback mid-epoch, then resumed without the stop: the same run.
    let (stopped, runner) = train(flex(), config(root.path(), "stopped", &[]), Some(6));
    assert_eq!(stopped.step, 6);
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(runner.identity().dir.join("status.json")).unwrap())
            .unwrap();
    assert_eq!(status["status"], "stopped");
    assert_eq!(status["reason"], "the probe stops at step 6");
    drop(runner);
    let (resumed, _) = train(
        flex(),
        config(root.path(), "stopped", &[("resume", "true")]),
        None,
    );
    assert_eq!(resumed.weights, straight.weights);
    assert_eq!(resumed.average, straight.average);
    assert_eq!(resumed.saved, straight.saved);
    let strip_name = |mut value: Value| {
        for doc in value.as_object_mut().unwrap().values_mut() {
            doc.as_object_mut().unwrap().remove("name");
        }
        value
    };
    assert_eq!(strip_name(resumed.results), strip_name(straight.results.clone()));
}

/// The same program on two MPI ranks: this test binary, started by `mpiexec -n 2`, runs
/// [`two_ranks_child`] on each rank.
#[cfg(feature = "mpi")]
#[test]
fn on_two_ranks_the_metric_merges_the_average_agrees_and_resume_is_exact() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("mpiexec")
        .args(["-n", "2", "--oversubscribe", "--bind-to", "none"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "two_ranks_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1")
        .env("DANLING_OPEN_ROOT", root.path())
        .output()
        .expect("mpiexec runs (install openmpi-bin)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the two-rank runs: {text}");
    assert_eq!(
        text.matches("test result: ok. 1 passed").count(),
        2,
        "both ranks: {text}"
    );
}

/// One rank's part of the test above; run only under its `mpiexec`.
#[cfg(feature = "mpi")]
#[test]
#[ignore = "run by on_two_ranks_the_metric_merges_the_average_agrees_and_resume_is_exact under mpiexec"]
fn two_ranks_child() {
    let root = PathBuf::from(std::env::var_os("DANLING_OPEN_ROOT").expect("started by the parent test"));
    let platform = flex();
    assert_eq!(platform.world_size(), 2, "started by mpiexec -n 2");
    // 30 samples in global batches of 8: 4 steps an epoch, the last of 6 samples.
    let straight = resumes_exactly(&root, "ranks", || &platform, &[2, 3, 6]);
    assert_eq!(straight.step, 8);

    // Every rank holds the same weights and the same average.
    let mine = serde_json::to_vec(&(&straight.weights, &straight.average)).unwrap();
    let all = platform.all_gather(mine).unwrap();
    assert_eq!(
        all[0], all[1],
        "rank 0 and rank 1 hold the same weights and average"
    );

    // The merged metric (and the average's) is one process's over the whole split.
    let (_, mut two) = train(&platform, config(&root, "merge", &[]), None);
    let merged = two.evaluate(&["val"]).unwrap();
    let local = danling::runner::Local::new(danling::Device::Flex, danling::Precision::F32).unwrap();
    let mut one = Runner::with_platform(
        config(&root, "merge-one", &[]),
        two.identity().clone(),
        local,
        Classify,
        two.model().valid(),
    )
    .unwrap()
    .console(Console::Off)
    .eval_split("val", InMemDataset::new(images(EVAL, 500)));
    let whole = one.evaluate(&["val"]).unwrap();
    assert_eq!(
        merged["val"]["top2"], whole["val"]["top2"],
        "{merged:?} vs {whole:?}"
    );
    assert_eq!(merged["val"]["accuracy"], whole["val"]["accuracy"]);
    danling::runner::end_world(0, true);
}
