//! A character-level GPT trained by danling: the architecture and objective of Andrej Karpathy's
//! nanoGPT (<https://github.com/karpathy/nanoGPT>, MIT licence) on burn 0.22, as a danling
//! [`Task`](danling::Task).
//!
//! - [`model`]: the transformer and its `model` section;
//! - [`data`]: the text as character ids, its train and validation windows, and the `data` section;
//! - [`task`]: batches and the next-character loss;
//! - [`metric`]: perplexity and top-1 accuracy, metrics of the example's own;
//! - [`CharGptSections`]: the config's own sections, `model` and `data`.
//!
//! `data/sonnets.txt` beside this crate is a small public-domain text to train on.

pub mod data;
pub mod metric;
pub mod model;
pub mod task;

use danling::config::{ConfigError, Sections};
use serde::{Deserialize, Serialize};

pub use data::DataConfig;
pub use model::ModelConfig;

/// The example's config sections beside danling's keys: `model` ([`ModelConfig`]) and `data`
/// ([`DataConfig`]; `data.batch_size` and `data.shuffle` in the same mapping are danling's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CharGptSections {
    /// The transformer.
    pub model: ModelConfig,
    /// The text.
    pub data: DataConfig,
}

impl Sections for CharGptSections {
    fn validate(&self) -> Result<(), ConfigError> {
        let (model, data) = (&self.model, &self.data);
        for (key, value) in [
            ("model.block_size", model.block_size),
            ("model.n_layer", model.n_layer),
            ("model.n_head", model.n_head),
            ("model.n_embd", model.n_embd),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid_value(key, 0, "an integer >= 1"));
            }
        }
        if !model.n_embd.is_multiple_of(model.n_head) {
            return Err(ConfigError::invalid_value(
                "model.n_embd",
                model.n_embd,
                &format!("a multiple of model.n_head ({})", model.n_head),
            ));
        }
        if !(0.0..1.0).contains(&model.dropout) {
            return Err(ConfigError::invalid_value(
                "model.dropout",
                model.dropout,
                "a number in [0, 1)",
            ));
        }
        if data.path.is_none() {
            return Err(ConfigError::invalid_value(
                "data.path",
                "null",
                "a UTF-8 text file",
            ));
        }
        if !(data.val_fraction > 0.0 && data.val_fraction < 1.0) {
            return Err(ConfigError::invalid_value(
                "data.val_fraction",
                data.val_fraction,
                "a number in (0, 1)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use danling::{Config, Override};

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config<CharGptSections>, ConfigError> {
        let overrides: Vec<Override> = pairs
            .iter()
            .map(|(k, v)| Override::parse(k, v).unwrap())
            .collect();
        Config::load(None, &overrides)
    }

    #[test]
    fn the_sections_share_data_with_danling_and_check_their_values() {
        let config = load(&[
            ("data.path", "text.txt"),
            ("data.shuffle", "false"),
            ("data.val_fraction", "0.2"),
            ("model.n_embd", "48"),
            ("model.n_head", "6"),
        ])
        .unwrap();
        assert!(!config.data.shuffle);
        assert_eq!(config.sections.data.val_fraction, 0.2);
        assert_eq!(
            (config.sections.model.n_embd, config.sections.model.n_head),
            (48, 6)
        );
        assert_eq!(config.sections.model.block_size, 64);

        let error = |pairs: &[(&str, &str)]| load(pairs).unwrap_err().to_string();
        assert_eq!(
            error(&[]),
            "config key `data.path`: invalid value null, expected a UTF-8 text file"
        );
        let path = ("data.path", "t.txt");
        assert_eq!(
            error(&[path, ("model.n_head", "5")]),
            "config key `model.n_embd`: invalid value 128, expected a multiple of model.n_head (5)"
        );
        assert_eq!(
            error(&[path, ("model.n_layer", "0")]),
            "config key `model.n_layer`: invalid value 0, expected an integer >= 1"
        );
        assert_eq!(
            error(&[path, ("data.val_fraction", "1")]),
            "config key `data.val_fraction`: invalid value 1, expected a number in (0, 1)"
        );
        assert!(error(&[path, ("model.n_embed", "8")]).contains("did you mean `model.n_embd`?"));
    }
}
