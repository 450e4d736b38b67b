//! The model part of a checkpoint: `model.{path}` tensors in PyTorch layout, written in pieces
//! straight from the backend and read straight into the tensors that replace the parameters.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{Bytes, DType, Tensor, TensorData};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use super::CheckpointError;
use super::export::plan;
use super::header::Opened;
use super::integrity::{Tally, has_checksum, has_crc, intact};
use super::path::{ModulePath, PathMapper, map_with_path};
use super::read::Layout;
use crate::fs::{AtomicFile, IoError};

/// The prefix of model tensors in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";
/// The prefix of the averaged weights (`ema`) in a checkpoint.
pub const EMA_PREFIX: &str = "ema.";

/// Names of a full checkpoint's tensors that are no model weights.
const NOT_MODEL: [&str; 3] = ["optimizer.", "scheduler.", EMA_PREFIX];

/// Writes a checkpoint that holds only the model's parameters to `path`, atomically.
///
/// The parameters are read from the backend a few megabytes at a time (linear weights transposed to
/// PyTorch's layout on the way) while a second thread writes the previous piece, so a large model is
/// neither copied whole nor held twice.
pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<(), CheckpointError> {
    let format = |message: String| CheckpointError::format(path, message);
    let mut planned = plan(model).map_err(format)?;
    widest_first(&mut planned, |p| p.dtype);
    let metadata = HashMap::from([
        ("format".to_owned(), "danling.checkpoint".to_owned()),
        ("version".to_owned(), "1".to_owned()),
    ]);
    let header = header(
        metadata,
        planned
            .iter()
            .map(|p| (p.name.clone(), p.dtype, p.shape.clone(), p.len())),
    )
    .map_err(format)?;
    let size = header.len() + planned.iter().map(|p| p.len()).sum::<usize>();
    let mut file = AtomicFile::create_large(path, size)?;
    let written = file.write_all(&header).and_then(|()| {
        let file = &mut file;
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
    });
    written.map_err(IoError::at("write", file.target()))?;
    file.commit()?;
    Ok(())
}

/// Orders tensors for a file: wider elements first (stably), as safetensors lays files out, so every
/// tensor starts aligned to its element size.
pub(crate) fn widest_first<T>(tensors: &mut [T], dtype: impl Fn(&T) -> Dtype) {
    tensors.sort_by_key(|t| std::cmp::Reverse(dtype(t).bitsize()));
}

/// A safetensors header, the 8-byte length that precedes it included, for `tensors` (name, dtype,
/// shape, bytes) laid out one after the other in the order given.
pub(crate) fn header(
    metadata: HashMap<String, String>,
    tensors: impl Iterator<Item = (String, Dtype, Vec<usize>, usize)>,
) -> Result<Vec<u8>, String> {
    let mut offset = 0;
    let infos = tensors
        .map(|(name, dtype, shape, len)| {
            let info = TensorInfo {
                dtype,
                shape,
                data_offsets: (offset, offset + len),
            };
            offset += len;
            (name, info)
        })
        .collect();
    let header = Metadata::new(Some(metadata), infos).map_err(|e| e.to_string())?;
    let mut json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    Ok(out)
}

/// Bytes read from the backend at a time when saving.
const PIECE: usize = 8 << 20;

/// Loads the model's parameters from `path`; every parameter must be present with its shape, and the
/// file may hold no other model tensor.
///
/// Each parameter is read straight from the file into the tensor that replaces it (linear weights
/// transposed back from PyTorch's layout on the way); files whose names lack the `model.` prefix
/// (a bare state dict) load too. A file that carries a checksum (a full checkpoint) is checked
/// against it first, so a damaged one is refused rather than loaded.
pub fn load_model<M: Module>(model: M, path: &Path) -> Result<M, CheckpointError> {
    let opened = Opened::open(path)?;
    let metadata = opened.metadata.metadata().clone().unwrap_or_default();
    if !has_checksum(&metadata) {
        return load_opened(model, &opened, path, None);
    }
    // Checksummed as it is read (a CRC-32C; an older file's SHA-256 is taken apart), the rest of
    // the file after: the model is returned only if the whole file is intact.
    let mut tally = Tally::default();
    let loaded = load_opened(model, &opened, path, has_crc(&metadata).then_some(&mut tally));
    intact(path, &opened, &metadata, &tally, loaded)
}

