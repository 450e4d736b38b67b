//! Minimal TensorBoard event-file writer and reader.
//!
//! TensorBoard reads `events.out.tfevents.*` files: a sequence of TFRecords, each holding one
//! protobuf-encoded `Event` (`tensorflow/core/util/event.proto`). Only scalars are needed for
//! training curves, so this module hand-encodes that small subset of the schema instead of
//! pulling in a protobuf toolchain. The reader exists so tests (ours and users') can check
//! exactly what TensorBoard will see, including both CRCs of every record.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fs::IoError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod hparams;
mod read;

pub use hparams::{HParam, SessionStatus};

pub use read::read_events;

/// Version string TensorBoard expects in the first event of every file.
const FILE_VERSION: &str = "brain.Event:2";

/// Distinguishes writers created in the same second by the same process.
static WRITER_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(super) const WIRE_VARINT: u64 = 0;
pub(super) const WIRE_FIXED64: u64 = 1;
pub(super) const WIRE_LEN: u64 = 2;
pub(super) const WIRE_START_GROUP: u64 = 3;
pub(super) const WIRE_END_GROUP: u64 = 4;
pub(super) const WIRE_FIXED32: u64 = 5;

/// Errors from writing or reading TensorBoard event files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorBoardError {
    /// I/O on an event file or its directory failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A record whose framing or CRC is wrong, or whose protobuf cannot be decoded.
    #[error("tensorboard: corrupt event file {}: {reason}", path.display())]
    Corrupt {
        /// The event file that failed to parse.
        path: PathBuf,
        /// Which record was bad and why.
        reason: String,
    },
}

/// One decoded event, as TensorBoard would see it (scalar summaries only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// Seconds since the UNIX epoch when the event was written.
    pub wall_time: f64,
    /// Training step the event belongs to (0 when absent).
    pub step: i64,
    /// Set only on the file's header event (`"brain.Event:2"`).
    pub file_version: Option<String>,
    /// `(tag, simple_value)` pairs in file order; non-scalar summary values are skipped.
    pub scalars: Vec<(String, f32)>,
}

