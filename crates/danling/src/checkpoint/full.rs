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

use super::CheckpointError;
use super::export::{Planned, export, plan, plan_prefixed};
use super::header::Opened;
use super::integrity::{CHECKSUM, Tally, checksum, has_crc, intact};
use super::model::{EMA_PREFIX, header, load_opened, load_section, widest_first};
use super::optimizer::{assign_param_ids, distinct_ids, load_optimizer, param_ids};
use crate::fs::{AtomicFile, IoError};
use crate::identity::Identity;
use crate::optim::LrScheduler;
use crate::results::{Results, Scoring};
use crate::state::{Runtime, State};

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
    /// How the run was laid out across processes (absent in checkpoints of earlier versions).
    pub runtime: Option<Runtime>,
}

/// Writes a full checkpoint to `path`, atomically.
pub fn save_checkpoint<M: Module>(
    path: &Path,
    model: &M,
    optimizer: &ModuleOptimizer,
    checkpoint: &Checkpoint,
) -> Result<(), CheckpointError> {
    Prepared::new(path, model, None, optimizer, checkpoint)?.write(path)
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
    /// Captures everything a checkpoint holds, the averaged weights `ema` (as `ema.{path}`) when the
    /// run keeps them; `path` only names the file in errors.
    pub(crate) fn new<M: Module>(
        path: &Path,
        model: &M,
        ema: Option<&M>,
        optimizer: &ModuleOptimizer,
        checkpoint: &Checkpoint,
    ) -> Result<Self, CheckpointError> {
        let format = |message: String| CheckpointError::format(path, message);
        let mut planned = plan(model).map_err(format)?;
        if let Some(ema) = ema {
            planned.extend(plan_prefixed(ema, EMA_PREFIX).map_err(format)?);
        }
        let scheduler = serde_json::to_vec(&checkpoint.scheduler).map_err(|e| format(e.to_string()))?;
        let mut metadata = HashMap::from([
            ("format".to_owned(), "danling.checkpoint".to_owned()),
            ("version".to_owned(), "1".to_owned()),
        ]);
        let entries = [
            ("config", to_json(&checkpoint.config)),
            (
                "state",
                to_json(&checkpoint.state.document(early_stop_counter(checkpoint))),
            ),
            ("results", to_json(&checkpoint.results)),
            ("identity", to_json(&checkpoint.identity)),
            ("param_ids", to_json(&param_ids(model))),
        ];
        if let Some(runtime) = &checkpoint.runtime {
            metadata.insert(
                "runtime".to_owned(),
                to_json(runtime).map_err(|e| format(e.to_string()))?,
            );
        }
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
        let format = |message: String| CheckpointError::format(path, message);
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
        written.map_err(IoError::at("write", file.target()))?;
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
    let (model, _, optimizer, checkpoint) = load_with_ema(path, model, None, optimizer)?;
    Ok((model, optimizer, checkpoint))
}

/// [`load_checkpoint`], and the averaged weights into `ema` when given: `None` back when the file
/// holds none (a checkpoint of a run without `ema`).
pub(crate) fn load_with_ema<M: Module>(
    path: &Path,
    model: M,
    ema: Option<M>,
    optimizer: ModuleOptimizer,
) -> Result<(M, Option<M>, ModuleOptimizer, Checkpoint), CheckpointError> {
    let format = |message: String| CheckpointError::format(path, message);
    let (opened, metadata) = open_full(path)?;
    // Each tensor is checksummed as it is read, once, and the rest of the file after: nothing read
    // is used (the model loaded is dropped, the optimizer state not decoded) unless the whole file
    // is intact, and a damaged file is told as damaged whatever else reading it found.
    let mut tally = Tally::default();
    let loaded = (|| -> Result<_, CheckpointError> {
        let checkpoint = parse(path, &opened, &metadata, &mut tally)?;
        let ids: BTreeMap<String, u64> = field(path, &metadata, "param_ids")?;
        let crc = has_crc(&metadata);
        let model = load_opened(model, &opened, path, crc.then_some(&mut tally))?;
        let saved = opened
            .metadata
            .offset_keys()
            .iter()
            .any(|name| name.starts_with(EMA_PREFIX));
        let ema = match ema.filter(|_| saved) {
            Some(ema) => Some(load_section(
                ema,
                &opened,
                path,
                crc.then_some(&mut tally),
                Some(EMA_PREFIX),
            )?),
            None => None,
        };
        let record = opened.read(OPTIMIZER, Some(&mut tally)).map_err(format)?;
        Ok((checkpoint, ids, model, ema, record))
    })();
    let (checkpoint, ids, model, ema, record) = intact(path, &opened, &metadata, &tally, loaded)?;
    let model = assign_param_ids(model, &ids).map_err(|e| format(format!("param_ids: {e}")))?;
    let optimizer =
        load_optimizer(record, &model, optimizer).map_err(|e| format(format!("optimizer state: {e}")))?;
    Ok((model, ema, optimizer, checkpoint))
}

/// Reads what a checkpoint says about its run (config, state, results, identity, scheduler) without
/// loading any tensor into a model. The whole file is checked against its checksum.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let (opened, metadata) = open_full(path)?;
    let mut tally = Tally::default();
    let parsed = parse(path, &opened, &metadata, &mut tally);
    intact(path, &opened, &metadata, &tally, parsed)
}

