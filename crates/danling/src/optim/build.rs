//! The optimizer named by the config, on burn-optim, with PyTorch's defaults where burn's differ
//! (Adam's epsilon 1e-8, SGD momentum without dampening).

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};

use super::FusedAdamW;

use crate::config::{OptimConfig, OptimKind};

/// PyTorch's Adam/AdamW epsilon.
const EPSILON: f32 = 1e-8;

/// Builds the optimizer of `config`. The learning rate is passed at each step by the runner.
/// `None` for `type: custom`, which only the program can build.
pub fn build_optimizer(config: &OptimConfig) -> Option<ModuleOptimizer> {
    let decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let [beta_1, beta_2] = config.betas.map(|b| b as f32);
    Some(match config.kind {
        OptimKind::Custom => return None,
        OptimKind::Sgd => {
            let momentum = (config.momentum > 0.0).then_some(MomentumConfig {
                momentum: config.momentum,
                dampening: 0.0,
                nesterov: false,
            });
            SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum(momentum)
                .init()
        }
        OptimKind::Adam => AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(EPSILON)
            .with_weight_decay(decay)
            .init(),
        OptimKind::Adamw => ModuleOptimizer::from(FusedAdamW {
            beta_1,
            beta_2,
            epsilon: EPSILON,
            weight_decay: config.weight_decay as f32,
        }),
    })
}