/// [`load_model`] from a file already opened (`path` names it in errors), noting the CRC-32C of
/// each tensor read in `tally` when there is one.
pub(crate) fn load_opened<M: Module>(
    model: M,
    opened: &Opened,
    path: &Path,
    tally: Option<&mut Tally>,
) -> Result<M, CheckpointError> {
    load_section(model, opened, path, tally, None)
}

/// Loads the averaged weights (`ema.{path}`) of a full checkpoint into `model`, which must match
/// them as a model matches its `model.` tensors. The whole file is checked against its checksum
/// first. Every checkpoint of a run with `ema` holds them, `best` included.
pub fn load_ema<M: Module>(model: M, path: &Path) -> Result<M, CheckpointError> {
    let opened = Opened::open(path)?;
    let metadata = opened.metadata.metadata().clone().unwrap_or_default();
    let mut tally = Tally::default();
    let loaded = load_section(
        model,
        &opened,
        path,
        has_crc(&metadata).then_some(&mut tally),
        Some(EMA_PREFIX),
    );
    match has_checksum(&metadata) {
        true => intact(path, &opened, &metadata, &tally, loaded),
        false => loaded,
    }
}

/// [`load_opened`] of the model's tensors (`prefix` `None`: `model.{path}`, or bare names), or of
/// those under `prefix` alone.
pub(crate) fn load_section<M: Module>(
    model: M,
    opened: &Opened,
    path: &Path,
    tally: Option<&mut Tally>,
    prefix: Option<&str>,
) -> Result<M, CheckpointError> {
    let format = |message: String| CheckpointError::format(path, message);
    let loader = Loader {
        prefix,
        opened,
        tally,
        used: HashSet::new(),
        broken: None,
        missing: None,
        failed: None,
    };
    let (model, loader) = map_with_path(model, loader);
    let mismatch = |parameter: String, problem: String| CheckpointError::Mismatch {
        path: path.to_owned(),
        parameter,
        problem,
    };
    if let Some(message) = loader.broken {
        return Err(format(message));
    }
    if let Some((parameter, problem)) = loader.failed {
        return Err(mismatch(parameter, problem));
    }
    if let Some(parameter) = loader.missing {
        return Err(mismatch(parameter, "is missing from the checkpoint".into()));
    }
    let mut unused: Vec<String> = opened
        .metadata
        .offset_keys()
        .into_iter()
        .filter(|n| {
            !loader.used.contains(n)
                && match prefix {
                    Some(prefix) => n.starts_with(prefix),
                    None => !NOT_MODEL.iter().any(|other| n.starts_with(other)),
                }
        })
        .collect();
    unused.sort();
    if let Some(name) = unused.into_iter().next() {
        let name = name
            .strip_prefix(prefix.unwrap_or(MODEL_PREFIX))
            .map(str::to_owned)
            .unwrap_or(name);
        return Err(mismatch(name, "is in the checkpoint but not in the model".into()));
    }
    Ok(model)
}

/// Replaces each float parameter with its tensor from the file, noting the first problem of each kind.
struct Loader<'a> {
    /// Where the tensors are: `None` for the model's (`model.{path}`, or a bare name).
    prefix: Option<&'a str>,
    opened: &'a Opened,
    /// Where the CRC-32C of each tensor read goes, for a file that carries one.
    tally: Option<&'a mut Tally>,
    /// Names of the tensors loaded.
    used: HashSet<String>,
    /// The file is damaged (or unreadable) where a parameter lies.
    broken: Option<String>,
    /// The first parameter the file lacks.
    missing: Option<String>,
    /// The first parameter whose tensor does not fit, and why.
    failed: Option<(String, String)>,
}

