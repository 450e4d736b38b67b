//! MNIST with burn's CNN, trained by danling: burn's MNIST example (<https://github.com/tracel-ai/burn>,
//! `examples/mnist`, © Nathaniel Simard and the Burn Framework contributors, MIT or Apache-2.0)
//! ported to burn 0.22 and to danling's [`Task`](danling::Task).
//!
//! - [`model`]: the CNN and its `model` section;
//! - [`data`]: the IDX reader (and writer), the data set and its `data` section, and the bundled
//!   UCI digits made to look like MNIST;
//! - [`task`]: batches and the loss;
//! - [`MnistSections`]: the config's own sections, `model` and `data`.

pub mod data;
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
pub struct MnistSections {
    /// The CNN.
    pub model: ModelConfig,
    /// The IDX files.
    pub data: DataConfig,
}

impl Sections for MnistSections {
    fn validate(&self) -> Result<(), ConfigError> {
        let (model, data) = (&self.model, &self.data);
        if model.channels.contains(&0) {
            return Err(ConfigError::invalid_value(
                "model.channels",
                format!("{:?}", model.channels),
                "two channel counts >= 1",
            ));
        }
        if model.hidden == 0 {
            return Err(ConfigError::invalid_value("model.hidden", 0, "an integer >= 1"));
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
                "the directory of MNIST's IDX files",
            ));
        }
        if let Some(shift) = data.shift.filter(|&s| s >= data::SIDE) {
            return Err(ConfigError::invalid_value(
                "data.shift",
                shift,
                "a shift in pixels below the image side, 28",
            ));
        }
        if data.limit == Some(0) {
            return Err(ConfigError::invalid_value(
                "data.limit",
                0,
                "an integer >= 1, or null",
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

    fn load(pairs: &[(&str, &str)]) -> Result<Config<MnistSections>, ConfigError> {
        let overrides: Vec<Override> = pairs
            .iter()
            .map(|(k, v)| Override::parse(k, v).unwrap())
            .collect();
        Config::load(None, &overrides)
    }

    #[test]
    fn the_sections_share_data_with_danling_and_check_their_values() {
        let config = load(&[
            ("data.path", "mnist"),
            ("data.batch_size", "16"),
            ("data.limit", "100"),
            ("model.dropout", "0.5"),
        ])
        .unwrap();
        assert_eq!(config.data.batch_size, 16);
        assert_eq!(config.sections.data.path.as_deref(), Some("mnist".as_ref()));
        assert_eq!(config.sections.data.limit, Some(100));
        assert_eq!(config.sections.model.dropout, 0.5);
        assert_eq!(config.sections.model.channels, [64, 64]);

        let error = |pairs: &[(&str, &str)]| load(pairs).unwrap_err().to_string();
        assert_eq!(
            error(&[]),
            "config key `data.path`: invalid value null, expected the directory of MNIST's IDX files"
        );
        assert_eq!(
            error(&[("data.path", "m"), ("data.limit", "0")]),
            "config key `data.limit`: invalid value 0, expected an integer >= 1, or null"
        );
        assert_eq!(
            error(&[("data.path", "m"), ("model.dropout", "1")]),
            "config key `model.dropout`: invalid value 1, expected a number in [0, 1)"
        );
        assert_eq!(
            error(&[("data.path", "m"), ("model.channels", "[8, 0]")]),
            "config key `model.channels`: invalid value [8, 0], expected two channel counts >= 1"
        );
        assert!(error(&[("data.pth", "m")]).starts_with("unknown config key `data.pth`"));
    }
}
