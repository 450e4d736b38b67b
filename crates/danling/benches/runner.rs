//! Runner overhead and checkpoint bandwidth.
//!
//! `cargo bench -p danling --bench runner` prints JSON lines:
//! - the MLP benchmark's work (784-512-512-10, AdamW, batch 128, 12800 samples, 3 epochs) in a bare burn
//!   loop and through the runner (metrics on, results and checkpoints written);
//! - saving a ~100M-parameter model as a checkpoint, against writing and syncing the same bytes.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark binary

use std::io::Write;
use std::time::Instant;

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use danling::data::{Tabular, Targets as TabularTargets, synthetic};
use danling::log::Console;
use danling::metrics::MetricKind;
use danling::runner::{Runner, StepOutput, Task};
use danling::{Config, Identity, Override};

#[derive(Module, Debug)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(widths: &[usize], device: &Device) -> Self {
        Self {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
        }
    }

    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = activation::relu(x);
            }
        }
        x
    }
}

type Row = (Vec<f32>, i64);

fn rows(data: &Tabular) -> Vec<Row> {
    let TabularTargets::Classes { labels, .. } = &data.targets else {
        unreachable!()
    };
    (0..data.n).map(|i| (data.row(i).to_vec(), labels[i])).collect()
}

fn collate(items: &[Row], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let n = items.len();
    let d = items[0].0.len();
    let x: Vec<f32> = items.iter().flat_map(|(x, _)| x.iter().copied()).collect();
    let y: Vec<i64> = items.iter().map(|(_, y)| *y).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, d]), device),
        Tensor::from_data(TensorData::new(y, [n]), device),
    )
}

struct Classify;

impl Task for Classify {
    type Model = Mlp;
    type Item = Row;
    type Batch = (Tensor<2>, Tensor<1, Int>);

    fn collate(&self, items: Vec<Row>, device: &Device) -> Self::Batch {
        collate(&items, device)
    }

    fn forward(&self, model: &Mlp, (x, y): &Self::Batch) -> StepOutput {
        StepOutput::classification(model.forward(x.clone()), y.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(10)
    }
}

const WIDTHS: [usize; 4] = [784, 512, 512, 10];
const EPOCHS: usize = 3;
const BATCH: usize = 128;

fn bare_loop(train: &[Row]) -> f64 {
    let device = Device::flex().autodiff();
    device.seed(1);
    let mut model = Mlp::new(&WIDTHS, &device);
    let mut optimizer = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(1e-4)
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let start = Instant::now();
    for _ in 0..EPOCHS {
        for chunk in train.chunks(BATCH) {
            let (x, y) = collate(chunk, &device);
            let loss = loss_fn.forward(model.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
        }
    }
    (EPOCHS * train.len()) as f64 / start.elapsed().as_secs_f64()
}

fn through_runner(train: Vec<Row>, val: Vec<Row>) -> (f64, f64) {
    let root = tempfile::tempdir().unwrap();
    let overrides = [
        ("project_root", root.path().to_str().unwrap()),
        ("epochs", "3"),
        ("progress", "false"),
        ("log_interval", "100000"),
        ("optim.weight_decay", "0.0001"),
    ];
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect();
    let config: Config = Config::load(None, &overrides).unwrap();
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let device = Device::flex();
    device.seed(1);
    let mut runner = Runner::with_identity(config, identity, Classify, Mlp::new(&WIDTHS, &device))
        .unwrap()
        .batch_size(BATCH)
        .console(Console::Off)
        .train_split("train", InMemDataset::new(train))
        .eval_split("val", InMemDataset::new(val));
    let start = Instant::now();
    let trained = runner.train().unwrap();
    let wall = start.elapsed().as_secs_f64();
    let per_epoch: Vec<f64> = trained
        .results
        .iter()
        .map(|(_, r)| r["train"]["samples_per_s"])
        .collect();
    let train_samples_per_s = per_epoch.iter().sum::<f64>() / per_epoch.len() as f64;
    (train_samples_per_s, wall)
}

fn checkpoint_bandwidth() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let model = Mlp::new(&[10_000, 10_000], &device); // 100M weights + 10k biases
    // burn initialises parameters lazily: draw them now so that the save does not pay for it.
    let _ = model.layers[0].weight.val().into_data();
    let bytes = 4.0 * (10_000.0 * 10_000.0 + 10_000.0);
    let start = Instant::now();
    danling::checkpoint::save_model(&model, &dir.path().join("model.safetensors")).unwrap();
    let save = start.elapsed().as_secs_f64();
    let raw: Vec<u8> = vec![7u8; bytes as usize];
    let start = Instant::now();
    let mut file = std::fs::File::create(dir.path().join("raw.bin")).unwrap();
    file.write_all(&raw).unwrap();
    file.sync_all().unwrap();
    let write = start.elapsed().as_secs_f64();
    println!(
        r#"{{"case": "checkpoint_100M", "save_s": {save:.3}, "save_mb_per_s": {:.0}, "raw_write_s": {write:.3}, "raw_mb_per_s": {:.0}, "ratio": {:.2}}}"#,
        bytes / 1e6 / save,
        bytes / 1e6 / write,
        write / save
    );
}

fn main() {
    let (train, val) = synthetic(12_800, 2_560, 784, 10, 1016);
    let (train, val) = (rows(&train), rows(&val));
    let bare = bare_loop(&train);
    let (runner, wall) = through_runner(train, val);
    println!(
        r#"{{"case": "mlp_train", "bare_samples_per_s": {bare:.0}, "runner_samples_per_s": {runner:.0}, "overhead_pct": {:.1}, "runner_wall_s": {wall:.2}}}"#,
        (bare / runner - 1.0) * 100.0
    );
    checkpoint_bandwidth();
}
