//! danling from Rust: a custom model and a custom training step.
//!
//! The task classifies points of two interleaved spirals with a small MLP. Its training step adds an
//! L2 penalty on the first layer's weights to the loss; evaluation uses the plain loss. The runner
//! does the rest: data order, devices, gradient steps, scheduler, results, checkpoints.
//!
//! Run it with `cargo run --release -p danling --example custom_step`.

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use danling::metrics::MetricKind;
use danling::{Config, Override, Runner, StepOutput, Task};

/// The model: 2 → 32 → 32 → 2.
#[derive(Module, Debug)]
struct SpiralNet {
    input: Linear,
    hidden: Linear,
    output: Linear,
}

impl SpiralNet {
    fn new(device: &Device) -> Self {
        Self {
            input: LinearConfig::new(2, 32).init(device),
            hidden: LinearConfig::new(32, 32).init(device),
            output: LinearConfig::new(32, 2).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = activation::tanh(self.input.forward(x));
        let x = activation::tanh(self.hidden.forward(x));
        self.output.forward(x)
    }
}

/// One point and its spiral.
#[derive(Debug, Clone)]
struct Point {
    xy: [f32; 2],
    label: i64,
}

/// Two spirals, `n` points each, with a little deterministic jitter.
fn spirals(n: usize, phase: f32) -> Vec<Point> {
    (0..2 * n)
        .map(|i| {
            let label = (i % 2) as i64;
            let t = (i / 2) as f32 / n as f32 * 3.0 + phase;
            let angle = t * 2.5 + label as f32 * std::f32::consts::PI;
            let jitter = ((i * 7919) % 97) as f32 / 970.0;
            Point {
                xy: [t * angle.cos() + jitter, t * angle.sin() - jitter],
                label,
            }
        })
        .collect()
}

struct SpiralTask {
    l2: f64,
}

impl Task for SpiralTask {
    type Model = SpiralNet;
    type Item = Point;
    type Batch = (Tensor<2>, Tensor<1, Int>);

    fn collate(&self, items: Vec<Point>, device: &Device) -> Self::Batch {
        let n = items.len();
        let xy: Vec<f32> = items.iter().flat_map(|p| p.xy).collect();
        let labels: Vec<i64> = items.iter().map(|p| p.label).collect();
        (
            Tensor::from_data(TensorData::new(xy, [n, 2]), device),
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }

    fn forward(&self, model: &SpiralNet, (x, y): &Self::Batch) -> StepOutput {
        StepOutput::classification(model.forward(x.clone()), y.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Binary
    }

    /// The custom step: the plain loss plus an L2 penalty on the first layer.
    fn train_step(&self, model: &SpiralNet, batch: &Self::Batch) -> StepOutput {
        let mut out = self.forward(model, batch);
        let penalty = model.input.weight.val().square().sum().mul_scalar(self.l2);
        out.loss = out.loss + penalty;
        out
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let overrides = [
        Override::parse("experiment_name", "spirals")?,
        Override::parse("epochs", "30")?,
        Override::parse("optim.lr", "0.01")?,
        Override::parse("sched.type", "cosine")?,
        Override::parse("score_name", "accuracy")?,
        Override::parse("data.batch_size", "32")?,
    ];
    let config: Config = Config::load(None, &overrides)?;
    let mut runner = Runner::new(config, SpiralTask { l2: 1e-4 }, SpiralNet::new(&Device::flex()))?
        .train_split("train", InMemDataset::new(spirals(400, 0.0)))
        .eval_split("val", InMemDataset::new(spirals(100, 0.013)));
    let trained = runner.train()?;
    if let Some((index, record)) = trained.best.and_then(|i| trained.results.get(i).map(|r| (i, r))) {
        println!(
            "best epoch {index}: val accuracy {:.3}",
            record["val"]["accuracy"]
        );
    }
    if let Some(dir) = trained.dir {
        println!("{}", dir.display());
    }
    Ok(())
}