impl Loader<'_> {
    /// The parameter's values from the file in burn's layout, or what is wrong.
    fn read(&mut self, name: &str, transpose: bool, shape: &[usize]) -> Result<TensorData, Problem> {
        let info = self.opened.metadata.info(name).ok_or(Problem::Missing)?.clone();
        let dtype = match info.dtype {
            Dtype::F64 => DType::F64,
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(Problem::Mismatch(format!(
                    "has dtype {other:?} in the checkpoint, the model expects a float"
                )));
            }
        };
        let mut found = info.shape.clone();
        if transpose && found.len() == 2 {
            found.swap(0, 1);
        }
        if found != shape {
            return Err(Problem::Mismatch(format!(
                "has shape {found:?} in the checkpoint, the model expects {shape:?}"
            )));
        }
        let (at, len) = self.opened.span(name).map_err(Problem::Broken)?;
        let element = dtype.size();
        let size = found.iter().try_fold(element, |n, &d| n.checked_mul(d));
        if size != Some(len) {
            return Err(Problem::Broken(format!(
                "tensor `{name}` does not fill its shape"
            )));
        }
        let layout = match (transpose, info.shape.as_slice()) {
            // The file holds [out, in]: its columns are burn's rows.
            (true, &[rows, cols]) => Layout::Transposed { rows, cols, element },
            _ => Layout::Flat,
        };
        // In memory aligned for the elements, which burn takes as it is.
        let sum = self.tally.is_some();
        let opened = self.opened;
        let (bytes, crc) = match element {
            2 => opened
                .read_tensor::<u16>(at, len, layout, sum)
                .map(|(w, crc)| (Bytes::from_elems(w), crc)),
            4 => opened
                .read_tensor::<u32>(at, len, layout, sum)
                .map(|(w, crc)| (Bytes::from_elems(w), crc)),
            _ => opened
                .read_tensor::<u64>(at, len, layout, sum)
                .map(|(w, crc)| (Bytes::from_elems(w), crc)),
        }
        .map_err(|e| Problem::Broken(format!("tensor `{name}`: {e}")))?;
        if let (Some(tally), Some(crc)) = (self.tally.as_deref_mut(), crc) {
            tally.note(name, crc);
        }
        TensorData::try_from_bytes(bytes, found, dtype)
            .map_err(|e| Problem::Broken(format!("tensor `{name}`: {e}")))
    }
}

enum Problem {
    Missing,
    Mismatch(String),
    Broken(String),
}

