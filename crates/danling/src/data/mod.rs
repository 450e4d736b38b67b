//! Data: the parallel loader; data sets read from disk item by item (image folders, token files,
//! `.npy` arrays); the in-memory tabular data set of the built-in task, its readers (CSV, MNIST's
//! IDX), the vendored real data sets, and a seeded synthetic generator.

mod builtin;
mod csv;
mod disk;
mod idx;
mod images;
pub mod loader;
mod npy;
mod synthetic;
mod tabular;
mod tokens;

use std::path::PathBuf;

pub use builtin::{breast_cancer, diabetes, digits};
pub use csv::{CsvTask, read_csv};
pub use idx::{read_idx_pair, read_mnist_dir};
pub use images::{Image, ImageFolder};
pub use loader::{Batches, Fetch, ItemContext, ItemError, Workers};
pub use npy::NpyArray;
pub use synthetic::synthetic;
pub use tabular::{Standardizer, Tabular, Targets};
pub use tokens::{TokenFile, TokenWidth};

/// Why data could not be read or split. Messages name the file, line and column.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read data file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not what its format needs.
    #[error("data file {}: {message}", path.display())]
    Format {
        /// The file (or the vendored data set's name).
        path: PathBuf,
        /// What is wrong, with the line and column where there is one.
        message: String,
    },
    /// A split that would leave a part empty.
    #[error("cannot split {n} rows with val_fraction {fraction}: both parts need at least one row")]
    Split {
        /// Rows in the data set.
        n: usize,
        /// The requested fraction.
        fraction: f64,
    },
}

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
