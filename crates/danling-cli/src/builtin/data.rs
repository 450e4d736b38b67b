//! Loads the data set named by the `data` section and splits it into `train` and `val` (and `test`
//! for MNIST), with features standardised on the train split only.

use std::sync::Arc;

use danling::data::{self, CsvTask, DataError, Standardizer, Tabular};

use crate::task::{CsvTaskKind, DataConfig, DataName};

/// The splits of the built-in task, in the order the runner uses them.
#[derive(Debug)]
pub struct Splits {
    /// The train split.
    pub train: Arc<Tabular>,
    /// Evaluation splits by name (`val`, and `test` when the data set has one).
    pub eval: Vec<(String, Arc<Tabular>)>,
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
    };
    let standardizer = Standardizer::fit(&train);
    standardizer.apply(&mut train);
    for (_, split) in &mut eval {
        standardizer.apply(split);
    }
    Ok(Splits {
        train: Arc::new(train),
        eval: eval.into_iter().map(|(n, t)| (n, Arc::new(t))).collect(),
    })
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
