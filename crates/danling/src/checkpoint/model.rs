//! The model part of a checkpoint: `model.{path}` tensors in PyTorch layout, written in pieces
//! straight from the backend and read with burn-store's safetensors support.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use burn::module::Module;
use burn::store::{KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use safetensors::tensor::{Metadata, TensorInfo};

use super::CheckpointError;
use super::export::plan;
use crate::workspace::write_atomic_with;

/// The prefix of model tensors in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";

/// Writes a checkpoint that holds only the model's parameters to `path`, atomically.
///
/// The parameters are read from the backend a few megabytes at a time (linear weights transposed to
/// PyTorch's layout on the way) while a second thread writes the previous piece, so a large model is
/// neither copied whole nor held twice.
pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<(), CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let planned = plan(model).map_err(format)?;
    let mut offset = 0;
    let infos = planned
        .iter()
        .map(|p| {
            let info = TensorInfo {
                dtype: p.dtype,
                shape: p.shape.clone(),
                data_offsets: (offset, offset + p.len()),
            };
            offset += p.len();
            (p.name.clone(), info)
        })
        .collect();
    let metadata = HashMap::from([
        ("format".to_owned(), "danling.checkpoint".to_owned()),
        ("version".to_owned(), "1".to_owned()),
    ]);
    let header = Metadata::new(Some(metadata), infos).map_err(|e| format(e.to_string()))?;
    let mut header = serde_json::to_vec(&header).map_err(|e| format(e.to_string()))?;
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    header.resize(header.len().next_multiple_of(8), b' ');
    write_atomic_with(path, |temp| {
        let mut file = File::create(temp)?;
        file.write_all(&(header.len() as u64).to_le_bytes())?;
        file.write_all(&header)?;
        std::thread::scope(|scope| {
            let (pieces, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            // Written pieces come back to be filled again: the same few buffers go round.
            let (spent, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
            let writer = scope.spawn(move || -> std::io::Result<()> {
                for piece in received {
                    file.write_all(&piece)?;
                    let _ = spent.send(piece);
                }
                Ok(())
            });
            'read: for tensor in &planned {
                for piece in tensor.pieces(PIECE, || recycled.try_recv().unwrap_or_default()) {
                    if pieces.send(piece).is_err() {
                        break 'read; // the writer stopped on an error, which join returns
                    }
                }
            }
            drop(pieces);
            writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")))
        })
    })?;
    Ok(())
}

/// Bytes read from the backend at a time when saving.
const PIECE: usize = 8 << 20;

/// Loads the model's parameters from `path`; every parameter must be present with its shape, and the
/// file may hold no other model tensor.
pub fn load_model<M: Module>(model: M, path: &Path) -> Result<M, CheckpointError> {
    if !path.is_file() {
        return Err(CheckpointError::Missing {
            path: path.to_owned(),
        });
    }
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let remap = KeyRemapper::new()
        .add_pattern(format!("^{}(.*)$", regex_escape(MODEL_PREFIX)), "$1")
        .map_err(|e| format(e.to_string()))?;
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(remap)
        .allow_partial(true)
        .validate(false);
    let mut model = model;
    let result = model.load_from(&mut store).map_err(|e| format(e.to_string()))?;
    let mismatch = |parameter: String, problem: String| CheckpointError::Mismatch {
        path: path.to_owned(),
        parameter,
        problem,
    };
    if let Some(error) = result.errors.first() {
        let (parameter, problem) = describe(error);
        return Err(mismatch(parameter, problem));
    }
    if let Some((name, _)) = result.missing.first() {
        return Err(mismatch(name.clone(), "is missing from the checkpoint".into()));
    }
    if let Some(name) = result
        .unused
        .iter()
        .find(|n| !n.starts_with("optimizer.") && !n.starts_with("scheduler."))
    {
        return Err(mismatch(
            name.clone(),
            "is in the checkpoint but not in the model".into(),
        ));
    }
    Ok(model)
}

/// The parameter an apply error is about, and what is wrong with it.
fn describe(error: &burn::store::ApplyError) -> (String, String) {
    use burn::store::ApplyError as E;
    match error {
        E::ShapeMismatch {
            path,
            expected,
            found,
        } => (
            path.clone(),
            format!(
                "has shape {:?} in the checkpoint, the model expects {:?}",
                found.as_slice(),
                expected.as_slice()
            ),
        ),
        E::DTypeMismatch {
            path,
            expected,
            found,
        } => (
            path.clone(),
            format!("has dtype {found:?} in the checkpoint, the model expects {expected:?}"),
        ),
        E::AdapterError { path, message } | E::LoadError { path, message } => (path.clone(), message.clone()),
    }
}

fn regex_escape(text: &str) -> String {
    text.replace('.', "\\.")
}