impl PathMapper for Loader<'_> {
    fn map_float<const D: usize>(&mut self, at: &ModulePath, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.broken.is_some() {
            return param;
        }
        let parameter = format!("{}{}", self.prefix.unwrap_or_default(), at.burn_name());
        let (name, transpose) = at.file_name(D);
        let name = match self.prefix {
            Some(prefix) => format!("{prefix}{name}"),
            None => {
                let prefixed = format!("{MODEL_PREFIX}{name}");
                match self.opened.metadata.info(&prefixed) {
                    Some(_) => prefixed,
                    None => name,
                }
            }
        };
        let shape = param.lazy_shape().to_vec();
        match self.read(&name, transpose, &shape) {
            Ok(data) => {
                self.used.insert(name);
                // In the parameter's own dtype, not the device's default (half precision in a
                // mixed-precision run, whose master weights stay f32). A parameter not drawn yet
                // would be drawn in the device's default, and is not drawn just to ask: that
                // would cost as much as the load.
                let device = param.lazy_device();
                let dtype = match param.is_initialized() {
                    true => param.base().dtype(),
                    false => DType::from(device.settings().float_dtype),
                };
                let tensor = Tensor::from_data(data, (&device, dtype));
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            Err(Problem::Missing) => {
                self.missing.get_or_insert(parameter);
                param
            }
            Err(Problem::Mismatch(problem)) => {
                self.used.insert(name);
                self.failed.get_or_insert((parameter, problem));
                param
            }
            Err(Problem::Broken(message)) => {
                self.broken = Some(message);
                param
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use burn::module::Module;
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};
    use safetensors::tensor::{Dtype, TensorView};

    use super::{load_model, save_model};
    use crate::checkpoint::CheckpointError;

    #[derive(Module, Debug)]
    struct Net {
        layers: Vec<Linear>,
        norm: LayerNorm,
    }

    fn net(device: &Device, seed: u64, widths: &[usize]) -> Net {
        device.seed(seed);
        Net {
            layers: widths
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
            norm: LayerNormConfig::new(*widths.last().unwrap_or(&1)).init(device),
        }
    }

    fn values(net: &Net) -> Vec<Vec<f32>> {
        let mut all: Vec<Tensor<1>> = Vec::new();
        for layer in &net.layers {
            all.push(layer.weight.val().flatten(0, 1));
            all.extend(layer.bias.as_ref().map(|b| b.val()));
        }
        all.push(net.norm.gamma.val());
        all.extend(net.norm.beta.as_ref().map(|b| b.val()));
        all.into_iter()
            .map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    fn problem(result: Result<Net, CheckpointError>) -> String {
        result.map(|_| ()).unwrap_err().to_string()
    }

    /// Writes `tensors` (name, shape, f32 values) as a safetensors file.
    fn write(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(&str, TensorView<'_>)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| (*name, TensorView::new(Dtype::F32, shape.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None::<HashMap<String, String>>, path).unwrap();
    }

    #[test]
    fn a_saved_model_loads_back_exactly_into_a_fresh_one_on_either_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let device = Device::flex();
        let saved = net(&device, 1, &[5, 7, 3]);
        save_model(&saved, &path).unwrap();
        let loaded = load_model(net(&device, 2, &[5, 7, 3]), &path).unwrap();
        assert_eq!(values(&loaded), values(&saved));
        let trainable = load_model(net(&device.autodiff(), 3, &[5, 7, 3]), &path).unwrap();
        assert_eq!(values(&trainable), values(&saved));
        assert!(trainable.layers[0].weight.val().is_require_grad());
    }

    #[test]
    fn names_without_the_prefix_load_and_weights_are_read_as_out_by_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state_dict.safetensors");
        // A PyTorch state dict: Linear(2, 3) weight is [3, 2]; LayerNorm's are weight and bias.
        let w: Vec<f32> = (0..6).map(|x| x as f32).collect();
        write(
            &path,
            &[
                ("layers.0.weight", vec![3, 2], w),
                ("layers.0.bias", vec![3], vec![0.5, 0.6, 0.7]),
                ("norm.weight", vec![3], vec![1.0, 2.0, 3.0]),
                ("norm.bias", vec![3], vec![4.0, 5.0, 6.0]),
            ],
        );
        let loaded = load_model(net(&Device::flex(), 1, &[2, 3]), &path).unwrap();
        // burn's [in, out] is the transpose: row i holds input i's weight to each output.
        assert_eq!(values(&loaded)[0], [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        assert_eq!(values(&loaded)[2], [1.0, 2.0, 3.0]);
        assert_eq!(values(&loaded)[3], [4.0, 5.0, 6.0]);
    }

    #[test]
    fn the_first_mismatched_parameter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let device = Device::flex();
        save_model(&net(&device, 1, &[5, 7, 3]), &path).unwrap();

        let err = problem(load_model(net(&device, 1, &[5, 8, 3]), &path));
        assert!(
            err.contains("`layers.0.weight` has shape [5, 7] in the checkpoint, the model expects [5, 8]"),
            "{err}"
        );
        let err = problem(load_model(net(&device, 1, &[5, 7, 3, 3]), &path));
        assert!(
            err.contains("`layers.2.weight` is missing from the checkpoint"),
            "{err}"
        );
        let bigger = dir.path().join("bigger.safetensors");
        save_model(&net(&device, 1, &[5, 7, 3, 3]), &bigger).unwrap();
        let err = problem(load_model(net(&device, 1, &[5, 7, 3]), &bigger));
        assert!(
            err.contains("`layers.2.bias` is in the checkpoint but not in the model"),
            "{err}"
        );

        // A cut file is damaged, not a mismatch, and says which file.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 9]).unwrap();
        let err = problem(load_model(net(&device, 1, &[5, 7, 3]), &path));
        assert!(
            err.contains("m.safetensors") && !err.contains("does not match"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..5]).unwrap();
        let err = problem(load_model(net(&device, 1, &[5, 7, 3]), &path));
        assert!(err.contains("not a safetensors file: shorter"), "{err}");
    }
}