/// Appends scalar events to one new TensorBoard event file.
///
/// Each event is written with a single `write_all`, so a crash loses at most the event being
/// written; call [`EventWriter::sync`] when durability on disk matters.
#[derive(Debug)]
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` if needed and a new file
    /// `events.out.tfevents.{unix_secs}.{hostname}.{pid}.{counter}` in it, then writes the
    /// header event TensorBoard requires (file version `brain.Event:2`, step 0).
    ///
    /// The process-wide counter keeps two writers in one process from sharing a file, and the
    /// file is opened with `create_new` so an existing file is never overwritten.
    pub fn create(dir: &Path) -> Result<Self, TensorBoardError> {
        fs::create_dir_all(dir).map_err(IoError::at("create tensorboard directory", dir))?;
        let now = since_epoch();
        let (host, pid) = (hostname(), std::process::id());
        let counter = WRITER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("events.out.tfevents.{}.{host}.{pid}.{counter}", now.as_secs());
        let path = dir.join(name);
        let file = File::create_new(&path).map_err(IoError::at("create tensorboard file", &path))?;
        let mut writer = Self { file, path };
        writer.write_event(&encode_event(now.as_secs_f64(), 0, Some(FILE_VERSION), &[]))?;
        Ok(writer)
    }

    /// Appends one event holding one summary value per `(tag, value)` pair at `step`.
    ///
    /// Values are stored as `f32` (TensorBoard's `simple_value`, so magnitudes beyond `f32::MAX`
    /// become infinite); non-finite values are written unchanged so divergence stays visible.
    /// The event reaches the OS (one `write_all`) before this returns; it is not fsynced.
    pub fn add_scalars<'a>(
        &mut self,
        step: i64,
        scalars: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<(), TensorBoardError> {
        let values: Vec<(&str, f32)> = scalars
            .into_iter()
            .map(|(tag, value)| (tag, value as f32))
            .collect();
        self.write_event(&encode_event(since_epoch().as_secs_f64(), step, None, &values))
    }

    /// Appends the HParams dashboard's `session_start_info`: the run's hyperparameters (config
    /// values by dotted key) and its group.
    pub fn add_session_start(
        &mut self,
        hparams: &std::collections::BTreeMap<String, HParam>,
        group: &str,
    ) -> Result<(), TensorBoardError> {
        let now = since_epoch().as_secs_f64();
        let summary = hparams::session_start(hparams, group, now);
        self.write_event(&encode_summary_event(now, 0, &summary))
    }

    /// Appends the HParams dashboard's `session_end_info`: how the run ended.
    pub fn add_session_end(&mut self, status: SessionStatus, step: i64) -> Result<(), TensorBoardError> {
        let now = since_epoch().as_secs_f64();
        let summary = hparams::session_end(status, now);
        self.write_event(&encode_summary_event(now, step, &summary))
    }

    /// Appends one event holding a single scalar; see [`EventWriter::add_scalars`].
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<(), TensorBoardError> {
        self.add_scalars(step, [(tag, value)])
    }

    /// Forces written events to disk (fsync), e.g. at checkpoints or before exit.
    pub fn sync(&mut self) -> Result<(), TensorBoardError> {
        self.file
            .sync_all()
            .map_err(IoError::at("sync tensorboard file", &self.path))?;
        Ok(())
    }

    /// The event file's path, for logging or for reading it back with [`read_events`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, data: &[u8]) -> Result<(), TensorBoardError> {
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(data);
        record.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file
            .write_all(&record)
            .map_err(IoError::at("write tensorboard file", &self.path))?;
        Ok(())
    }
}

/// TFRecord's masked CRC32C: rotating and offsetting keeps CRCs of data that itself contains
/// CRCs from being degenerate.
pub(super) fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

fn since_epoch() -> Duration {
    // A clock before 1970 stamps the events 0: their order and steps are what TensorBoard plots.
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Host name for the file name, restricted to characters that are safe in any file name.
fn hostname() -> String {
    let non_empty = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    // Only part of the event file's name: any host name will do.
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(non_empty)
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .unwrap_or_else(|| "localhost".to_owned())
        .replace(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)), "_")
}

pub(super) fn encode_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

pub(super) fn encode_key(buf: &mut Vec<u8>, field: u64, wire: u64) {
    encode_varint(buf, (field << 3) | wire);
}

pub(super) fn encode_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    encode_key(buf, field, WIRE_LEN);
    encode_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Encodes an `Event` holding an encoded `Summary`.
fn encode_summary_event(wall_time: f64, step: i64, summary: &[u8]) -> Vec<u8> {
    let mut event = Vec::new();
    encode_key(&mut event, 1, WIRE_FIXED64);
    event.extend_from_slice(&wall_time.to_le_bytes());
    encode_key(&mut event, 2, WIRE_VARINT);
    encode_varint(&mut event, step as u64);
    encode_bytes(&mut event, 5, summary);
    event
}

/// Encodes an `Event`; `wall_time` and `step` are always written, even when zero.
fn encode_event(wall_time: f64, step: i64, file_version: Option<&str>, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut event = Vec::new();
    encode_key(&mut event, 1, WIRE_FIXED64);
    event.extend_from_slice(&wall_time.to_le_bytes());
    encode_key(&mut event, 2, WIRE_VARINT);
    encode_varint(&mut event, step as u64);
    if let Some(version) = file_version {
        encode_bytes(&mut event, 3, version.as_bytes());
    }
    if !scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut entry = Vec::new();
            encode_bytes(&mut entry, 1, tag.as_bytes());
            encode_key(&mut entry, 2, WIRE_FIXED32);
            entry.extend_from_slice(&value.to_le_bytes());
            encode_bytes(&mut summary, 1, &entry);
        }
        encode_bytes(&mut event, 5, &summary);
    }
    event
}

#[cfg(test)]
mod tests;
