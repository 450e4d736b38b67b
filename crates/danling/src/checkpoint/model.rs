//! The model part of a checkpoint: `model.{path}` tensors in PyTorch layout, written and read with
//! burn-store's safetensors support.

use std::path::Path;

use burn::module::Module;
use burn::store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};

use super::CheckpointError;
use crate::workspace::write_atomic;

/// The prefix of model tensors in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";

/// The model's parameters as a safetensors file (in memory).
pub(crate) fn model_bytes<M: Module>(model: &M, path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let remap = KeyRemapper::new()
        .add_pattern("^(.*)$", format!("{MODEL_PREFIX}$1"))
        .map_err(|e| format(e.to_string()))?;
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remap)
        .metadata("format", "danling.checkpoint")
        .metadata("version", "1");
    model.save_into(&mut store).map_err(|e| format(e.to_string()))?;
    store.get_bytes().map_err(|e| format(e.to_string()))
}

/// Writes a checkpoint that holds only the model's parameters to `path`, atomically.
pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<(), CheckpointError> {
    write_atomic(path, &model_bytes(model, path)?)?;
    Ok(())
}

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
