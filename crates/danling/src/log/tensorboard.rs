//! Minimal TensorBoard event-file writer and reader.
//!
//! TensorBoard reads `events.out.tfevents.*` files: a sequence of TFRecords, each holding one
//! protobuf-encoded `Event` (`tensorflow/core/util/event.proto`). Only scalars are needed for
//! training curves, so this module hand-encodes that small subset of the schema instead of
//! pulling in a protobuf toolchain. The reader exists so tests (ours and users') can check
//! exactly what TensorBoard will see, including both CRCs of every record.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Version string TensorBoard expects in the first event of every file.
const FILE_VERSION: &str = "brain.Event:2";

/// Distinguishes writers created in the same second by the same process.
static WRITER_COUNTER: AtomicU64 = AtomicU64::new(0);

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_START_GROUP: u64 = 3;
const WIRE_END_GROUP: u64 = 4;
const WIRE_FIXED32: u64 = 5;

/// Errors from writing or reading TensorBoard event files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorBoardError {
    /// I/O on an event file failed; the path says which file or directory.
    #[error("tensorboard: cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being attempted, e.g. "create directory" or "write".
        action: &'static str,
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A record whose framing or CRC is wrong, or whose protobuf cannot be decoded.
    #[error("tensorboard: corrupt event file {}: {reason}", path.display())]
    Corrupt {
        /// The event file that failed to parse.
        path: PathBuf,
        /// Which record was bad and why.
        reason: String,
    },
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> TensorBoardError {
    TensorBoardError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
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
        fs::create_dir_all(dir).map_err(|source| io_error("create directory", dir, source))?;
        let now = since_epoch();
        let (host, pid) = (hostname(), std::process::id());
        let counter = WRITER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("events.out.tfevents.{}.{host}.{pid}.{counter}", now.as_secs());
        let path = dir.join(name);
        let file = File::create_new(&path).map_err(|source| io_error("create", &path, source))?;
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

    /// Appends one event holding a single scalar; see [`EventWriter::add_scalars`].
    pub fn add_scalar(&mut self, tag: &str, value: f64, step: i64) -> Result<(), TensorBoardError> {
        self.add_scalars(step, [(tag, value)])
    }

    /// Forces written events to disk (fsync), e.g. at checkpoints or before exit.
    pub fn sync(&mut self) -> Result<(), TensorBoardError> {
        self.file
            .sync_all()
            .map_err(|source| io_error("sync", &self.path, source))
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
            .map_err(|source| io_error("write", &self.path, source))
    }
}

/// Reads every event of a file, checking both CRCs of every record.
///
/// A truncated final record, any CRC mismatch or an undecodable event is
/// [`TensorBoardError::Corrupt`], so tests can assert a file is exactly what TensorBoard loads.
pub fn read_events(path: &Path) -> Result<Vec<Event>, TensorBoardError> {
    let bytes = fs::read(path).map_err(|source| io_error("read", path, source))?;
    let mut cursor = Cursor { buf: &bytes };
    let mut events = Vec::new();
    while !cursor.buf.is_empty() {
        let offset = bytes.len() - cursor.buf.len();
        let event = read_record(&mut cursor)
            .and_then(decode_event)
            .map_err(|reason| TensorBoardError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("record at byte {offset}: {reason}"),
            })?;
        events.push(event);
    }
    Ok(events)
}

/// Splits one TFRecord off the front of `cursor`, verifying the length and data CRCs.
fn read_record<'a>(cursor: &mut Cursor<'a>) -> Result<&'a [u8], String> {
    let len: [u8; 8] = cursor.array()?;
    if masked_crc(&len) != u32::from_le_bytes(cursor.array()?) {
        return Err("length CRC mismatch".to_owned());
    }
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| e.to_string())?;
    let data = cursor.take(len)?;
    if masked_crc(data) != u32::from_le_bytes(cursor.array()?) {
        return Err("data CRC mismatch".to_owned());
    }
    Ok(data)
}

/// TFRecord's masked CRC32C: rotating and offsetting keeps CRCs of data that itself contains
/// CRCs from being degenerate.
fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Host name for the file name, restricted to characters that are safe in any file name.
fn hostname() -> String {
    let non_empty = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(non_empty)
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .unwrap_or_else(|| "localhost".to_owned())
        .replace(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)), "_")
}

