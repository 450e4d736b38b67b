//! Exact resume for every kind of burn module, as a user's model would hold them: BatchNorm's running
//! statistics (over features and over a convolution's channels), dropout, an embedding, LayerNorm
//! and GroupNorm, a GRU, multi-head attention with dropout, and a frozen layer.
//!
//! For each model and each `accum_steps` of 1, 2 and 3, a straight run writes a checkpoint after
//! every optimizer step (mid-epoch ones included, and an epoch whose last batch is short); the run
//! resumed from each of them must end bit-identical to the straight one: every model tensor and the
//! scheduler of the final checkpoint, the weights in memory, and every value of `results.json`,
//! `latest.json` and `best.json` but the wall-clock ones.
//!
//! On one process here; on two MPI ranks with `cargo test -p danling-cli --features mpi --test
//! stateful`, where each rank's BatchNorm statistics come from its own shard of the batch, and rank
//! 0's are every rank's after each step (as PyTorch DDP's `broadcast_buffers`), so that rank 0's
//! checkpoint is every rank's state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Embedding, EmbeddingConfig, GroupNorm,
    GroupNormConfig, Gru, GruConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use danling::log::Console;
use danling::metrics::{Metric, MetricBatch, MetricError, MetricKind, MetricSet, TargetSlice};
use danling::runner::{Launched, Platform, Runner, StepOutput, Task, parameters_to_vec};
use danling::{Config, Identity, Override};
use serde_json::Value;

use common::{model_tensors, stable_results};

/// burn's RNG is process-wide: one training at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CLASSES: usize = 3;
const FEATURES: usize = 16;

/// One sample: 16 features (also read as a 4×4 image and as a sequence of 4 steps of 4), 4 tokens
/// and a class.
#[derive(Debug, Clone)]
struct Sample {
    x: [f32; FEATURES],
    tokens: [i64; 4],
    label: i64,
}

fn samples(n: usize, offset: usize) -> Vec<Sample> {
    (offset..offset + n)
        .map(|i| {
            let label = (i % CLASSES) as i64;
            let x = std::array::from_fn(|k| {
                let jitter = ((i * 31 + k * 17) % 13) as f32 / 13.0 - 0.5;
                jitter + if k % CLASSES == label as usize { 1.0 } else { 0.0 }
            });
            let tokens = std::array::from_fn(|k| ((i * 7 + k * 3 + label as usize * 2) % 10) as i64);
            Sample { x, tokens, label }
        })
        .collect()
}

/// The batch every model reads its part of.
struct Batch {
    flat: Tensor<2>,
    image: Tensor<4>,
    sequence: Tensor<3>,
    tokens: Tensor<2, Int>,
    labels: Tensor<1, Int>,
}

/// A model of the zoo: built from a device, logits from a batch.
trait Zoo: Module + Sized + 'static {
    fn new(device: &Device) -> Self;
    fn logits(&self, batch: &Batch) -> Tensor<2>;
}

struct Classify<M>(PhantomData<fn() -> M>);

impl<M: Zoo> Task for Classify<M> {
    type Model = M;
    type Item = Sample;
    type Batch = Batch;

    fn collate(&self, items: Vec<Sample>, device: &Device) -> Batch {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|s| s.x).collect();
        let tokens: Vec<i64> = items.iter().flat_map(|s| s.tokens).collect();
        let labels: Vec<i64> = items.iter().map(|s| s.label).collect();
        let flat = Tensor::<2>::from_data(TensorData::new(x, [n, FEATURES]), device);
        Batch {
            image: flat.clone().reshape([n, 1, 4, 4]),
            sequence: flat.clone().reshape([n, 4, 4]),
            flat,
            tokens: Tensor::from_data(TensorData::new(tokens, [n, 4]), device),
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }

