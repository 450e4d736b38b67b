//! The runner's files of record: where a run resumes from, restoring a checkpoint, and writing
//! `latest`, `best`, `epoch-N` and `step-N` with their retention.

use std::path::{Path, PathBuf};

use burn::module::Module;

use super::base::LATEST;
use super::ema::Ema;
use super::platform::broadcast_json;
use super::session::Session;
use super::{EpochProgress, Platform, Runner, RunnerError, State, Task};
use super::{mixed, retention};
use crate::checkpoint::{Checkpoint, CheckpointError, Prepared, load_with_ema, read_resumable};
use crate::config::{Resume, Sections};
use crate::fs::{IoError, PendingFiles, link_atomic};
use crate::identity::{Identity, Parent};
use crate::optim::LrScheduler;
use crate::results::Results;
use crate::state::Runtime;
use crate::workspace::WorkspaceError;
use crate::workspace::files::CHECKPOINT_EXTENSION;

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// The file a run resumes from: `checkpoint`; else, when `resume` is set, the newest intact
    /// checkpoint (by step) of this run's checkpoint directory, `latest` first on a tie. Returns
    /// warnings naming the corrupt files passed over.
    ///
    /// Rank 0 decides, and tells the other ranks, which need not see its files. A checkpoint
    /// directory that exists but cannot be read is an error, not a fresh start.
    pub(super) fn resume_source(&self) -> Result<(Option<PathBuf>, Vec<String>), RunnerError> {
        let (path, warnings) = match self.platform.is_main() {
            true => self.find_resume_source()?,
            false => (None, Vec::new()),
        };
        // The other ranks only name the path (they receive the file from rank 0), so a lossy
        // rendering of a path that is not UTF-8 serves them; rank 0 keeps its own.
        let sent = path.as_ref().map(|p| p.to_string_lossy().into_owned());
        let received = broadcast_json(&self.platform, "the checkpoint to resume from", sent)?;
        let path = match self.platform.is_main() {
            true => path,
            false => received.map(PathBuf::from),
        };
        Ok((path, warnings))
    }

    fn find_resume_source(&self) -> Result<(Option<PathBuf>, Vec<String>), RunnerError> {
        if let Some(path) = &self.config.checkpoint {
            return Ok((Some(path.clone()), Vec::new()));
        }
        if !self.config.resume.is_on() {
            return Ok((None, Vec::new()));
        }
        let dir = &self.identity.checkpoint_dir;
        let unreadable = |error| RunnerError::from(WorkspaceError::io("read directory", dir)(error));
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
            Err(error) => return Err(unreadable(error)),
        };
        let mut warnings = Vec::new();
        let mut damaged = None;
        let mut best: Option<((u64, u64, bool), PathBuf)> = None;
        for entry in entries {
            let path = entry.map_err(unreadable)?.path();
            if path.extension().is_none_or(|ext| ext != CHECKPOINT_EXTENSION) {
                continue;
            }
            match read_resumable(&path) {
                Ok(checkpoint) => {
                    let is_latest = path.file_stem().is_some_and(|stem| stem == LATEST);
                    let rank = (checkpoint.state.step, checkpoint.state.iter, is_latest);
                    if best.as_ref().is_none_or(|(top, _)| rank > *top) {
                        best = Some((rank, path));
                    }
                }
                Err(error) => {
                    let error = error.to_string();
                    // The newest one's error names what happened to the run's latest state.
                    if damaged.is_none() || path.file_stem().is_some_and(|stem| stem == LATEST) {
                        damaged = Some(error.clone());
                    }
                    warnings.push(format!(
                        "skipping a checkpoint that cannot be resumed from: {error}"
                    ));
                }
            }
        }
        // `resume: auto` starts fresh only where nothing was saved: a run whose every checkpoint is
        // damaged is not silently trained again from scratch.
        if best.is_none() && self.config.resume == Resume::Auto && !warnings.is_empty() {
            return Err(RunnerError::NoIntactCheckpoint {
                dir: dir.clone(),
                count: warnings.len(),
                first: damaged.unwrap_or_default(),
            });
        }
        Ok((best.map(|(_, path)| path), warnings))
    }

    /// Loads the model, optimizer and state of a checkpoint; returns its results history and the
    /// identity of the run that wrote it.
    ///
    /// The run goes on under the identity, and so in the run directory, of the resolved config, never
    /// in the directory the file names. A checkpoint of another id becomes this run's `parent`; one of
    /// the same id passes its own lineage on.
    ///
    /// Rank 0 reads the file and sends it to the other ranks, which need not see its files.
    /// The third value is a note for the log when the checkpoint was trained on another layout of the
    /// same global batch.
    pub(super) fn restore(
        &mut self,
        path: &Path,
    ) -> Result<(Results, Identity, Option<String>), RunnerError> {
        let received = self.receive_checkpoint(path)?;
        let local = received.as_ref().map_or(path, |copy| copy.path());
        let averaged = self.config.ema.as_ref().map(|_| self.model().valid());
        let (model, ema, optimizer, checkpoint) =
            load_with_ema(local, self.model().valid(), averaged, self.fresh_optimizer()?)?;
        drop(received);
        self.model = Some(self.platform.prepare(mixed::master(model))?);
        self.optimizer = optimizer;
        if let (Some(config), Some(ema)) = (&self.config.ema, ema) {
            self.ema = Some(Ema::new(config.decay, ema));
        }
        self.state = checkpoint.state;
        let note = self.adapt_layout(checkpoint.runtime, &checkpoint.config)?;
        let source = checkpoint.identity;
        self.identity.parent = if source.id == self.identity.id {
            source.parent.clone()
        } else {
            Some(Parent {
                id: source.id.clone(),
                // The lineage names the file; as given when it cannot be resolved (rank 1 of a job
                // whose files are on rank 0's machine).
                checkpoint: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
                step: self.state.step,
            })
        };
        Ok((checkpoint.results, source, note))
    }

    /// On a rank other than 0 of a multi-process run, a private copy of rank 0's file `path`.
    fn receive_checkpoint(&self, path: &Path) -> Result<Option<Received>, RunnerError> {
        if self.platform.world_size() <= 1 {
            return Ok(None);
        }
        let mut bytes = match self.platform.is_main() {
            true => std::fs::read(path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => CheckpointError::Missing {
                    path: path.to_owned(),
                },
                _ => CheckpointError::Read {
                    path: path.to_owned(),
                    source,
                },
            })?,
            false => Vec::new(),
        };
        self.platform.broadcast(&mut bytes)?;
        if self.platform.is_main() {
            return Ok(None);
        }
        let copy = std::env::temp_dir().join(format!(
            "danling-{}-rank{}.{CHECKPOINT_EXTENSION}",
            std::process::id(),
            self.platform.rank()
        ));
        std::fs::write(&copy, &bytes).map_err(IoError::at("write", &copy))?;
        Ok(Some(Received(copy)))
    }

    /// Checks that a checkpoint continues with this run's global batch, and moves the cursor of an
    /// epoch in progress onto this run's batches when the same global batch is laid out otherwise
    /// (2 ranks × 64 resumed as 1 × 128, or as 1 × 64 with `accum_steps: 2`).
    fn adapt_layout(
        &mut self,
        runtime: Option<Runtime>,
        config: &serde_json::Value,
    ) -> Result<Option<String>, RunnerError> {
        let Some(before) = runtime else {
            return Ok(None); // a checkpoint of an earlier version: one process, the batch unknown
        };
        // A config written before `accum_steps` existed: one micro-batch per step.
        let accum_before = config
            .get("accum_steps")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        let micro_before = before.batch_size * before.world_size;
        let micro = self.global_batch();
        let accum = self.config.accum_steps;
        if micro_before as u64 * accum_before != micro as u64 * accum {
            return Err(RunnerError::GlobalBatch {
                before: (before.batch_size, before.world_size, accum_before),
                now: (self.batch_size(), self.platform.world_size(), accum),
            });
        }
        let layout = (self.batch_size(), self.platform.world_size(), accum);
        if (before.batch_size, before.world_size, accum_before) == layout {
            return Ok(None);
        }
        if let Some(progress) = self.state.progress.as_mut().filter(|_| micro_before != micro) {
            let len = self.splits.get(progress.split).map_or(0, |s| s.dataset.len());
            let samples = (progress.cursor as usize * micro_before).min(len);
            progress.cursor = samples.div_ceil(micro) as u64;
        }
        Ok(Some(format!(
            "the checkpoint was trained on {} process(es) × batch {} × accum_steps {accum_before}, and goes on \
             on {} × {} × {accum}: the same global batch of {}, so the run continues the same trajectory \
             (to float rounding)",
            before.world_size,
            before.batch_size,
            self.platform.world_size(),
            self.batch_size(),
            micro as u64 * accum,
        )))
    }

    /// Waits for the background writer, if one is running, and returns what it met; the files it
    /// wrote then go to the callbacks' `on_checkpoint`.
    pub(super) fn finish_writes(&mut self) -> Result<(), RunnerError> {
        let written = match self.writer.take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|panic| Err(RunnerError::Writer(panic_message(&panic)))),
            None => Ok(()),
        };
        let paths = std::mem::take(&mut self.writing);
        if written.is_ok() {
            for path in paths {
                self.checkpoint_event(&path);
            }
        }
        written
    }

    /// The checkpoint as it stands, read into memory.
    fn prepare(
        &self,
        session: &Session,
        scheduler: &LrScheduler,
        progress: Option<EpochProgress>,
        path: &Path,
    ) -> Result<Prepared, RunnerError> {
        let checkpoint = Checkpoint {
            config: self.config.to_value(),
            state: State {
                progress,
                callbacks: self.hooks.states(),
                metrics_log: session.metrics_len()?,
                ..self.state.clone()
            },
            results: session.results().clone(),
            identity: self.identity.clone(),
            scheduler: Some(scheduler.clone()),
            runtime: Some(Runtime {
                world_size: self.platform.world_size(),
                batch_size: self.batch_size(),
                device: Some(self.platform.kind()),
            }),
        };
        // Published after every step already; again here, so that no path to a checkpoint can
        // read a buffer one update old.
        super::buffers::sync(self.model());
        let ema = self.ema.as_ref().map(Ema::model);
        Ok(Prepared::new(
            path,
            self.model(),
            ema,
            &self.optimizer,
            &checkpoint,
        )?)
    }

    /// Writes a full checkpoint named `name` into the checkpoint directory (on the main process),
    /// before returning.
    pub(super) fn save_full(
        &mut self,
        session: &Session,
        scheduler: &LrScheduler,
        progress: Option<EpochProgress>,
        name: &str,
    ) -> Result<(), RunnerError> {
        self.finish_writes()?;
        let Some(dir) = session.checkpoint_dir() else {
            return Ok(());
        };
        let path = dir.join(checkpoint_file(name));
        self.prepare(session, scheduler, progress, &path)?
            .write(&path)
            .map_err(RunnerError::saving)?;
        self.checkpoint_event(&path);
        Ok(())
    }

    /// The end-of-epoch files: the results files `results`, and beside them the checkpoints
    /// `latest`, `best` when the latest result is the best, and `epoch-N` every `save_interval`
    /// epochs, with the `keep_latest_k` retention of the history.
    ///
    /// The state is captured here; reading it out, checksumming, writing and syncing happen on a
    /// background thread while the next epoch trains (each file still appears whole, by rename). The
    /// next save, and the end of `train`, wait for it and report what it met.
    ///
    /// The results files are renamed into place only once the checkpoints are: when a checkpoint
    /// cannot be written, all the files stay as the previous epoch left them. (When only the results
    /// files fail, the checkpoints are ahead of them, which resuming mends: it rewrites the results
    /// files from the checkpoint.)
    pub(super) fn save_checkpoints(
        &mut self,
        session: &Session,
        scheduler: &LrScheduler,
        is_best: bool,
        results: PendingFiles,
    ) -> Result<(), RunnerError> {
        self.finish_writes()?;
        let Some(dir) = session.checkpoint_dir().map(Path::to_owned) else {
            return results.write().map_err(RunnerError::saving);
        };
        let latest = dir.join(checkpoint_file(LATEST));
        let prepared = self.prepare(session, scheduler, None, &latest)?;
        let mut copies = Vec::new();
        if is_best {
            copies.push("best".to_owned());
        }
        let history = self
            .config
            .save_interval
            .filter(|&n| n > 0)
            .is_some_and(|every| self.state.epoch.is_multiple_of(every));
        if history {
            copies.push(format!("epoch-{}", self.state.epoch));
        }
        let keep = self.config.keep_latest_k;
        self.writing = std::iter::once(latest.clone())
            .chain(copies.iter().map(|name| dir.join(checkpoint_file(name))))
            .collect();
        let checkpoint = move || -> Result<(), RunnerError> {
            prepared.write(&latest).map_err(RunnerError::saving)?;
            // The others hold the same state as `latest`: second names for its file (which is only
            // ever replaced by rename), not second serialisations.
            for name in copies {
                link_atomic(&latest, &dir.join(checkpoint_file(&name)))
                    .map_err(|e| RunnerError::Save(e.into()))?;
            }
            if history {
                prune(&dir, keep)?;
            }
            Ok(())
        };
        // Side by side up to the renames: the results files are written and synced while the
        // checkpoint is, since most of the time goes into waiting for syncs.
        let write = move || -> Result<(), RunnerError> {
            std::thread::scope(|scope| {
                let results = scope.spawn(|| results.stage());
                let written = checkpoint();
                let staged = match results.join() {
                    Ok(staged) => staged.map_err(|e| RunnerError::Save(e.into())),
                    Err(panic) => Err(RunnerError::Writer(panic_message(&panic))),
                };
                // A failed checkpoint drops the staged files, which removes them.
                written?;
                staged?.commit().map_err(|e| RunnerError::Save(e.into()))
            })
        };
        let writer = std::thread::Builder::new()
            .name("danling-checkpoint".to_owned())
            .spawn(write)
            .map_err(|e| RunnerError::Writer(e.to_string()))?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Applies `keep_latest_k` to the `epoch-N` and `step-N` histories.
    pub(super) fn prune(&self, session: &Session) -> Result<(), RunnerError> {
        match session.checkpoint_dir() {
            Some(dir) => prune(dir, self.config.keep_latest_k),
            None => Ok(()),
        }
    }
}

/// Applies `keep` (`keep_latest_k`) to the `epoch-N` and `step-N` histories in `dir`: deletes what
/// [`retention::to_delete`] names.
fn prune(dir: &Path, keep: Option<u64>) -> Result<(), RunnerError> {
    if keep.is_none() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(WorkspaceError::io("read directory", dir))
        .map_err(RunnerError::Save)?;
    // An entry that cannot be read is not deleted: retention keeps a file too many, never too few.
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    for name in retention::to_delete(names.iter().map(String::as_str), keep) {
        let path = dir.join(name);
        std::fs::remove_file(&path)
            .map_err(WorkspaceError::io("remove", &path))
            .map_err(RunnerError::Save)?;
    }
    Ok(())
}

/// The text of a panic's payload.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// The file name of the checkpoint called `name` (`latest`, `step-12`).
fn checkpoint_file(name: &str) -> String {
    format!("{name}.{CHECKPOINT_EXTENSION}")
}

/// A checkpoint received from rank 0, removed when dropped.
struct Received(PathBuf);

impl Received {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        // A private copy in the temporary directory: a removal that fails leaves litter, no error.
        let _ = std::fs::remove_file(&self.0);
    }
}
