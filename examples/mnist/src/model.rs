//! burn's MNIST CNN: two convolution blocks (convolution, BatchNorm2d, ReLU, max pooling), then three
//! linear layers with GELU and dropout between them.
//!
//! Ported to burn 0.22 from burn's MNIST example (<https://github.com/tracel-ai/burn>,
//! `examples/mnist/src/model.rs`), © Nathaniel Simard and the Burn Framework contributors,
//! licensed under MIT or Apache-2.0. The architecture is theirs; the widths and the dropout are
//! config keys here (their values are the defaults), and the loss moved to the task.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Gelu, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::SIDE;

/// Digits.
pub const NUM_CLASSES: usize = 10;

/// The `model` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Output channels of the two convolution blocks.
    pub channels: [usize; 2],
    /// Width of the two hidden linear layers.
    pub hidden: usize,
    /// Dropout probability after each hidden linear layer.
    pub dropout: f64,
}

impl Default for ModelConfig {
    /// burn's example: `{channels: [64, 64], hidden: 128, dropout: 0.25}`.
    fn default() -> Self {
        Self {
            channels: [64, 64],
            hidden: 128,
            dropout: 0.25,
        }
    }
}

/// Side of the feature maps after the two blocks: 28 → 26 → 13 → 11 → 5.
const FEATURE_SIDE: usize = ((SIDE - 2) / 2 - 2) / 2;

/// The CNN: `[n, 1, 28, 28]` normalised images to `[n, 10]` logits.
#[derive(Module, Debug)]
pub struct Model {
    conv1: ConvBlock,
    conv2: ConvBlock,
    dropout: Dropout,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    activation: Gelu,
}

impl Model {
    /// A freshly initialised model on `device` (burn draws the weights from the device's RNG).
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let [c1, c2] = config.channels;
        Self {
            conv1: ConvBlock::new([1, c1], device),
            conv2: ConvBlock::new([c1, c2], device),
            dropout: DropoutConfig::new(config.dropout).init(),
            fc1: LinearConfig::new(c2 * FEATURE_SIDE * FEATURE_SIDE, config.hidden).init(device),
            fc2: LinearConfig::new(config.hidden, config.hidden).init(device),
            fc3: LinearConfig::new(config.hidden, NUM_CLASSES).init(device),
            activation: Gelu::new(),
        }
    }

    /// Logits `[n, 10]` of images `[n, 1, 28, 28]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv2.forward(self.conv1.forward(images));
        let [n, channels, height, width] = x.dims();
        let x = x.reshape([n, channels * height * width]);
        let x = self.dropout.forward(self.activation.forward(self.fc1.forward(x)));
        let x = self.dropout.forward(self.activation.forward(self.fc2.forward(x)));
        self.fc3.forward(x)
    }
}

/// A 3×3 convolution without padding, BatchNorm2d, ReLU and 2×2 max pooling.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    pool: MaxPool2d,
    activation: Relu,
}

impl ConvBlock {
    /// A block from `channels[0]` to `channels[1]` channels.
    pub fn new(channels: [usize; 2], device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Valid)
                .init(device),
            norm: BatchNormConfig::new(channels[1]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            activation: Relu::new(),
        }
    }

    /// `[n, c_in, h, w]` to `[n, c_out, (h - 2) / 2, (w - 2) / 2]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = self.norm.forward(self.conv.forward(input));
        self.pool.forward(self.activation.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_have_one_row_per_image() {
        let device = Device::flex();
        device.seed(1);
        let config = ModelConfig {
            channels: [2, 3],
            hidden: 4,
            dropout: 0.0,
        };
        let model = Model::new(&config, &device);
        let images = Tensor::<4>::zeros([5, 1, SIDE, SIDE], &device);
        assert_eq!(model.forward(images).dims(), [5, NUM_CLASSES]);
    }
}
