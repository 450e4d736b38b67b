//! Next-character prediction: windows of ids to input and target batches, and logits to the
//! cross-entropy of every position, with danling's multi-class metrics and [`Perplexity`].
//!
//! The objective is nanoGPT's (Andrej Karpathy, <https://github.com/karpathy/nanoGPT>, MIT licence).

use burn::tensor::{Device, Int, Tensor, TensorData};
use danling::metrics::{MetricKind, MetricSet};
use danling::runner::{StepOutput, Task};

use crate::data::Window;
use crate::metric::{Accuracy, Perplexity};
use crate::model::Gpt;

/// Trains a [`Gpt`] to predict each next character of a text of `vocab_size` characters.
#[derive(Debug, Clone, Copy)]
pub struct CharGptTask {
    vocab_size: usize,
}

impl CharGptTask {
    /// The task over a vocabulary of `vocab_size` characters.
    pub fn new(vocab_size: usize) -> Self {
        Self { vocab_size }
    }
}

/// A batch on a device: the first `T` ids of each window and the `T` ids after them.
#[derive(Debug, Clone)]
pub struct CharBatch {
    /// Ids `[n, T]`.
    pub inputs: Tensor<2, Int>,
    /// The next id at each position, `[n, T]`.
    pub targets: Tensor<2, Int>,
}

impl Task for CharGptTask {
    type Model = Gpt;
    type Item = Window;
    type Batch = CharBatch;

    /// Every position of every window is a token trained on.
    fn tokens(&self, batch: &CharBatch) -> Option<u64> {
        let [n, t] = batch.targets.dims();
        Some((n * t) as u64)
    }

    fn collate(&self, items: Vec<Window>, device: &Device) -> CharBatch {
        let n = items.len();
        let t = items
            .first()
            .map_or(0, |window| window.ids.len().saturating_sub(1));
        let (mut inputs, mut targets) = (Vec::with_capacity(n * t), Vec::with_capacity(n * t));
        for window in &items {
            inputs.extend(window.ids[..t].iter().map(|&id| i64::from(id)));
            targets.extend(window.ids[1..].iter().map(|&id| i64::from(id)));
        }
        CharBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [n, t]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, t]), device),
        }
    }

    /// Every position is a sample: logits `[n·T, vocab]` against targets `[n·T]`.
    fn forward(&self, model: &Gpt, batch: &CharBatch) -> StepOutput {
        let logits = model.forward(batch.inputs.clone());
        let [n, t, vocab] = logits.dims();
        StepOutput::classification(
            logits.reshape([n * t, vocab]),
            batch.targets.clone().reshape([n * t]),
        )
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(self.vocab_size)
    }

    /// What a language model is judged by: the next character's top-1 accuracy and the perplexity,
    /// over every position of the split. (The multi-class preset's AUROC and AUPRC over the whole
    /// vocabulary would cost more than the model's step here, and say little.)
    fn metric_set(&self) -> MetricSet {
        MetricSet::new()
            .with(Accuracy::default())
            .with(Perplexity::default())
    }
}
