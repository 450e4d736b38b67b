//! What the runner's integration tests share: a small classifier with dropout, its data and config,
//! and comparisons of runs that leave out the wall-clock values.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use danling::log::Console;
use danling::metrics::MetricKind;
use danling::results::Results;
use danling::runner::{Runner, StepOutput, Task};
use danling::{Config, Identity, Override};

#[derive(Module, Debug)]
pub struct Net {
    pub hidden: Linear,
    pub dropout: Dropout,
    pub output: Linear,
}

impl Net {
    pub fn new(device: &Device) -> Self {
        device.seed(5);
        Self {
            hidden: LinearConfig::new(4, 16).init(device),
            dropout: DropoutConfig::new(0.3).init(),
            output: LinearConfig::new(16, 3).init(device),
        }
    }
}

/// Four features and a class per row, as a batch of `[n, 4]` inputs and `[n]` labels.
pub fn collate(items: Vec<([f32; 4], i64)>, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let n = items.len();
    let x: Vec<f32> = items.iter().flat_map(|(x, _)| *x).collect();
    let y: Vec<i64> = items.iter().map(|(_, y)| *y).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, 4]), device),
        Tensor::from_data(TensorData::new(y, [n]), device),
    )
}

pub struct Classify;

impl Task for Classify {
    type Model = Net;
    type Item = ([f32; 4], i64);
    type Batch = (Tensor<2>, Tensor<1, Int>);

    fn collate(&self, items: Vec<Self::Item>, device: &Device) -> Self::Batch {
        collate(items, device)
    }

    fn forward(&self, model: &Net, (x, y): &Self::Batch) -> StepOutput {
        let hidden = model
            .dropout
            .forward(activation::relu(model.hidden.forward(x.clone())));
        StepOutput::classification(model.output.forward(hidden), y.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(3)
    }
}

pub fn data(n: usize, offset: usize) -> Vec<([f32; 4], i64)> {
    (offset..offset + n)
        .map(|i| {
            let class = (i % 3) as i64;
            let jitter = |k: usize| ((i * 31 + k * 17) % 11) as f32 / 11.0 - 0.5;
            (
                [
                    class as f32 + jitter(0),
                    jitter(1),
                    1.0 - class as f32 + jitter(2),
                    jitter(3),
                ],
                class,
            )
        })
        .collect()
}

pub fn config(root: &Path, extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("project_root", root.to_str().unwrap()),
        ("progress", "false"),
        ("epochs", "3"),
        ("accum_steps", "2"),
        ("save_steps", "1"),
        ("optim.lr", "0.05"),
        ("sched.type", "cosine"),
        ("score_name", "accuracy"),
    ];
    pairs.extend_from_slice(extra);
    Config::load(
        None,
        &pairs
            .iter()
            .map(|(k, v)| Override::parse(k, v).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// burn's RNG (dropout, initialisation) is process-wide, so runs in parallel test threads would draw
/// from each other's streams: every test here holds this lock while it trains.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn runner(mut config: Config) -> Runner<Classify> {
    config.data.batch_size = 5;
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    Runner::with_identity(config, identity, Classify, Net::new(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data(37, 0)))
        .eval_split("val", InMemDataset::new(data(12, 100)))
}

pub fn weights(runner: &Runner<Classify>) -> Vec<Vec<f32>> {
    let model = runner.model();
    [model.hidden.weight.val(), model.output.weight.val()]
        .into_iter()
        .map(|t| t.into_data().try_to_vec::<f32>().unwrap())
        .collect()
}

/// Results without the wall-clock fields.
pub fn comparable(results: &Results) -> serde_json::Value {
    let mut value = serde_json::to_value(results).unwrap();
    for record in value.as_object_mut().unwrap().values_mut() {
        for metrics in record.as_object_mut().unwrap().values_mut() {
            let metrics = metrics.as_object_mut().unwrap();
            metrics.retain(|name, _| !danling::results::is_wall_clock(name));
        }
    }
    value
}
