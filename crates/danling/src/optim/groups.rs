//! `optim.groups`: parameter groups chosen by a regular expression on each parameter's name, each with
//! its own learning-rate scale and weight decay, on burn's own per-group optimizers
//! ([`ModuleOptimizer::with_group`]) and per-group learning rates ([`ModuleLearningRate`]).
//!
//! A parameter's name is the one the checkpoint writes, without `model.` (`layers.0.bias`,
//! `norm.weight`: PyTorch's names, which `danling` shows everywhere). Each trainable parameter takes
//! the first group whose pattern is found in its name, and the groups are then handed to burn as
//! exact lists of burn paths, which do not depend on the order burn matches them in and survive a
//! resume (burn re-attaches optimizer state by path).

use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};
use regex::Regex;

use super::FusedAdamW;
use crate::config::{OptimConfig, OptimKind};

/// PyTorch's Adam/AdamW epsilon.
pub(super) const EPSILON: f32 = 1e-8;

/// The groups of `optim.groups` resolved on one model: the burn paths of each group's parameters.
#[derive(Debug, Clone, Default)]
pub struct ParamGroups {
    groups: Vec<Resolved>,
}

#[derive(Debug, Clone)]
struct Resolved {
    paths: ParamGroup,
    lr_scale: f64,
    weight_decay: Option<f64>,
}

impl ParamGroups {
    /// Assigns each trainable parameter, given as its burn path and its name in a checkpoint, to
    /// the first group of `config.groups` whose pattern its name contains. A pattern that finds no
    /// trainable parameter at all is an error (a typo trains the run without the group it meant),
    /// naming `optim.groups[i].match`.
    pub fn resolve(config: &OptimConfig, names: Vec<(String, String)>) -> Result<Self, String> {
        if config.groups.is_empty() {
            return Ok(Self::default());
        }
        let patterns = config
            .groups
            .iter()
            .enumerate()
            .map(|(i, group)| Regex::new(&group.pattern).map_err(|e| format!("optim.groups[{i}].match: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut members: Vec<Vec<String>> = vec![Vec::new(); patterns.len()];
        let mut found = vec![false; patterns.len()];
        for (burn, file) in names {
            let mut first = None;
            for (i, pattern) in patterns.iter().enumerate() {
                if pattern.is_match(&file) {
                    found[i] = true;
                    first.get_or_insert(i);
                }
            }
            if let Some(i) = first {
                members[i].push(burn);
            }
        }
        if let Some(i) = found.iter().position(|&f| !f) {
            return Err(format!(
                "optim.groups[{i}].match {:?} finds no trainable parameter (they are named as in a \
                 checkpoint, without `model.`: `layers.0.weight`, `norm.bias`)",
                config.groups[i].pattern
            ));
        }
        let groups = config
            .groups
            .iter()
            .zip(members)
            .filter(|(_, paths)| !paths.is_empty())
            .map(|(group, paths)| Resolved {
                paths: ParamGroup::from_paths(paths),
                lr_scale: group.lr_scale,
                weight_decay: group.weight_decay,
            })
            .collect();
        Ok(Self { groups })
    }

    /// Whether there are no groups: every parameter takes the optimizer's settings.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// `optimizer` with each group that sets its own weight decay given an optimizer of the config's
    /// type with that decay (a program's own optimizer cannot be rebuilt, so the config refuses
    /// groups with a decay for `type: custom`).
    pub fn apply(&self, config: &OptimConfig, mut optimizer: ModuleOptimizer) -> ModuleOptimizer {
        for group in &self.groups {
            let Some(decay) = group.weight_decay else {
                continue;
            };
            let paths = group.paths.clone();
            optimizer = match config.kind {
                OptimKind::Sgd => optimizer.with_group(paths, sgd(config, decay).build(), None),
                OptimKind::Adam => optimizer.with_group(paths, adam(config, decay).build(), None),
                OptimKind::Adamw => optimizer.with_group(paths, adamw(config, decay), None),
                OptimKind::Custom => optimizer,
            };
        }
        optimizer
    }

    /// The learning rate of each parameter for a step whose scheduled rate is `lr`.
    pub fn learning_rates(&self, lr: f64) -> ModuleLearningRate {
        if self.groups.iter().all(|g| g.lr_scale == 1.0) {
            return lr.into();
        }
        let mut scheduler = ModuleLrScheduler::new(lr);
        for group in self.groups.iter().filter(|g| g.lr_scale != 1.0) {
            scheduler = scheduler.with_group(group.paths.clone(), lr * group.lr_scale);
        }
        scheduler.step()
    }
}

fn decay(weight_decay: f64) -> Option<WeightDecayConfig> {
    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32))
}

/// SGD as the config sets it, with weight decay `weight_decay` (L2, as PyTorch's).
pub(super) fn sgd(config: &OptimConfig, weight_decay: f64) -> SgdConfig {
    let momentum = (config.momentum > 0.0).then_some(MomentumConfig {
        momentum: config.momentum,
        dampening: 0.0,
        nesterov: false,
    });
    SgdConfig::new()
        .with_weight_decay(decay(weight_decay))
        .with_momentum(momentum)
}

/// Adam as the config sets it, with weight decay `weight_decay` (L2, as PyTorch's).
pub(super) fn adam(config: &OptimConfig, weight_decay: f64) -> AdamConfig {
    let [beta_1, beta_2] = config.betas.map(|b| b as f32);
    AdamConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(EPSILON)
        .with_weight_decay(decay(weight_decay))
}

/// AdamW as the config sets it, with decoupled weight decay `weight_decay`.
pub(super) fn adamw(config: &OptimConfig, weight_decay: f64) -> FusedAdamW {
    let [beta_1, beta_2] = config.betas.map(|b| b as f32);
    FusedAdamW {
        beta_1,
        beta_2,
        epsilon: EPSILON,
        weight_decay: weight_decay as f32,
    }
}