/// [`read_checkpoint`], and the `param_ids` that resuming from the file needs besides: a file that
/// passes fails to resume only if its tensors do not fit the model. Choosing the checkpoint to
/// resume from, a file that cannot be is passed over for an older one.
pub(crate) fn read_resumable(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let (opened, metadata) = open_full(path)?;
    let mut tally = Tally::default();
    let parsed = parse(path, &opened, &metadata, &mut tally).and_then(|checkpoint| {
        let ids: BTreeMap<String, u64> = field(path, &metadata, "param_ids")?;
        distinct_ids(&ids).map_err(|e| CheckpointError::format(path, format!("param_ids: {e}")))?;
        Ok(checkpoint)
    });
    intact(path, &opened, &metadata, &tally, parsed)
}

/// Opens a full checkpoint and its metadata (its format told by the metadata alone).
fn open_full(path: &Path) -> Result<(Opened, HashMap<String, String>), CheckpointError> {
    let opened = Opened::open(path)?;
    let metadata = opened.metadata.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some("danling.checkpoint")
        || !metadata.contains_key("state")
    {
        return Err(CheckpointError::format(
            path,
            "not a full danling checkpoint (no `format = danling.checkpoint` and `state` metadata)",
        ));
    }
    Ok((opened, metadata))
}

/// Parses a full checkpoint's metadata and scheduler (whose CRC-32C is noted in `tally`). Not to be
/// trusted until the file is found intact.
fn parse(
    path: &Path,
    opened: &Opened,
    metadata: &HashMap<String, String>,
    tally: &mut Tally,
) -> Result<Checkpoint, CheckpointError> {
    let format = |message: String| CheckpointError::format(path, message);
    let scheduler = opened.read(SCHEDULER, Some(tally)).map_err(format)?;
    let scheduler: Option<LrScheduler> =
        serde_json::from_slice(&scheduler).map_err(|e| format(format!("scheduler state: {e}")))?;
    let config: Value = field(path, metadata, "config")?;
    if !config.is_object() {
        return Err(format("config: not a JSON object".into()));
    }
    let state: State = field(path, metadata, "state")?;
    counted(&state).map_err(|e| format(format!("state: {e}")))?;
    Ok(Checkpoint {
        config,
        state,
        results: field(path, metadata, "results")?,
        identity: field(path, metadata, "identity")?,
        scheduler,
        runtime: match metadata.contains_key("runtime") {
            true => Some(field(path, metadata, "runtime")?),
            false => None,
        },
    })
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
        ("cursor", state.cursor()),
        ("skipped", state.skipped),
        ("progress.skipped_before", skipped_before),
    ] {
        if count > MAX_COUNT {
            return Err(format!("`{name}` is {count}, more than any run counts"));
        }
    }
    Ok(())
}

/// The early-stop counter the checkpoint's `state` records for its readers: evaluations since the best,
/// under the scoring of the checkpoint's config. Derived, and not read back.
fn early_stop_counter(checkpoint: &Checkpoint) -> u64 {
    let key = |key: &str| checkpoint.config.get(key).and_then(Value::as_str);
    // Only for readers and never read back: a `score_mode` this version does not know counts as
    // none (the score name's default), rather than failing a save over a derived number.
    let mode = key("score_mode").and_then(|mode| serde_json::from_value(Value::String(mode.to_owned())).ok());
    let scoring = Scoring::new(
        key("score_split").map(str::to_owned),
        key("score_name").unwrap_or("loss"),
        mode,
    );
    checkpoint.results.stale_count(&scoring)
}

/// A JSON metadata field.
fn field<T: DeserializeOwned>(
    path: &Path,
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T, CheckpointError> {
    let format = |message: String| CheckpointError::format(path, message);
    let text = metadata
        .get(key)
        .ok_or_else(|| format(format!("metadata has no `{key}`")))?;
    from_json(text).map_err(|e| format(format!("{key}: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(value)
}

fn from_json<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_str(text)
}
