//! A GPT in nanoGPT's shape: token and learned position embeddings, `n_layer` pre-LayerNorm blocks of
//! causal multi-head self-attention and a GELU MLP, a final LayerNorm and a linear head.
//!
//! The architecture is Andrej Karpathy's nanoGPT (<https://github.com/karpathy/nanoGPT>, `model.py`,
//! MIT licence), written here on burn 0.22 with burn's `MultiHeadAttention` and an autoregressive
//! mask. As nanoGPT, weights start from N(0, 0.02); unlike it, the head's weights are not tied to
//! the token embedding.

use burn::module::Module;
use burn::nn::attention::{
    MhaInput, MultiHeadAttention, MultiHeadAttentionConfig, generate_autoregressive_mask,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gelu, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The `model` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The longest context, in characters (the windows' length).
    pub block_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block (they divide `n_embd`).
    pub n_head: usize,
    /// Width of the embeddings and of every block.
    pub n_embd: usize,
    /// Dropout probability on the embeddings, the attention weights and each residual branch.
    pub dropout: f64,
}

impl Default for ModelConfig {
    /// nanoGPT's "baby GPT" for a CPU: `{block_size: 64, n_layer: 4, n_head: 4, n_embd: 128,
    /// dropout: 0.0}`.
    fn default() -> Self {
        Self {
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            dropout: 0.0,
        }
    }
}

/// nanoGPT's initialisation of every weight.
const INIT: Initializer = Initializer::Normal { mean: 0.0, std: 0.02 };

/// The language model: ids `[n, T]` to next-character logits `[n, T, vocab]`.
#[derive(Module, Debug)]
pub struct Gpt {
    token_embedding: Embedding,
    position_embedding: Embedding,
    dropout: Dropout,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
}

impl Gpt {
    /// A freshly initialised model for `vocab_size` characters on `device` (burn draws the weights
    /// from the device's RNG).
    pub fn new(config: &ModelConfig, vocab_size: usize, device: &Device) -> Self {
        let width = config.n_embd;
        Self {
            token_embedding: EmbeddingConfig::new(vocab_size, width)
                .with_initializer(INIT)
                .init(device),
            position_embedding: EmbeddingConfig::new(config.block_size, width)
                .with_initializer(INIT)
                .init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            blocks: (0..config.n_layer).map(|_| Block::new(config, device)).collect(),
            norm: LayerNormConfig::new(width).init(device),
            head: LinearConfig::new(width, vocab_size)
                .with_bias(false)
                .with_initializer(INIT)
                .init(device),
        }
    }

    /// The longest input it takes.
    pub fn block_size(&self) -> usize {
        self.position_embedding.weight.dims()[0]
    }

    /// Logits `[n, T, vocab]` of the character after each position of `ids` `[n, T]`, each from
    /// that position and the ones before it only.
    ///
    /// # Panics
    ///
    /// When `T` is longer than the block size.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [n, t] = ids.dims();
        assert!(
            t <= self.block_size(),
            "{t} positions, more than block_size {}",
            self.block_size()
        );
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let x = self.token_embedding.forward(ids) + self.position_embedding.forward(positions);
        let mut x = self.dropout.forward(x);
        let mask = generate_autoregressive_mask(n, t, &device);
        for block in &self.blocks {
            x = block.forward(x, mask.clone());
        }
        self.head.forward(self.norm.forward(x))
    }
}

/// `x + attention(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct Block {
    attention_norm: LayerNorm,
    attention: MultiHeadAttention,
    attention_dropout: Dropout,
    mlp_norm: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        let width = config.n_embd;
        Self {
            attention_norm: LayerNormConfig::new(width).init(device),
            attention: MultiHeadAttentionConfig::new(width, config.n_head)
                .with_dropout(config.dropout)
                .with_initializer(INIT)
                .init(device),
            attention_dropout: DropoutConfig::new(config.dropout).init(),
            mlp_norm: LayerNormConfig::new(width).init(device),
            mlp: Mlp::new(config, device),
        }
    }

    /// `x` `[n, T, n_embd]`, attending only where `mask` `[n, T, T]` is false.
    fn forward(&self, x: Tensor<3>, mask: Tensor<3, Bool>) -> Tensor<3> {
        let input = MhaInput::self_attn(self.attention_norm.forward(x.clone())).mask_attn(mask);
        let x = x + self
            .attention_dropout
            .forward(self.attention.forward(input).context);
        x.clone() + self.mlp.forward(self.mlp_norm.forward(x))
    }
}

/// `n_embd → 4·n_embd → GELU → n_embd`, then dropout.
#[derive(Module, Debug)]
pub struct Mlp {
    expand: Linear,
    activation: Gelu,
    project: Linear,
    dropout: Dropout,
}

impl Mlp {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        let width = config.n_embd;
        Self {
            expand: LinearConfig::new(width, 4 * width)
                .with_initializer(INIT)
                .init(device),
            activation: Gelu::new(),
            project: LinearConfig::new(4 * width, width)
                .with_initializer(INIT)
                .init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.activation.forward(self.expand.forward(x));
        self.dropout.forward(self.project.forward(x))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use burn::tensor::TensorData;

    use super::*;

    fn model(device: &Device) -> Gpt {
        device.seed(3);
        let config = ModelConfig {
            block_size: 8,
            n_layer: 2,
            n_head: 2,
            n_embd: 16,
            dropout: 0.0,
        };
        Gpt::new(&config, 11, device)
    }

    /// Logits `[T, vocab]` of one sequence, on the host.
    fn logits(model: &Gpt, ids: &[i64], device: &Device) -> Vec<Vec<f32>> {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device);
        let logits = model.forward(ids);
        let [_, _, vocab] = logits.dims();
        assert_eq!(vocab, 11);
        let values = logits.into_data().try_to_vec::<f32>().unwrap();
        values.chunks(vocab).map(<[f32]>::to_vec).collect()
    }

    fn max_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn a_position_sees_only_itself_and_the_positions_before_it() {
        let device = Device::flex();
        let model = model(&device);
        let ids = [1, 4, 1, 5, 9, 2, 6, 5];
        let base = logits(&model, &ids, &device);
        assert_eq!(base.len(), 8);
        for changed in 1..ids.len() {
            let mut other = ids;
            other[changed] = (other[changed] + 3) % 11;
            let after = logits(&model, &other, &device);
            for position in 0..changed {
                let difference = max_difference(&base[position], &after[position]);
                assert!(
                    difference < 1e-6,
                    "changing position {changed} changed the logits of position {position} by {difference}"
                );
            }
            for position in changed..ids.len() {
                assert!(
                    max_difference(&base[position], &after[position]) > 1e-6,
                    "changing position {changed} left position {position} as it was"
                );
            }
        }
    }

    #[test]
    fn shorter_inputs_than_the_block_are_fine() {
        let device = Device::flex();
        let model = model(&device);
        assert_eq!(model.block_size(), 8);
        assert_eq!(logits(&model, &[3, 1], &device).len(), 2);
    }
}