    fn forward(&self, model: &M, batch: &Batch) -> StepOutput {
        StepOutput::classification(model.logits(batch), batch.labels.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(CLASSES)
    }

    /// The built-in five and a metric of the program's own, whose state must resume and merge too.
    fn metric_set(&self) -> MetricSet {
        MetricSet::from(self.metrics()).with(Top2::default())
    }
}

/// A user's metric: the fraction of samples whose class is among the two highest outputs.
#[derive(Debug, Default)]
struct Top2 {
    hits: u64,
    seen: u64,
}

impl Metric for Top2 {
    fn names(&self) -> Vec<String> {
        vec!["top2_accuracy".into()]
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
        vec![self.hits as f64 / self.seen as f64]
    }

    fn state(&self) -> Value {
        serde_json::json!({"hits": self.hits, "seen": self.seen})
    }

    fn merge(&mut self, state: &Value) -> Result<(), MetricError> {
        #[derive(serde::Deserialize)]
        struct State {
            hits: u64,
            seen: u64,
        }
        let state: State = serde_json::from_value(state.clone())?;
        self.hits += state.hits;
        self.seen += state.seen;
        Ok(())
    }
}

/// Linear → BatchNorm1d → ReLU → Linear.
#[derive(Module, Debug)]
struct BatchNorm1d {
    hidden: Linear,
    norm: BatchNorm,
    output: Linear,
}

impl Zoo for BatchNorm1d {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(FEATURES, 12).init(device),
            norm: BatchNormConfig::new(12).init(device),
            output: LinearConfig::new(12, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let x = self.norm.forward(self.hidden.forward(batch.flat.clone()));
        self.output.forward(activation::relu(x))
    }
}

/// Conv2d → BatchNorm2d → ReLU → Linear, as burn's MNIST example.
#[derive(Module, Debug)]
struct BatchNorm2d {
    conv: Conv2d,
    norm: BatchNorm,
    output: Linear,
}

impl Zoo for BatchNorm2d {
    fn new(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([1, 4], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            norm: BatchNormConfig::new(4).init(device),
            output: LinearConfig::new(4 * 16, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let x = activation::relu(self.norm.forward(self.conv.forward(batch.image.clone())));
        self.output.forward(x.flatten(1, 3))
    }
}

/// Linear → ReLU → Dropout(0.3) → Linear.
#[derive(Module, Debug)]
struct WithDropout {
    hidden: Linear,
    dropout: Dropout,
    output: Linear,
}

impl Zoo for WithDropout {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(FEATURES, 12).init(device),
            dropout: DropoutConfig::new(0.3).init(),
            output: LinearConfig::new(12, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let x = self
            .dropout
            .forward(activation::relu(self.hidden.forward(batch.flat.clone())));
        self.output.forward(x)
    }
}

/// Embedding of the tokens, averaged → Linear.
#[derive(Module, Debug)]
struct WithEmbedding {
    embedding: Embedding,
    output: Linear,
}

impl Zoo for WithEmbedding {
    fn new(device: &Device) -> Self {
        Self {
            embedding: EmbeddingConfig::new(10, 6).init(device),
            output: LinearConfig::new(6, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let embedded = self.embedding.forward(batch.tokens.clone()); // [n, 4, 6]
        let [n, _, width] = embedded.dims();
        self.output.forward(embedded.mean_dim(1).reshape([n, width]))
    }
}

/// Linear → LayerNorm → GroupNorm (2 groups) → ReLU → Linear.
#[derive(Module, Debug)]
struct WithNorms {
    hidden: Linear,
    layer: LayerNorm,
    group: GroupNorm,
    output: Linear,
}

impl Zoo for WithNorms {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(FEATURES, 8).init(device),
            layer: LayerNormConfig::new(8).init(device),
            group: GroupNormConfig::new(2, 8).init(device),
            output: LinearConfig::new(8, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let x = self.layer.forward(self.hidden.forward(batch.flat.clone()));
        self.output.forward(activation::relu(self.group.forward(x)))
    }
}

/// A GRU over the 4 steps; the last hidden state → Linear.
#[derive(Module, Debug)]
struct Recurrent {
    gru: Gru,
    output: Linear,
}

impl Zoo for Recurrent {
    fn new(device: &Device) -> Self {
        Self {
            gru: GruConfig::new(4, 6, true).init(device),
            output: LinearConfig::new(6, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let states = self.gru.forward(batch.sequence.clone(), None); // [n, 4, 6]
        let [n, steps, width] = states.dims();
        let last = states
            .slice([0..n, steps - 1..steps, 0..width])
            .reshape([n, width]);
        self.output.forward(last)
    }
}

/// Linear → self-attention (2 heads, dropout 0.2 on the weights), averaged → Linear.
#[derive(Module, Debug)]
struct Attention {
    input: Linear,
    attention: MultiHeadAttention,
    output: Linear,
}

impl Zoo for Attention {
    fn new(device: &Device) -> Self {
        Self {
            input: LinearConfig::new(4, 8).init(device),
            attention: MultiHeadAttentionConfig::new(8, 2).with_dropout(0.2).init(device),
            output: LinearConfig::new(8, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        let x = self.input.forward(batch.sequence.clone());
        let context = self.attention.forward(MhaInput::self_attn(x)).context; // [n, 4, 8]
        let [n, _, width] = context.dims();
        self.output.forward(context.mean_dim(1).reshape([n, width]))
    }
}

/// A frozen (non-trainable) Linear → ReLU → a trained Linear.
#[derive(Module, Debug)]
struct Frozen {
    frozen: Linear,
    output: Linear,
}

impl Zoo for Frozen {
    fn new(device: &Device) -> Self {
        Self {
            frozen: LinearConfig::new(FEATURES, 12).init(device).no_grad(),
            output: LinearConfig::new(12, CLASSES).init(device),
        }
    }
    fn logits(&self, batch: &Batch) -> Tensor<2> {
        self.output
            .forward(activation::relu(self.frozen.forward(batch.flat.clone())))
    }
}

/// 26 train samples in batches of 4: 7 batches an epoch, the last of 2 (on two ranks, 4 global
/// batches of 8, the last of 2).
const TRAIN: usize = 26;
const BATCH: usize = 4;
const EPOCHS: usize = 2;

fn config(root: &Path, name: &str, accum: usize, checkpoint: Option<&Path>) -> Config {
    let mut pairs = vec![
        ("project_root".to_owned(), root.display().to_string()),
        ("name".to_owned(), name.to_owned()),
        ("progress".to_owned(), "false".to_owned()),
        ("log".to_owned(), "false".to_owned()),
        ("epochs".to_owned(), EPOCHS.to_string()),
        ("accum_steps".to_owned(), accum.to_string()),
        ("save_steps".to_owned(), "1".to_owned()),
        ("data.batch_size".to_owned(), BATCH.to_string()),
        ("optim.lr".to_owned(), "0.02".to_owned()),
        ("sched.type".to_owned(), "cosine".to_owned()),
        ("score_name".to_owned(), "top2_accuracy".to_owned()),
        ("device".to_owned(), "flex".to_owned()),
    ];
    if let Some(path) = checkpoint {
        pairs.push(("checkpoint".to_owned(), path.display().to_string()));
    }
    let overrides: Vec<Override> = pairs
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect();
    Config::load(None, &overrides).unwrap()
}

/// What a run ends with: the final checkpoint's tensors, its results files, and this rank's
/// parameters and buffers in memory.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// `model.*` tensors of the final `latest` (rank 0 only; empty elsewhere).
    tensors: Vec<(String, Vec<u8>)>,
    /// The scheduler's state in the final `latest`.
    scheduler: Vec<u8>,
    /// `results.json`, `latest.json` and `best.json` without wall-clock values (rank 0 only).
    results: Value,
    /// Every float tensor of the model in memory, on this rank.
    memory: Vec<u32>,
    step: u64,
}

fn train<M: Zoo, P: Platform>(platform: P, config: Config) -> (Outcome, PathBuf) {
    let device = platform.device().clone();
    device.seed(7);
    let model = M::new(&device);
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let is_main = platform.is_main();
    let mut runner = Runner::with_platform(config, identity, platform, Classify::<M>(PhantomData), model)
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(samples(TRAIN, 0)))
        .eval_split("val", InMemDataset::new(samples(10, 100)));
    let trained = runner.train().unwrap();
    let dir = runner.identity().dir.clone();
    let latest = dir.join("checkpoints/latest.safetensors");
    let (tensors, scheduler, results) = match is_main {
        true => (
            model_tensors(&latest),
            scheduler_state(&latest),
            stable_results(&dir),
        ),
        false => (Vec::new(), Vec::new(), Value::Null),
    };
    let memory = parameters_to_vec(runner.model())
        .into_iter()
        .map(f32::to_bits)
        .collect();
    let outcome = Outcome {
        tensors,
        scheduler,
        results,
        memory,
        step: trained.state.step,
    };
    (outcome, dir)
}

fn scheduler_state(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("scheduler."))
        .flat_map(|(_, view)| view.data().to_vec())
        .collect()
}

/// The straight run, then a run resumed from each of its step checkpoints, for `accum_steps` 1 to
/// 3: every one must end as the straight run did. `platform` makes each run's platform.
fn resumes_exactly<M: Zoo, P: Platform>(label: &str, root: &Path, platform: impl Fn() -> P) {
    for accum in 1..=3 {
        let name = format!("{label}-accum{accum}");
        let (straight, dir) = train::<M, P>(platform(), config(root, &name, accum, None));
        let global = BATCH * platform().world_size();
        let steps = (TRAIN.div_ceil(global).div_ceil(accum) * EPOCHS) as u64;
        assert_eq!(straight.step, steps, "{name}: steps of the straight run");
        for k in 1..=steps {
            // A copy, outside the run dir that the resumed run writes into.
            let copy = root.join(format!("{name}-from-{k}.safetensors"));
            if platform().is_main() {
                std::fs::copy(dir.join(format!("checkpoints/step-{k}.safetensors")), &copy).unwrap();
            }
            platform().barrier().unwrap();
            let (resumed, _) = train::<M, P>(platform(), config(root, &name, accum, Some(&copy)));
            assert!(
                resumed == straight,
                "{name}: the run resumed from step {k} differs from the straight run: {}",
                difference(&straight, &resumed)
            );
        }
    }
}

/// The first thing that differs, for the failure message.
fn difference(straight: &Outcome, resumed: &Outcome) -> String {
    for ((name, a), (_, b)) in straight.tensors.iter().zip(&resumed.tensors) {
        if a != b {
            let floats = |bytes: &[u8]| -> Vec<f32> {
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let largest = floats(a)
                .iter()
                .zip(floats(b))
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            return format!("tensor {name} (largest difference {largest:e})");
        }
    }
    if straight.results != resumed.results {
        return format!(
            "results: straight {} vs resumed {}",
            straight.results, resumed.results
        );
    }
    if straight.memory != resumed.memory {
        return "the weights in memory".to_owned();
    }
    format!("scheduler or step ({} vs {})", straight.step, resumed.step)
}

fn flex() -> Launched {
    Launched::new(danling::Device::Flex, danling::Precision::F32).unwrap()
}

macro_rules! one_process {
    ($($test:ident: $model:ty,)*) => {$(
        #[test]
        fn $test() {
            let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let root = tempfile::tempdir().unwrap();
            resumes_exactly::<$model, Launched>(stringify!($test), root.path(), flex);
        }
    )*};
}

one_process! {
    batch_norm_1d_resumes_exactly_from_every_step: BatchNorm1d,
    batch_norm_2d_over_a_conv_resumes_exactly_from_every_step: BatchNorm2d,
    dropout_resumes_exactly_from_every_step: WithDropout,
    embedding_resumes_exactly_from_every_step: WithEmbedding,
    layer_and_group_norm_resume_exactly_from_every_step: WithNorms,
    gru_resumes_exactly_from_every_step: Recurrent,
    attention_with_dropout_resumes_exactly_from_every_step: Attention,
    a_frozen_layer_resumes_exactly_from_every_step: Frozen,
}

/// A program's own metric is a peer of the built-in ones: in every results file, and the score,
/// whose mode (higher is better) comes from the metric.
#[test]
fn a_programs_metric_reaches_every_results_file_and_scores_the_run() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = tempfile::tempdir().unwrap();
    let mut config = config(root.path(), "top2", 1, None);
    config.epochs = Some(4);
    config.optim.lr = 0.003;
    let (outcome, dir) = train::<BatchNorm1d, _>(flex(), config);
    let results = &outcome.results["results.json"]["results"];
    let scores: Vec<f64> = (1..=4)
        .map(|epoch| {
            results[epoch.to_string()]["val"]["top2_accuracy"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    // Higher is better, ties to the later epoch.
    let best = (0..4).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap() + 1;
    assert_eq!(outcome.results["best.json"]["index"], best, "{scores:?}");
    assert!(outcome.results["latest.json"]["train"]["top2_accuracy"].is_number());
    assert!(dir.join("results.json").is_file());
}

/// The same on two MPI ranks: this test binary, started by `mpiexec -n 2`, runs
/// [`two_ranks_child`] on each rank.
#[cfg(feature = "mpi")]
#[test]
fn every_module_resumes_exactly_on_two_ranks() {
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
        .env("DANLING_STATEFUL_ROOT", root.path())
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
        "both ranks ran every model: {text}"
    );
}

/// One rank's part of [`every_module_resumes_exactly_on_two_ranks`]; run only under its `mpiexec`.
#[cfg(feature = "mpi")]
#[test]
#[ignore = "run by every_module_resumes_exactly_on_two_ranks under mpiexec"]
fn two_ranks_child() {
    let root = PathBuf::from(std::env::var_os("DANLING_STATEFUL_ROOT").expect("started by the parent test"));
    // One MPI world per process: every run borrows it.
    let platform = flex();
    assert_eq!(platform.world_size(), 2, "started by mpiexec -n 2");
    let shared = || &platform;
    resumes_exactly::<BatchNorm1d, _>("bn1d", &root, shared);
    resumes_exactly::<BatchNorm2d, _>("bn2d", &root, shared);
    resumes_exactly::<WithDropout, _>("dropout", &root, shared);
    resumes_exactly::<WithEmbedding, _>("embedding", &root, shared);
    resumes_exactly::<WithNorms, _>("norms", &root, shared);
    resumes_exactly::<Recurrent, _>("gru", &root, shared);
    resumes_exactly::<Attention, _>("attention", &root, shared);
    resumes_exactly::<Frozen, _>("frozen", &root, shared);
    evaluation_merges_the_programs_metric_over_ranks(&root, &platform);
    danling::runner::end_world(0, true);
}

/// On two ranks each evaluates its shard; the program's metric, merged, equals one process's
/// evaluation of the same weights over the whole split.
#[cfg(feature = "mpi")]
fn evaluation_merges_the_programs_metric_over_ranks(root: &Path, platform: &Launched) {
    let config = config(root, "merge", 1, None);
    let device = platform.device().clone();
    device.seed(7);
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let task = || Classify::<BatchNorm1d>(PhantomData);
    let mut two = Runner::with_platform(
        config.clone(),
        identity.clone(),
        platform,
        task(),
        BatchNorm1d::new(&device),
    )
    .unwrap()
    .console(Console::Off)
    .train_split("train", InMemDataset::new(samples(TRAIN, 0)))
    .eval_split("val", InMemDataset::new(samples(11, 100)));
    two.train().unwrap();
    let merged = two.evaluate(&["val"]).unwrap();
    let local = danling::runner::Local::new(danling::Device::Flex, danling::Precision::F32).unwrap();
    let mut one = Runner::with_platform(config, identity, local, task(), two.model().valid())
        .unwrap()
        .console(Console::Off)
        .eval_split("val", InMemDataset::new(samples(11, 100)));
    let whole = one.evaluate(&["val"]).unwrap();
    let (two_ranks, one_process) = (&merged["val"], &whole["val"]);
    assert_eq!(
        two_ranks["top2_accuracy"], one_process["top2_accuracy"],
        "{two_ranks:?} vs {one_process:?}"
    );
    assert_eq!(
        two_ranks["accuracy"], one_process["accuracy"],
        "{two_ranks:?} vs {one_process:?}"
    );
}
