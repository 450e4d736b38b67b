//! Checkpoint files: one safetensors file per checkpoint, holding
//!
//! - `model.{path}`: each model parameter in PyTorch's layout, so Python's `safetensors` and PyTorch
//!   load it;
//! - `optimizer.record`: burn's serialised optimizer state, as one `U8` tensor;
//! - `scheduler.state`: the learning-rate scheduler, as one `U8` tensor of JSON;
//! - `__metadata__`: `format = "danling.checkpoint"`, `version = "1"`, and JSON strings for `config`,
//!   `state`, `results`, `identity` and `param_ids`.
//!
//! burn's optimizer state is keyed by `ParamId`s, which are random in every process. `param_ids` maps
//! each parameter's path to the id it had when saved; loading gives the model those ids back, so the
//! optimizer state re-attaches to the right tensors.
//!
//! A checkpoint may come from anyone. Every reader checks what it is about to trust first: the header
//! against the file (`header`), the optimizer record against the model (`optimizer`), the metadata
//! against the types it parses into. Whatever the bytes, a reader returns a [`CheckpointError`] that
//! names the file and the problem; none panics or allocates beyond the file's size.

mod export;
mod full;
mod header;
mod integrity;
mod model;
mod optimizer;
pub(crate) mod path;
mod read;

use std::path::{Path, PathBuf};

use crate::fs::IoError;

pub use full::{Checkpoint, load_checkpoint, read_checkpoint, save_checkpoint};
pub(crate) use full::{Prepared, load_with_ema, read_resumable};
pub use model::{EMA_PREFIX, MODEL_PREFIX, load_ema, load_model, save_model};

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Writing the file failed.
    #[error(transparent)]
    Write(#[from] IoError),
    /// The tensors could not be encoded or decoded.
    #[error("checkpoint {}: {message}", path.display())]
    Format {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read checkpoint {}: {source}", path.display())]
    Read {
        /// The checkpoint file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not exist.
    #[error("checkpoint {} does not exist", path.display())]
    Missing {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// The checkpoint's tensors do not match the model.
    #[error("checkpoint {} does not match the model: parameter `{parameter}` {problem}", path.display())]
    Mismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The first mismatched parameter.
        parameter: String,
        /// How it mismatches.
        problem: String,
    },
}

impl CheckpointError {
    /// A [`CheckpointError::Format`] about the file at `path`.
    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
