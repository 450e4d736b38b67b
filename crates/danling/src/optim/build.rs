//! The optimizer named by the config, on burn-optim, with PyTorch's defaults where burn's differ
//! (Adam's epsilon 1e-8, SGD momentum without dampening).

use burn::optim::ModuleOptimizer;

use super::groups::{adam, adamw, sgd};
use crate::config::{OptimConfig, OptimKind};

/// Builds the optimizer of `config` (without its `groups`, which need the model: see
/// [`super::ParamGroups`]). The learning rate is passed at each step by the runner.
/// `None` for `type: custom`, which only the program can build.
pub fn build_optimizer(config: &OptimConfig) -> Option<ModuleOptimizer> {
    let decay = config.weight_decay;
    Some(match config.kind {
        OptimKind::Custom => return None,
        OptimKind::Sgd => sgd(config, decay).init(),
        OptimKind::Adam => adam(config, decay).init(),
        OptimKind::Adamw => ModuleOptimizer::from(adamw(config, decay)),
    })
}
