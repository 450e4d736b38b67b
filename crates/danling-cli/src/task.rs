//! The config sections of the CLI's built-in task: `model` (an MLP) and `data` (a small data set).

use std::path::PathBuf;

use danling::config::{ConfigError, Sections};
use serde::{Deserialize, Serialize};

/// The CLI's sections: `model` and `data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSections {
    /// The model.
    pub model: ModelConfig,
    /// The data.
    pub data: DataConfig,
}

/// The `model` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The architecture.
    #[serde(rename = "type")]
    pub kind: ModelKind,
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden layer.
    pub dropout: f64,
    /// Activation after each hidden layer.
    pub activation: Activation,
    /// Normalisation after each hidden linear layer, before its activation.
    pub norm: Norm,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Mlp,
            hidden: vec![128],
            dropout: 0.0,
            activation: Activation::Relu,
            norm: Norm::None,
        }
    }
}

/// Model architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A multi-layer perceptron.
    Mlp,
}

/// Normalisation layers of the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// None.
    None,
    /// BatchNorm over the features, with running statistics (BatchNorm1d).
    Batch,
    /// LayerNorm over the features.
    Layer,
}

/// Activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// x·sigmoid(x).
    Silu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + e^-x).
    Sigmoid,
}

/// The `data` section: the data set. (`data.batch_size` and `data.shuffle` are the runner's keys,
/// [`danling::config::DataConfig`].)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Which data set.
    pub name: DataName,
    /// The file (or directory) for `csv` and `mnist`.
    pub path: Option<PathBuf>,
    /// Fraction of a single-file data set held out for validation.
    pub val_fraction: f64,
    /// `synthetic`: train samples.
    pub n_train: usize,
    /// `synthetic`: validation samples.
    pub n_val: usize,
    /// `synthetic`: features per sample.
    pub features: usize,
    /// `synthetic`: classes.
    pub classes: usize,
    /// `csv`: whether the first line is a header (detected when unset).
    pub header: Option<bool>,
    /// `csv`: what the last column is; `auto` reads integer targets as classes.
    pub task: CsvTaskKind,
    /// `imagefolder`: `[height, width]` every image is resized and centre-cropped to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<[u32; 2]>,
    /// `imagefolder`: 1 (grey) or 3 (RGB, the default, as torchvision's `ImageFolder` loads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
}

/// What the target column of a CSV file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvTaskKind {
    /// Classes when every target is a non-negative integer, values otherwise.
    Auto,
    /// Class indices.
    Classification,
    /// Regression values.
    Regression,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            name: DataName::Digits,
            path: None,
            val_fraction: 0.2,
            n_train: 1024,
            n_val: 256,
            features: 16,
            classes: 4,
            header: None,
            task: CsvTaskKind::Auto,
            size: None,
            channels: None,
        }
    }
}

/// Data sets of the built-in task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataName {
    /// UCI handwritten digits, 8×8 (classification, 10 classes).
    Digits,
    /// UCI breast cancer Wisconsin (binary).
    BreastCancer,
    /// Efron et al.'s diabetes (regression).
    Diabetes,
    /// A seeded, learnable generator.
    Synthetic,
    /// A numeric CSV file whose last column is the target.
    Csv,
    /// MNIST in IDX files.
    Mnist,
    /// A folder of PNG or JPEG images, one subfolder per class (torchvision's `ImageFolder`).
    Imagefolder,
}

impl Sections for TaskSections {
    fn validate(&self) -> Result<(), ConfigError> {
        let (model, data) = (&self.model, &self.data);
        if model.hidden.contains(&0) {
            return Err(ConfigError::invalid_value(
                "model.hidden",
                format!("{:?}", model.hidden),
                "widths >= 1",
            ));
        }
        if !(0.0..1.0).contains(&model.dropout) {
            return Err(ConfigError::invalid_value(
                "model.dropout",
                model.dropout,
                "a number in [0, 1)",
            ));
        }
        for (key, value, least) in [
            ("data.n_train", data.n_train, 1),
            ("data.n_val", data.n_val, 1),
            ("data.features", data.features, 1),
            ("data.classes", data.classes, 2),
        ] {
            if value < least {
                return Err(ConfigError::invalid_value(
                    key,
                    value,
                    &format!("an integer >= {least}"),
                ));
            }
        }
        if !(data.val_fraction > 0.0 && data.val_fraction < 1.0) {
            return Err(ConfigError::invalid_value(
                "data.val_fraction",
                data.val_fraction,
                "a number in (0, 1)",
            ));
        }
        if matches!(data.name, DataName::Csv | DataName::Mnist | DataName::Imagefolder) && data.path.is_none()
        {
            return Err(ConfigError::invalid_value(
                "data.path",
                "null",
                "a path, which data.name csv, mnist and imagefolder need",
            ));
        }
        match data.size {
            Some(size) if size.contains(&0) => {
                return Err(ConfigError::invalid_value(
                    "data.size",
                    format!("{size:?}"),
                    "[height, width], both >= 1",
                ));
            }
            None if data.name == DataName::Imagefolder => {
                return Err(ConfigError::invalid_value(
                    "data.size",
                    "null",
                    "[height, width], which data.name imagefolder needs",
                ));
            }
            _ => {}
        }
        if let Some(channels) = data.channels.filter(|c| !matches!(c, 1 | 3)) {
            return Err(ConfigError::invalid_value("data.channels", channels, "1 or 3"));
        }
        Ok(())
    }
}
