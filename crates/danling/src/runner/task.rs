//! What the user supplies: a task that turns dataset items into batches, and a batch into a loss plus
//! the inputs of the metrics.

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::{Device, FloatDType, Int, Tensor};

use crate::data::ItemContext;
use crate::metrics::{MetricKind, MetricSet};

/// What one forward pass produced: the loss to minimise, and what the metrics compare.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The mean loss of the batch, a one-element tensor.
    pub loss: Tensor<1>,
    /// Model outputs for the metrics and for inference: logits `[n, classes]` for classification
    /// (binary uses two classes), predictions `[n, outputs]` for regression.
    pub outputs: Option<Tensor<2>>,
    /// The targets the outputs are compared with.
    pub targets: Option<Targets>,
}

impl StepOutput {
    /// Softmax cross-entropy of `logits` `[n, classes]` against class `labels` `[n]`, with both kept
    /// for the metrics: the usual output of a classifier. The loss is computed in f32 whatever the
    /// logits' precision, as PyTorch's autocast does for losses (a no-op in f32 training).
    pub fn classification(logits: Tensor<2>, labels: Tensor<1, Int>) -> Self {
        let loss = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone().cast(FloatDType::F32), labels.clone());
        Self {
            loss,
            outputs: Some(logits),
            targets: Some(Targets::Classes(labels)),
        }
    }

    /// Mean squared error of `preds` against `targets` (both `[n, outputs]`), with both kept for the
    /// metrics: the usual output of a regressor. The loss is computed in f32 whatever the inputs'
    /// precision (squared errors overflow f16 beyond 256), a no-op in f32 training.
    pub fn regression(preds: Tensor<2>, targets: Tensor<2>) -> Self {
        let loss = MseLoss::new().forward(
            preds.clone().cast(FloatDType::F32),
            targets.clone().cast(FloatDType::F32),
            Reduction::Mean,
        );
        Self {
            loss,
            outputs: Some(preds),
            targets: Some(Targets::Values(targets)),
        }
    }
}

/// Targets of a batch.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class indices `[n]` (-100 is ignored by the metrics).
    Classes(Tensor<1, Int>),
    /// Regression targets, or 0/1 labels for multi-label tasks, `[n, outputs]`.
    Values(Tensor<2>),
}

/// A training task: how items become batches, and how a model turns a batch into a loss and metric
/// inputs. The runner does everything else (data order, devices, gradient steps, results, files).
///
/// `collate` and `forward` are required. The three steps default to `forward` and may be overridden:
/// `train_step` is called with the training (autodiff) model and its loss is back-propagated;
/// `evaluate_step` with a validation snapshot of the model (no autodiff, dropout off); `infer_step`
/// returns the outputs to write, one row per sample.
///
/// Items are fetched, and [`transform`](Self::transform)ed, on the loader's threads
/// (`data.workers`), so a task is `Send + Sync`; `collate` and the steps run on the training thread.
pub trait Task: Send + Sync + 'static {
    /// The model.
    type Model: Module;
    /// One dataset item.
    type Item: Clone + Send + Sync + 'static;
    /// A batch on a device.
    type Batch;

    /// Builds a batch on `device` from dataset items, in order. Runs on the training thread, so
    /// that tensors are made where they are used; the work per item belongs in
    /// [`transform`](Self::transform), which the loader's threads run.
    fn collate(&self, items: Vec<Self::Item>, device: &Device) -> Self::Batch;

    /// Turns an item as the dataset gives it into the one a batch is made of: decoding, resizing,
    /// augmentation (random crops, flips, noise, token dropout). The identity by default.
    ///
    /// Runs on the loader's threads. Draw every random number from `at.rng()`, a stream of (seed,
    /// epoch, split, item index) alone: a run is then the same, bit for bit, with any number of
    /// workers and after a resume. `at.train` tells a train split (augment) from an evaluated one.
    fn transform(&self, item: Self::Item, at: &ItemContext) -> Self::Item {
        let _ = at;
        item
    }

    /// The tokens in a batch, for the train splits' `tokens_per_s`; `None` (the default) for a task
    /// that does not count tokens.
    fn tokens(&self, batch: &Self::Batch) -> Option<u64> {
        let _ = batch;
        None
    }

    /// The forward pass: loss and metric inputs.
    fn forward(&self, model: &Self::Model, batch: &Self::Batch) -> StepOutput;

    /// The task type's built-in metrics (none by default), which also says what the outputs are:
    /// `infer_step` turns classification logits into probabilities.
    fn metrics(&self) -> MetricKind {
        MetricKind::None
    }

    /// Every metric computed on each split: by default the built-in preset of
    /// [`metrics`](Self::metrics). Override it to add metrics of your own beside the preset
    /// (`MetricSet::from(self.metrics()).with(MyMetric::default())`) or instead of it. Called for
    /// every split of every epoch, so each starts fresh.
    fn metric_set(&self) -> MetricSet {
        MetricSet::from(self.metrics())
    }

    /// One training micro-batch; its loss is back-propagated by the runner.
    fn train_step(&self, model: &Self::Model, batch: &Self::Batch) -> StepOutput {
        self.forward(model, batch)
    }

    /// One evaluation batch.
    fn evaluate_step(&self, model: &Self::Model, batch: &Self::Batch) -> StepOutput {
        self.forward(model, batch)
    }

    /// One inference batch: the outputs to report, `[n, k]`, and the targets if the split has them. By
    /// default the evaluation outputs, turned into probabilities for classification (softmax over
    /// classes, or a sigmoid per label).
    fn infer_step(&self, model: &Self::Model, batch: &Self::Batch) -> StepOutput {
        let mut out = self.evaluate_step(model, batch);
        out.outputs = out.outputs.map(|outputs| match self.metrics() {
            MetricKind::Binary | MetricKind::Multiclass(_) => burn::tensor::activation::softmax(outputs, 1),
            MetricKind::Multilabel(_) => burn::tensor::activation::sigmoid(outputs),
            MetricKind::None | MetricKind::Regression(_) => outputs,
        });
        out
    }
}
