//! The MLP of the built-in task.

use burn::module::Module;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Device, Tensor, activation};

use crate::task::{Activation, ModelConfig, Norm};

/// Linear layers with a normalisation (`model.norm`), an activation and dropout between them.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    /// One per hidden layer with `norm: batch`, else none.
    batch_norms: Vec<BatchNorm>,
    /// One per hidden layer with `norm: layer`, else none.
    layer_norms: Vec<LayerNorm>,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl Mlp {
    /// `inputs` → `hidden...` → `outputs`.
    pub fn new(config: &ModelConfig, inputs: usize, outputs: usize, device: &Device) -> Self {
        let mut widths = vec![inputs];
        widths.extend(&config.hidden);
        widths.push(outputs);
        let layers = widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        let hidden = &config.hidden;
        let (batch_norms, layer_norms) = match config.norm {
            Norm::None => (Vec::new(), Vec::new()),
            Norm::Batch => (
                hidden
                    .iter()
                    .map(|&w| BatchNormConfig::new(w).init(device))
                    .collect(),
                Vec::new(),
            ),
            Norm::Layer => (
                Vec::new(),
                hidden
                    .iter()
                    .map(|&w| LayerNormConfig::new(w).init(device))
                    .collect(),
            ),
        };
        Self {
            layers,
            batch_norms,
            layer_norms,
            dropout: DropoutConfig::new(config.dropout).init(),
            activation: config.activation,
        }
    }

    /// Logits (or regression outputs) `[n, outputs]`.
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                if let Some(norm) = self.batch_norms.get(i) {
                    x = norm.forward(x);
                }
                if let Some(norm) = self.layer_norms.get(i) {
                    x = norm.forward(x);
                }
                x = self.dropout.forward(self.activate(x));
            }
        }
        x
    }

    fn activate(&self, x: Tensor<2>) -> Tensor<2> {
        match self.activation {
            Activation::Relu => activation::relu(x),
            Activation::Gelu => activation::gelu(x),
            Activation::Silu => activation::silu(x),
            Activation::Tanh => activation::tanh(x),
            Activation::Sigmoid => activation::sigmoid(x),
        }
    }
}
