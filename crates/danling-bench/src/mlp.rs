//! The benchmark MLP (784-512-512-10) as a burn module and a danling task, and its data.

use std::sync::Arc;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use danling::data::{Tabular, Targets as TabularTargets, synthetic};
use danling::metrics::MetricKind;
use danling::runner::{StepOutput, Task};

/// Layer widths of the benchmark MLP.
pub const WIDTHS: [usize; 4] = [784, 512, 512, 10];
/// Samples per batch.
pub const BATCH: usize = 128;
/// Passes over the train split.
pub const EPOCHS: usize = 3;
/// Train samples.
pub const N_TRAIN: usize = 12_800;
/// Validation samples.
pub const N_VAL: usize = 2_560;

/// Linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Layers of the given widths on `device`.
    pub fn new(widths: &[usize], device: &Device) -> Self {
        Self {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
        }
    }

    /// Logits of a batch `[n, widths[0]]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = activation::relu(x);
            }
        }
        x
    }

    /// Every weight and bias, layer by layer.
    pub fn weights(&self) -> Vec<f32> {
        self.layers
            .iter()
            .flat_map(|layer| {
                let bias = layer.bias.as_ref().map(|b| b.val().into_data());
                [Some(layer.weight.val().into_data()), bias]
            })
            .flatten()
            .flat_map(|data| data.try_to_vec::<f32>().unwrap_or_default())
            .collect()
    }

    /// Draws the lazily initialised parameters, so that a timed save does not pay for it.
    pub fn materialise(&self) {
        for layer in &self.layers {
            let _ = layer.weight.val().into_data();
        }
    }
}

/// One sample: features (shared, so that fetching an item from a dataset does not copy them) and
/// class.
pub type Row = (Arc<[f32]>, i64);

/// The synthetic classification data of the benchmark, as rows.
pub fn data() -> (Vec<Row>, Vec<Row>) {
    let (train, val) = synthetic(N_TRAIN, N_VAL, WIDTHS[0], WIDTHS[3], 1016);
    (rows(&train), rows(&val))
}

fn rows(data: &Tabular) -> Vec<Row> {
    let TabularTargets::Classes { labels, .. } = &data.targets else {
        unreachable!("synthetic data are classes")
    };
    (0..data.n).map(|i| (Arc::from(data.row(i)), labels[i])).collect()
}

/// A batch of rows as tensors on `device`.
pub fn collate(items: &[Row], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let n = items.len();
    let d = items.first().map_or(0, |(x, _)| x.len());
    let mut x = Vec::with_capacity(n * d);
    for (row, _) in items {
        x.extend_from_slice(row);
    }
    let y: Vec<i64> = items.iter().map(|(_, y)| *y).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, d]), device),
        Tensor::from_data(TensorData::new(y, [n]), device),
    )
}

/// Cross-entropy classification, with the multi-class metrics when `metrics` is set.
pub struct Classify {
    /// Whether the runner computes AUROC, AUPRC, accuracy, F1 and MCC.
    pub metrics: bool,
}

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
        if self.metrics {
            MetricKind::Multiclass(WIDTHS[3])
        } else {
            MetricKind::None
        }
    }
}