fn encode_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn encode_key(buf: &mut Vec<u8>, field: u64, wire: u64) {
    encode_varint(buf, (field << 3) | wire);
}

fn encode_bytes(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    encode_key(buf, field, WIRE_LEN);
    encode_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
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

/// Decodes an `Event`. As in protobuf's own parsers, unknown fields and known fields with an
/// unexpected wire type are skipped; absent fields keep their proto3 defaults.
fn decode_event(data: &[u8]) -> Result<Event, String> {
    let mut event = Event::default();
    let mut cursor = Cursor { buf: data };
    while !cursor.buf.is_empty() {
        match cursor.field()? {
            (1, Field::Fixed64(bytes)) => event.wall_time = f64::from_le_bytes(bytes),
            (2, Field::Varint(step)) => event.step = step as i64,
            (3, Field::Bytes(bytes)) => event.file_version = Some(utf8(bytes)?),
            (5, Field::Bytes(summary)) => decode_summary(summary, &mut event.scalars)?,
            _ => {}
        }
    }
    Ok(event)
}

/// Appends the scalar values of a `Summary`; values without `simple_value` are skipped.
fn decode_summary(data: &[u8], scalars: &mut Vec<(String, f32)>) -> Result<(), String> {
    let mut summary = Cursor { buf: data };
    while !summary.buf.is_empty() {
        if let (1, Field::Bytes(value)) = summary.field()? {
            let (mut tag, mut simple_value) = (String::new(), None);
            let mut value = Cursor { buf: value };
            while !value.buf.is_empty() {
                match value.field()? {
                    (1, Field::Bytes(bytes)) => tag = utf8(bytes)?,
                    (2, Field::Fixed32(bytes)) => simple_value = Some(f32::from_le_bytes(bytes)),
                    _ => {}
                }
            }
            scalars.extend(simple_value.map(|v| (tag, v)));
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

/// A decoded protobuf field value; groups are skipped and carry no payload.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
    Group,
}

/// A bounds-checked read position in a byte slice, for both TFRecord framing and protobuf.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("truncated: need {n} bytes, {} left", self.buf.len()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|e| e.to_string())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    /// Reads one `(field number, value)`; unknown fields of every wire type can be skipped.
    fn field(&mut self) -> Result<(u64, Field<'a>), String> {
        let key = self.varint()?;
        Ok((key >> 3, self.value(key & 7)?))
    }

    fn value(&mut self, wire: u64) -> Result<Field<'a>, String> {
        Ok(match wire {
            WIRE_VARINT => Field::Varint(self.varint()?),
            WIRE_FIXED64 => Field::Fixed64(self.array()?),
            WIRE_LEN => {
                let len = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                Field::Bytes(self.take(len)?)
            }
            WIRE_START_GROUP => {
                // Skipped whole, iteratively, so hostile nesting cannot overflow the stack.
                let mut depth = 1usize;
                while depth > 0 {
                    match self.varint()? & 7 {
                        WIRE_START_GROUP => depth += 1,
                        WIRE_END_GROUP => depth -= 1,
                        wire => _ = self.value(wire)?,
                    }
                }
                Field::Group
            }
            WIRE_FIXED32 => Field::Fixed32(self.array()?),
            other => return Err(format!("unexpected wire type {other}")),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Writes a header plus three scalar events into a fresh temporary directory.
    fn sample_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(&dir.path().join("nested/run")).unwrap();
        writer.add_scalars(1, [("loss", 0.5), ("lr", 1e-3)]).unwrap();
        writer.add_scalar("loss", 0.25, 2).unwrap();
        writer
            .add_scalars(3, [("loss", f64::NAN), ("acc", f64::INFINITY)])
            .unwrap();
        writer.sync().unwrap();
        let path = writer.path().to_path_buf();
        (dir, path)
    }

    fn corrupt_reason(path: &Path, bytes: &[u8]) -> String {
        fs::write(path, bytes).unwrap();
        match read_events(path) {
            Err(TensorBoardError::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn masked_crc_matches_tensorflow_known_value() {
        // Expected values cross-checked with a pure-Python CRC32C:
        //   def crc32c(data):
        //       crc = 0xFFFFFFFF
        //       for b in data:
        //           crc ^= b
        //           for _ in range(8):
        //               crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        //       return crc ^ 0xFFFFFFFF
        //   masked = lambda c: ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
        assert_eq!(crc32c::crc32c(&[0; 32]), 0x8A91_36AA);
        assert_eq!(masked_crc(&[0; 32]), 0x0FD7_FFFA);
    }

    #[test]
    fn written_scalars_round_trip_with_valid_crcs() {
        let (_dir, path) = sample_file();
        let events = read_events(&path).unwrap();
        let steps: Vec<i64> = events.iter().map(|e| e.step).collect();
        assert_eq!(steps, [0, 1, 2, 3]);
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        assert!(events[0].scalars.is_empty());
        assert!(events[1..].iter().all(|e| e.file_version.is_none()));
        assert!(events.iter().all(|e| e.wall_time > 1.6e9));
        let tagged = |tag: &str, value: f32| (tag.to_owned(), value);
        assert_eq!(
            events[1].scalars,
            [tagged("loss", 0.5), tagged("lr", 1e-3_f64 as f32)]
        );
        assert_eq!(events[2].scalars, [tagged("loss", 0.25)]);
        assert_eq!(events[3].scalars[0].0, "loss");
        assert!(events[3].scalars[0].1.is_nan());
        assert_eq!(events[3].scalars[1], tagged("acc", f32::INFINITY));
    }

    #[test]
    fn decoder_skips_unknown_fields_of_every_wire_type() {
        let mut data = Vec::new();
        encode_key(&mut data, 9, WIRE_VARINT);
        encode_varint(&mut data, 300);
        encode_key(&mut data, 10, WIRE_FIXED64);
        data.extend([0; 8]);
        encode_bytes(&mut data, 11, b"unknown");
        encode_key(&mut data, 12, WIRE_START_GROUP);
        encode_key(&mut data, 1, WIRE_FIXED32);
        data.extend([0; 4]);
        encode_key(&mut data, 12, WIRE_END_GROUP);
        encode_key(&mut data, 13, WIRE_FIXED32);
        data.extend([0; 4]);
        assert_eq!(
            decode_event(&data),
            Ok(Event::default()),
            "absent fields are defaults"
        );
        data.extend(encode_event(1.5, -7, Some("v"), &[("a", 2.0)]));
        let expected = Event {
            wall_time: 1.5,
            step: -7,
            file_version: Some("v".to_owned()),
            scalars: vec![("a".to_owned(), 2.0)],
        };
        assert_eq!(decode_event(&data), Ok(expected));
    }

    #[test]
    fn flipped_byte_is_reported_as_corrupt() {
        let (_dir, path) = sample_file();
        let bytes = fs::read(&path).unwrap();
        // First length header, first data byte, last record's data CRC.
        for index in [0, 12, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x01;
            let reason = corrupt_reason(&path, &damaged);
            assert!(reason.contains("CRC mismatch"), "byte {index}: {reason}");
        }
    }

    #[test]
    fn truncated_file_is_reported_as_corrupt() {
        let (_dir, path) = sample_file();
        let bytes = fs::read(&path).unwrap();
        let first_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        // Inside the second record's header, inside the last data, inside the last CRC.
        for cut in [first_len + 16 + 3, bytes.len() - 5, bytes.len() - 1] {
            let reason = corrupt_reason(&path, &bytes[..cut]);
            assert!(reason.contains("truncated"), "cut at {cut}: {reason}");
        }
    }

    #[test]
    fn two_writers_in_one_process_get_distinct_files() {
        let dir = tempfile::tempdir().unwrap();
        let first = EventWriter::create(dir.path()).unwrap();
        let second = EventWriter::create(dir.path()).unwrap();
        assert_ne!(first.path(), second.path());
        for writer in [&first, &second] {
            let name = writer.path().file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with("events.out.tfevents."), "{name}");
            assert!(name.contains(&format!(".{}.", std::process::id())), "{name}");
            assert_eq!(read_events(writer.path()).unwrap().len(), 1);
        }
    }
}
