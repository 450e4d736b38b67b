//! The classification task: MNIST items to normalised image batches, and logits to a cross-entropy
//! loss and danling's multi-class metrics.
//!
//! The batcher follows burn's MNIST example (<https://github.com/tracel-ai/burn>,
//! `examples/mnist/src/data.rs`), © Nathaniel Simard and the Burn Framework contributors,
//! licensed under MIT or Apache-2.0: pixels become `((x / 255) - 0.1307) / 0.3081`.

use burn::tensor::{Device, Int, Tensor, TensorData};
use danling::data::ItemContext;
use danling::metrics::MetricKind;
use danling::runner::{StepOutput, Task};

use crate::data::{MEAN, MnistItem, PIXELS, SIDE, STD, shifted};
use crate::model::{Model, NUM_CLASSES};

/// Classifies MNIST digits with [`Model`], shifting each training image by up to `shift` pixels.
#[derive(Debug, Clone, Copy, Default)]
pub struct MnistTask {
    /// The largest shift of the augmentation, in pixels (0: none).
    pub shift: usize,
}

/// A batch on a device: normalised images `[n, 1, 28, 28]` and their digits `[n]`.
#[derive(Debug, Clone)]
pub struct MnistBatch {
    /// The images, each pixel `((x / 255) - MEAN) / STD`.
    pub images: Tensor<4>,
    /// The digits.
    pub labels: Tensor<1, Int>,
}

impl Task for MnistTask {
    type Model = Model;
    type Item = MnistItem;
    type Batch = MnistBatch;

    fn collate(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        let n = items.len();
        let mut pixels = Vec::with_capacity(n * PIXELS);
        for item in &items {
            pixels.extend(item.image.iter().flatten().map(|&x| (x / 255.0 - MEAN) / STD));
        }
        let labels: Vec<i64> = items.iter().map(|item| i64::from(item.label)).collect();
        MnistBatch {
            images: Tensor::from_data(TensorData::new(pixels, [n, 1, SIDE, SIDE]), device),
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }

    /// A random shift on the train split, drawn from the item's own RNG: the same in every run of
    /// the seed, with any number of loader threads.
    fn transform(&self, item: MnistItem, at: &ItemContext) -> MnistItem {
        if !at.train || self.shift == 0 {
            return item;
        }
        let mut rng = at.rng();
        let span = 2 * self.shift as u64 + 1;
        let mut draw = || rng.below(span) as isize - self.shift as isize;
        let (dx, dy) = (draw(), draw());
        shifted(&item, dx, dy)
    }

    fn forward(&self, model: &Model, batch: &MnistBatch) -> StepOutput {
        StepOutput::classification(model.forward(batch.images.clone()), batch.labels.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(NUM_CLASSES)
    }
}
