//! Full checkpoints: model, optimizer, scheduler and the run's state, config, results and identity.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Tensor};
use safetensors::tensor::Dtype;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::CheckpointError;
use super::export::{Planned, export, plan};
use super::model::{header, load_model, widest_first};
use crate::identity::Identity;
use crate::optim::LrScheduler;
use crate::results::Results;
use crate::runner::State;
use crate::workspace::{AtomicFile, WorkspaceError};

const OPTIMIZER: &str = "optimizer.record";
const SCHEDULER: &str = "scheduler.state";

/// What a checkpoint holds besides the model and optimizer tensors.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The resolved config tree.
    pub config: Value,
    /// The run's progress.
    pub state: State,
    /// The results history.
    pub results: Results,
    /// The run's identity.
    pub identity: Identity,
    /// The learning-rate scheduler.
    pub scheduler: Option<LrScheduler>,
}

/// Writes a full checkpoint to `path`, atomically.
pub fn save_checkpoint<M: Module>(
    path: &Path,
    model: &M,
    optimizer: &ModuleOptimizer,
    checkpoint: &Checkpoint,
) -> Result<(), CheckpointError> {
    Prepared::new(path, model, optimizer, checkpoint)?.write(path)
}

/// A full checkpoint captured at one instant, to be read out and written on any thread while
/// training goes on.
///
/// It holds the model's parameters and the optimizer's state by handle (shared, not copied): the
/// writing thread copies each into the file's layout and lets go of it at once, so that the next
/// optimizer step finds its tensors unshared again and updates them in place.
pub(crate) struct Prepared {
    model: Vec<Planned>,
    optimizer: ModuleOptimizer,
    scheduler: Vec<u8>,
    metadata: HashMap<String, String>,
}

impl Prepared {
    /// Captures everything a checkpoint holds; `path` only names the file in errors.
    pub(crate) fn new<M: Module>(
        path: &Path,
        model: &M,
        optimizer: &ModuleOptimizer,
        checkpoint: &Checkpoint,
    ) -> Result<Self, CheckpointError> {
        let format = |message: String| CheckpointError::Format {
            path: path.to_owned(),
            message,
        };
        let planned = plan(model).map_err(format)?;
        let scheduler = serde_json::to_vec(&checkpoint.scheduler).map_err(|e| format(e.to_string()))?;
        let mut metadata = HashMap::from([
            ("format".to_owned(), "danling.checkpoint".to_owned()),
            ("version".to_owned(), "1".to_owned()),
        ]);
        let entries = [
            ("config", to_json(&checkpoint.config)),
            ("state", to_json(&checkpoint.state)),
            ("results", to_json(&checkpoint.results)),
            ("identity", to_json(&checkpoint.identity)),
            ("param_ids", to_json(&param_ids(model))),
        ];
        for (key, value) in entries {
            metadata.insert(key.to_owned(), value.map_err(|e| format(e.to_string()))?);
        }
        Ok(Self {
            model: planned,
            optimizer: optimizer.clone(),
            scheduler,
            metadata,
        })
    }

    /// Reads the tensors, checksums them and writes the file to `path`, atomically.
    pub(crate) fn write(self, path: &Path) -> Result<(), CheckpointError> {
        let format = |message: String| CheckpointError::Format {
            path: path.to_owned(),
            message,
        };
        let model = export(self.model);
        let record = self.optimizer.to_record();
        drop(self.optimizer);
        let optimizer = record
            .into_bytes()
            .map_err(|e| format(format!("optimizer state: {e}")))?;
        let mut tensors: Vec<(String, Dtype, Vec<usize>, &[u8])> = model
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone(), &t.bytes[..]))
            .collect();
        for (name, bytes) in [(OPTIMIZER, &optimizer[..]), (SCHEDULER, &self.scheduler[..])] {
            tensors.push((name.to_owned(), Dtype::U8, vec![bytes.len()], bytes));
        }
        widest_first(&mut tensors, |(_, dtype, ..)| *dtype);
        let mut metadata = self.metadata;
        metadata.insert(
            CHECKSUM.to_owned(),
            checksum(tensors.iter().map(|(name, .., bytes)| (name.as_str(), *bytes))),
        );
        let header = header(
            metadata,
            tensors
                .iter()
                .map(|(name, dtype, shape, bytes)| (name.clone(), *dtype, shape.clone(), bytes.len())),
        )
        .map_err(format)?;
        let size = header.len() + tensors.iter().map(|(.., bytes)| bytes.len()).sum::<usize>();
        let mut file = AtomicFile::create_large(path, size)?;
        let written = std::iter::once(&header[..])
            .chain(tensors.iter().map(|(.., bytes)| *bytes))
            .try_for_each(|bytes| file.write_all(bytes));
        written.map_err(WorkspaceError::io("write", file.temp_path()))?;
        file.commit()?;
        Ok(())
    }
}

