//! Loads the data set named by the `data` section and splits it into `train` and `val` (and `test`
//! for MNIST). Tabular features are standardised on the train split only; images are read from disk
//! item by item, on the loader's threads, as pixels in `[0, 1]`.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use danling::data::{self, CsvTask, DataError, ImageFolder, Standardizer, Tabular};
use danling::metrics::MetricKind;

use super::task::{Row, RowTarget, TabularSet};
use crate::task::{CsvTaskKind, DataConfig, DataName};

/// A split of the built-in task.
pub type Split = Arc<dyn Dataset<Row>>;

/// The splits of the built-in task, in the order the runner uses them, and their shape.
pub struct Splits {
    /// The train split.
    pub train: Split,
    /// Evaluation splits by name (`val`, and `test` when the data set has one).
    pub eval: Vec<(String, Split)>,
    /// Features per row.
    pub inputs: usize,
    /// What the targets are.
    pub metrics: MetricKind,
}

/// Reads and splits the configured data. `seed` draws the validation split.
pub fn load_splits(config: &DataConfig, seed: u64) -> Result<Splits, DataError> {
    let path = || config.path.clone().unwrap_or_default();
    let (mut train, mut eval) = match config.name {
        DataName::Digits => split(data::digits()?, config, seed)?,
        DataName::BreastCancer => split(data::breast_cancer()?, config, seed)?,
        DataName::Diabetes => split(data::diabetes()?, config, seed)?,
        DataName::Csv => split(read_csv(config)?, config, seed)?,
        DataName::Synthetic => {
            let (train, val) = data::synthetic(
                config.n_train,
                config.n_val,
                config.features,
                config.classes,
                seed,
            );
            (train, vec![("val".to_owned(), val)])
        }
        DataName::Mnist => {
            let (train, test) = data::read_mnist_dir(&path())?;
            let (train, mut eval) = split(train, config, seed)?;
            eval.push(("test".to_owned(), test));
            (train, eval)
        }
        DataName::Imagefolder => return image_folder(&path(), config, seed),
    };
    let standardizer = Standardizer::fit(&train);
    standardizer.apply(&mut train);
    for (_, split) in &mut eval {
        standardizer.apply(split);
    }
    let metrics = match &train.targets {
        data::Targets::Classes { num_classes: 2, .. } => MetricKind::Binary,
        data::Targets::Classes { num_classes, .. } => MetricKind::Multiclass(*num_classes),
        data::Targets::Values { outputs, .. } => MetricKind::Regression(*outputs),
    };
    let inputs = train.d;
    let set = |t: Tabular| -> Split { Arc::new(TabularSet(Arc::new(t))) };
    Ok(Splits {
        train: set(train),
        eval: eval.into_iter().map(|(n, t)| (n, set(t))).collect(),
        inputs,
        metrics,
    })
}

/// `path/train` and `path/val` when `path/val` exists, else `path` split by `val_fraction`.
fn image_folder(path: &Path, config: &DataConfig, seed: u64) -> Result<Splits, DataError> {
    let size = config.size.unwrap_or([28, 28]);
    let channels = config.channels.unwrap_or(3);
    let (train, val) = if path.join("val").is_dir() {
        let train = ImageFolder::open(path.join("train"), size, channels)?;
        let val = ImageFolder::with_classes(path.join("val"), train.classes(), size, channels)?;
        (train, val)
    } else {
        ImageFolder::open(path, size, channels)?.split(config.val_fraction, seed)?
    };
    let metrics = match train.classes().len() {
        0 | 1 => {
            return Err(DataError::Format {
                path: path.to_owned(),
                message: "needs at least two class folders to classify".into(),
            });
        }
        2 => MetricKind::Binary,
        n => MetricKind::Multiclass(n),
    };
    Ok(Splits {
        inputs: train.features(),
        train: Arc::new(Images(train)),
        eval: vec![("val".to_owned(), Arc::new(Images(val)))],
        metrics,
    })
}

/// An image folder as rows: the pixels are the features, the folder the class.
struct Images(ImageFolder);

impl Dataset<Row> for Images {
    fn get(&self, index: usize) -> Result<Row, DatasetError> {
        let image = self.0.get(index)?;
        Ok(Row {
            features: image.pixels,
            target: RowTarget::Class(image.label as i64),
        })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn read_csv(config: &DataConfig) -> Result<Tabular, DataError> {
    let path = config.path.clone().unwrap_or_default();
    match config.task {
        CsvTaskKind::Classification => data::read_csv(&path, config.header, CsvTask::Classification),
        CsvTaskKind::Regression => data::read_csv(&path, config.header, CsvTask::Regression),
        CsvTaskKind::Auto => data::read_csv(&path, config.header, CsvTask::Classification)
            .or_else(|_| data::read_csv(&path, config.header, CsvTask::Regression)),
    }
}

fn split(
    all: Tabular,
    config: &DataConfig,
    seed: u64,
) -> Result<(Tabular, Vec<(String, Tabular)>), DataError> {
    let (train, val) = all.split(config.val_fraction, seed)?;
    Ok((train, vec![("val".to_owned(), val)]))
}
