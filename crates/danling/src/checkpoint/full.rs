//! Full checkpoints: model, optimizer, scheduler and the run's state, config, results and identity.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use safetensors::tensor::Dtype;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::CheckpointError;
use super::export::{Planned, export, plan};
use super::header::Opened;
use super::model::{header, load_opened, widest_first};
use super::optimizer::{assign_param_ids, load_optimizer, param_ids};
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
        written.map_err(WorkspaceError::io("write", file.target()))?;
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
    // Checked whole before the model is touched, and read from the same open file.
    let (opened, checkpoint, metadata) = verified(path)?;
    let ids: BTreeMap<String, u64> = field(path, &metadata, "param_ids")?;
    let model = load_opened(model, &opened, path)?;
    let model = assign_param_ids(model, &ids).map_err(|e| format(format!("param_ids: {e}")))?;
    let record = opened.read(OPTIMIZER).map_err(format)?;
    let optimizer =
        load_optimizer(record, &model, optimizer).map_err(|e| format(format!("optimizer state: {e}")))?;
    Ok((model, optimizer, checkpoint))
}

/// Reads what a checkpoint says about its run (config, state, results, identity, scheduler) without
/// loading any tensor into a model. The whole file is checked against its checksum.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    verified(path).map(|(_, checkpoint, _)| checkpoint)
}

/// Opens a full checkpoint, checks every tensor against the checksum (read a piece at a time, so
/// memory stays at one buffer however large the file), and parses its metadata and scheduler.
fn verified(path: &Path) -> Result<(Opened, Checkpoint, HashMap<String, String>), CheckpointError> {
    let format = |message: String| CheckpointError::Format {
        path: path.to_owned(),
        message,
    };
    let opened = Opened::open(path)?;
    let metadata = opened.metadata.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some("danling.checkpoint")
        || !metadata.contains_key("state")
    {
        return Err(format(
            "not a full danling checkpoint (no `format = danling.checkpoint` and `state` metadata)".into(),
        ));
    }
    // Files from before the switch to CRC-32C carry a SHA-256.
    let (mut digest, expected) = match (metadata.get(CHECKSUM), metadata.get(LEGACY_CHECKSUM)) {
        (Some(expected), _) => (Digest::Crc(0), expected),
        (None, Some(expected)) => (Digest::Sha256(Sha256::new()), expected),
        (None, None) => return Err(format(CORRUPT.into())),
    };
    let mut names = opened.metadata.offset_keys();
    names.sort_unstable();
    let mut buffer = Vec::new();
    for name in &names {
        let (at, len) = opened.span(name).map_err(format)?;
        digest.name(name.as_bytes());
        digest.part_len(len);
        for start in (0..len).step_by(VERIFY_PIECE) {
            buffer.resize(VERIFY_PIECE.min(len - start), 0);
            opened
                .read_at(at + start as u64, &mut buffer)
                .map_err(|e| format(format!("tensor `{name}`: {e}")))?;
            digest.update(&buffer);
        }
    }
    if digest.finish() != *expected {
        return Err(format(CORRUPT.into()));
    }
    let scheduler = opened.read(SCHEDULER).map_err(format)?;
    let scheduler: Option<LrScheduler> =
        serde_json::from_slice(&scheduler).map_err(|e| format(format!("scheduler state: {e}")))?;
    let config: Value = field(path, &metadata, "config")?;
    if !config.is_object() {
        return Err(format("config: not a JSON object".into()));
    }
    let state: State = field(path, &metadata, "state")?;
    counted(&state).map_err(|e| format(format!("state: {e}")))?;
    let checkpoint = Checkpoint {
        config,
        state,
        results: field(path, &metadata, "results")?,
        identity: field(path, &metadata, "identity")?,
        scheduler,
    };
    Ok((opened, checkpoint, metadata))
}

/// The largest count a checkpoint's state may hold: more steps than any run takes, and far enough
/// below `u64::MAX` that counting on from it cannot overflow.
const MAX_COUNT: u64 = 1 << 53;

/// Checks that none of a run's counters is beyond [`MAX_COUNT`].
fn counted(state: &State) -> Result<(), String> {
    let skipped_before = state.progress.as_ref().map_or(0, |p| p.skipped_before);
    for (name, count) in [
        ("epoch", state.epoch),
        ("step", state.step),
        ("iter", state.iter),
        ("cursor", state.cursor),
        ("skipped", state.skipped),
        ("early_stop_counter", state.early_stop_counter),
        ("progress.skipped_before", skipped_before),
    ] {
        if count > MAX_COUNT {
            return Err(format!("`{name}` is {count}, more than any run counts"));
        }
    }
    Ok(())
}

/// What a file whose tensors do not match their checksum is told.
const CORRUPT: &str = "the tensor data does not match its checksum: the file is corrupt";

/// Bytes read at a time when checking a file against its checksum.
const VERIFY_PIECE: usize = if cfg!(test) { 3 } else { 8 << 20 };

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

/// A checksum over every tensor in name order: for each, the name's length (u64, little-endian),
/// the name, the data's length and the data. CRC-32C (8 hex digits) in files danling writes: it
/// detects torn writes and flipped bits (it is not meant to resist tampering), and runs in hardware
/// at memory speed, so the background writer hardly takes a core from training. SHA-256 (hex) in
/// files written before.
enum Digest {
    Crc(u32),
    Sha256(Sha256),
}

impl Digest {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Crc(crc) => *crc = crc32c::crc32c_append(*crc, bytes),
            Self::Sha256(hasher) => hasher.update(bytes),
        }
    }

    fn part_len(&mut self, len: usize) {
        self.update(&(len as u64).to_le_bytes());
    }

    /// A tensor's name, with its length.
    fn name(&mut self, name: &[u8]) {
        self.part_len(name.len());
        self.update(name);
    }

    fn finish(self) -> String {
        match self {
            Self::Crc(crc) => format!("{crc:08x}"),
            Self::Sha256(hasher) => hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The digest of tensors held in memory.
    fn of<'a>(mut self, tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
        let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
        sorted.sort_unstable_by_key(|(name, _)| *name);
        for (name, data) in sorted {
            self.name(name.as_bytes());
            self.part_len(data.len());
            self.update(data);
        }
        self.finish()
    }
}

/// The CRC-32C of tensors held in memory, as a checkpoint's metadata carries it.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    Digest::Crc(0).of(tensors)
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(value)
}

fn from_json<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::{Dtype, TensorView};

    use sha2::{Digest as _, Sha256};

    use super::{CHECKSUM, Digest, LEGACY_CHECKSUM, checksum, read_checkpoint};

    fn sha256<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
        Digest::Sha256(Sha256::new()).of(tensors)
    }

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

    /// What reading `bytes` as a checkpoint says (read a few bytes at a time under test).
    fn error(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        std::fs::write(&path, bytes).unwrap();
        match read_checkpoint(&path) {
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
        let intact = file(&[(CHECKSUM, checksum(tensors()))]);
        let err = error(&intact[..intact.len() - 1]);
        assert!(
            err.contains("`t` lies outside the file: it is truncated"),
            "{err}"
        );
    }
}