/// Reads a full checkpoint: loads the model's weights into `model` (giving its parameters the ids they
/// had when saved) and the optimizer state into `optimizer`, and returns the rest.
pub fn load_checkpoint<M: Module>(
    path: &Path,
    model: M,
    optimizer: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer, Checkpoint), CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let model = load_model(model, path)?;
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_owned(),
        source,
    })?;
    let (checkpoint, metadata) = parse_metadata(path, &bytes)?;
    let ids: BTreeMap<String, u64> = field(path, &metadata, "param_ids")?;
    let model = assign_param_ids(model, &ids);
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
    let record = file
        .tensor(OPTIMIZER)
        .map_err(|_| format(format!("no `{OPTIMIZER}` tensor")))?;
    let optimizer = optimizer
        .from_bytes(Bytes::from_bytes_vec(record.data().to_vec()))
        .map_err(|e| format(format!("optimizer state: {e}")))?;
    Ok((model, optimizer, checkpoint))
}

/// Reads what a checkpoint says about its run (config, state, results, identity, scheduler) without
/// loading any tensor into a model.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    if !path.is_file() {
        return Err(CheckpointError::Missing {
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_metadata(path, &bytes).map(|(checkpoint, _)| checkpoint)
}

fn parse_metadata(
    path: &Path,
    bytes: &[u8],
) -> Result<(Checkpoint, HashMap<String, String>), CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| format(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some("danling.checkpoint")
        || !metadata.contains_key("state")
    {
        return Err(format(
            "not a full danling checkpoint (no `format = danling.checkpoint` and `state` metadata)".into(),
        ));
    }
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
    let tensors = file.tensors();
    let data = || tensors.iter().map(|(name, view)| (name.as_str(), view.data()));
    // Files from before the switch to CRC-32C carry a SHA-256.
    let intact = match (metadata.get(CHECKSUM), metadata.get(LEGACY_CHECKSUM)) {
        (Some(expected), _) => *expected == checksum(data()),
        (None, Some(expected)) => *expected == sha256(data()),
        (None, None) => false,
    };
    if !intact {
        return Err(format(
            "the tensor data does not match its checksum: the file is corrupt".into(),
        ));
    }
    let scheduler = file
        .tensor(SCHEDULER)
        .map_err(|_| format(format!("no `{SCHEDULER}` tensor")))?;
    let scheduler: Option<LrScheduler> =
        serde_json::from_slice(scheduler.data()).map_err(|e| format(format!("scheduler state: {e}")))?;
    let checkpoint = Checkpoint {
        config: field(path, &metadata, "config")?,
        state: field(path, &metadata, "state")?,
        results: field(path, &metadata, "results")?,
        identity: field(path, &metadata, "identity")?,
        scheduler,
    };
    Ok((checkpoint, metadata))
}

/// A JSON metadata field.
fn field<T: DeserializeOwned>(
    path: &Path,
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T, CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let text = metadata
        .get(key)
        .ok_or_else(|| format(format!("metadata has no `{key}`")))?;
    from_json(text).map_err(|e| format(format!("{key}: {e}")))
}

/// The metadata key of the checksum over the tensors, and that of the SHA-256 older files carry.
const CHECKSUM: &str = "crc32c";
const LEGACY_CHECKSUM: &str = "sha256";

/// Every tensor's name length, name, data length and data, in name order: what the checksum covers.
fn checksummed<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<&'a [u8]> {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    sorted
        .into_iter()
        .flat_map(|(name, data)| [name.as_bytes(), data])
        .collect()
}

/// CRC-32C (8 hex digits) over every tensor's name and bytes, in name order, each preceded by its
/// length. It detects torn writes and flipped bits (it is not meant to resist tampering), and runs
/// in hardware at memory speed, so the background writer hardly takes a core from training.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let crc = checksummed(tensors).into_iter().fold(0, |crc, part| {
        let crc = crc32c::crc32c_append(crc, &(part.len() as u64).to_le_bytes());
        crc32c::crc32c_append(crc, part)
    });
    format!("{crc:08x}")
}

/// SHA-256 (hex) of the same, as files written before CRC-32C carry it.
fn sha256<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for part in checksummed(tensors) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(value)
}

fn from_json<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(text)
}

/// Each float parameter's module path (`layers.0.weight`) and its `ParamId`.
fn param_ids<M: Module>(model: &M) -> BTreeMap<String, u64> {
    struct Collect {
        path: Vec<String>,
        ids: BTreeMap<String, u64>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.ids.insert(self.path.join("."), param.id.val());
        }
    }
    let mut visitor = Collect {
        path: Vec::new(),
        ids: BTreeMap::new(),
    };
    model.visit(&mut visitor);
    visitor.ids
}

/// Gives each float parameter the id recorded for its path.
fn assign_param_ids<M: Module>(model: M, ids: &BTreeMap<String, u64>) -> M {
    struct Assign<'a> {
        path: Vec<String>,
        ids: &'a BTreeMap<String, u64>,
    }
    impl ModuleMapper for Assign<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if let Some(&id) = self.ids.get(&self.path.join(".")) {
                param.id = ParamId::from(id);
            }
            param
        }
    }
    model.map(&mut Assign {
        path: Vec::new(),
        ids,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::{Dtype, TensorView};

    use super::{CHECKSUM, LEGACY_CHECKSUM, checksum, parse_metadata, sha256};

    /// A file with danling's format keys, a `state` that does not parse, one tensor, and `checks`.
    fn file(checks: &[(&str, String)]) -> Vec<u8> {
        let data = [1u8, 2, 3, 4];
        let view = TensorView::new(Dtype::U8, vec![4], &data).unwrap();
        let mut metadata = HashMap::from([
            ("format".to_owned(), "danling.checkpoint".to_owned()),
            ("state".to_owned(), "not json".to_owned()),
        ]);
        metadata.extend(checks.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        safetensors::serialize([("t", view)], Some(metadata)).unwrap()
    }

    fn error(bytes: &[u8]) -> String {
        match parse_metadata(std::path::Path::new("c.safetensors"), bytes) {
            Ok(_) => panic!("the state cannot parse"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_checksum_or_an_older_files_sha256_must_match_the_tensors() {
        let tensors = || [("t", &[1u8, 2, 3, 4][..])].into_iter();
        // Both known values from outside: the CRC-32C and SHA-256 of the same byte string.
        let mut covered = Vec::new();
        covered.extend(1u64.to_le_bytes());
        covered.extend(b"t");
        covered.extend(4u64.to_le_bytes());
        covered.extend([1, 2, 3, 4]);
        assert_eq!(checksum(tensors()), format!("{:08x}", crc32c::crc32c(&covered)));
        assert_eq!(sha256(tensors()).len(), 64);

        let corrupt = "does not match its checksum";
        for intact in [
            file(&[(CHECKSUM, checksum(tensors()))]),
            file(&[(LEGACY_CHECKSUM, sha256(tensors()))]),
        ] {
            let err = error(&intact);
            assert!(!err.contains(corrupt) && err.contains("state"), "{err}");
        }
        for damaged in [
            file(&[]),
            file(&[(CHECKSUM, "00000000".to_owned())]),
            file(&[(LEGACY_CHECKSUM, sha256([("t", &[9u8][..])].into_iter()))]),
        ] {
            let err = error(&damaged);
            assert!(err.contains(corrupt) && err.contains("c.safetensors"), "{err}");
        }
    }
}
