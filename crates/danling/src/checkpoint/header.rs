//! Opening a safetensors file that may come from anyone: its header's length is checked against the
//! file before the header is read, and every name, dtype, shape and offset in it against the file
//! before anything is sized from them, so a hostile file gets an error that says what is wrong
//! rather than a panic or a large allocation.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, MapAccess, Visitor};

use super::CheckpointError;
use super::integrity::Tally;
use super::read::Layout;

/// The largest header accepted (as safetensors itself does).
const MAX_HEADER: u64 = 100_000_000;

/// The key of the string-to-string metadata in a safetensors header.
const METADATA: &str = "__metadata__";

/// A safetensors file with its header read and checked (see [`parse`]); the tensors are
/// read from it when asked for.
pub(crate) struct Opened {
    file: File,
    pub(crate) metadata: Metadata,
    /// Where the tensor data start in the file.
    data_start: u64,
    /// Held while the file's cursor is moved and read from, where reads cannot say where.
    #[cfg(not(any(unix, windows)))]
    cursor: std::sync::Mutex<()>,
}

impl Opened {
    /// Opens `path` and reads its header, and nothing else. The header's length is checked against
    /// the file before it is read, and its tensors against the data after it.
    pub(crate) fn open(path: &Path) -> Result<Self, CheckpointError> {
        if !path.is_file() {
            return Err(CheckpointError::Missing {
                path: path.to_owned(),
            });
        }
        let format = |message: String| CheckpointError::format(path, message);
        // A file that ends early is damaged (or cut while being read), not unreadable.
        let read = |source: std::io::Error| match source.kind() {
            std::io::ErrorKind::UnexpectedEof => format("the file ends inside its header".into()),
            _ => CheckpointError::Read {
                path: path.to_owned(),
                source,
            },
        };
        let mut file = File::open(path).map_err(read)?;
        let file_len = file.metadata().map_err(read)?.len();
        let mut prefix = [0u8; 8];
        file.read_exact(&mut prefix).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                format("not a safetensors file: shorter than its 8-byte header length".into())
            }
            _ => read(e),
        })?;
        let header_len = u64::from_le_bytes(prefix);
        let after_prefix = file_len.saturating_sub(8);
        if header_len > after_prefix {
            return Err(format(format!(
                "not a safetensors file: its header length ({header_len} bytes) exceeds the file \
                 ({file_len} bytes)"
            )));
        }
        if header_len > MAX_HEADER {
            return Err(format(format!(
                "its header length ({header_len} bytes) is over the limit of {MAX_HEADER} bytes"
            )));
        }
        // At most MAX_HEADER bytes, and no more than the file holds.
        let mut text = vec![0u8; header_len as usize];
        file.read_exact(&mut text).map_err(read)?;
        let metadata = parse(&text, after_prefix - header_len).map_err(format)?;
        Ok(Self {
            file,
            metadata,
            data_start: 8 + header_len,
            #[cfg(not(any(unix, windows)))]
            cursor: std::sync::Mutex::new(()),
        })
    }

    /// Where tensor `name`'s bytes lie in the file and how many there are (inside the file: the
    /// header was checked against it).
    pub(crate) fn span(&self, name: &str) -> Result<(u64, usize), String> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| format!("no `{name}` tensor"))?;
        let (begin, end) = info.data_offsets;
        Ok((self.data_start + begin as u64, end.saturating_sub(begin)))
    }

    /// Tensor `name`'s bytes, their CRC-32C noted in `tally` when there is one.
    pub(crate) fn read(&self, name: &str, tally: Option<&mut Tally>) -> Result<Vec<u8>, String> {
        let (at, len) = self.span(name)?;
        let (bytes, crc) = self
            .read_tensor::<u8>(at, len, Layout::Flat, tally.is_some())
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
        if let (Some(tally), Some(crc)) = (tally, crc) {
            tally.note(name, crc);
        }
        Ok(bytes)
    }

    /// Fills `buffer` from `at` in the file. Any number of threads may read at once.
    #[cfg(unix)]
    pub(crate) fn read_at(&self, at: u64, buffer: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buffer, at)
    }

    /// Fills `buffer` from `at` in the file. Any number of threads may read at once.
    #[cfg(windows)]
    pub(crate) fn read_at(&self, mut at: u64, mut buffer: &mut [u8]) -> std::io::Result<()> {
        while !buffer.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(&self.file, buffer, at) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buffer = &mut std::mem::take(&mut buffer)[n..];
                    at += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Fills `buffer` from `at` in the file. Any number of threads may read at once (one at a time).
    #[cfg(not(any(unix, windows)))]
    pub(crate) fn read_at(&self, at: u64, buffer: &mut [u8]) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let _cursor = self
            .cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut file = &self.file;
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(buffer)
    }
}

/// Parses the header text of a file whose tensor data (everything after the header) are
/// `data_len` bytes, and checks that its tensors fill those bytes exactly: each inside them, none
/// overlapping another, no byte left over, and each of the size its dtype and shape say.
fn parse(text: &[u8], data_len: u64) -> Result<Metadata, String> {
    let text = std::str::from_utf8(text).map_err(|e| {
        format!(
            "the header is not UTF-8 text (byte {} of it is not)",
            e.valid_up_to()
        )
    })?;
    // JSON first (without building anything), so that a syntax error is told as one wherever it is.
    serde_json::from_str::<de::IgnoredAny>(text).map_err(|e| format!("the header is not JSON: {e}"))?;
    let raw: Raw = serde_json::from_str(text).map_err(|e| format!("unreadable header: {e}"))?;
    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, raw) in raw.tensors {
        let info = checked(&name, raw, data_len)?;
        tensors.push((name, info));
    }
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    // Sorted by where they begin, each must begin where the one before ended.
    let mut end = 0;
    let mut previous: Option<&str> = None;
    for (name, info) in &tensors {
        let (begin, next) = info.data_offsets;
        if begin < end {
            let previous = previous.unwrap_or_default();
            return Err(format!("tensors `{previous}` and `{name}` overlap"));
        }
        if begin > end {
            return Err(format!(
                "bytes {end}..{begin} of the tensor data belong to no tensor"
            ));
        }
        end = next;
        previous = Some(name);
    }
    let end = end as u64;
    if end < data_len {
        return Err(format!(
            "the file has {} bytes after its last tensor",
            data_len - end
        ));
    }
    Metadata::new(raw.metadata, tensors).map_err(|e| format!("unreadable header: {e}"))
}

/// One tensor's entry checked: a known dtype, a shape whose size is a whole number of bytes that
/// does not overflow, and offsets that hold exactly that many bytes inside the data.
fn checked(name: &str, raw: RawInfo, data_len: u64) -> Result<TensorInfo, String> {
    let dtype = Dtype::deserialize(raw.dtype.as_str().into_deserializer())
        .map_err(|_: de::value::Error| format!("tensor `{name}` has an unknown dtype `{}`", raw.dtype))?;
    let overflows = || format!("tensor `{name}` has shape {:?}, whose size overflows", raw.shape);
    let shape = raw
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| overflows()))
        .collect::<Result<Vec<usize>, String>>()?;
    let bits = shape
        .iter()
        .try_fold(dtype.bitsize(), |n, &d| n.checked_mul(d))
        .ok_or_else(overflows)?;
    if bits % 8 != 0 {
        return Err(format!(
            "tensor `{name}` of dtype {dtype:?} and shape {shape:?} does not fill a whole number of bytes"
        ));
    }
    let (begin, end) = raw.data_offsets;
    if end < begin {
        return Err(format!(
            "tensor `{name}` ends (at byte {end}) before it begins (at byte {begin})"
        ));
    }
    if end > data_len {
        return Err(format!(
            "tensor `{name}` lies outside the file: it is truncated (it ends at byte {end} of the \
             tensor data, which has {data_len})"
        ));
    }
    // Both fit in usize: they are at most the data's length, which is at most the file's.
    let (begin, end) = (begin as usize, end as usize);
    if end - begin != bits / 8 {
        return Err(format!(
            "tensor `{name}` holds {} bytes, but its dtype {dtype:?} and shape {shape:?} need {}",
            end - begin,
            bits / 8
        ));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        data_offsets: (begin, end),
    })
}

/// A header as written: the metadata, and each tensor's entry unchecked (in the order written).
struct Raw {
    metadata: Option<HashMap<String, String>>,
    tensors: Vec<(String, RawInfo)>,
}

/// A tensor's entry in a header, with its dtype not yet looked up and its numbers as written.
#[derive(serde::Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawVisitor)
    }
}

/// Reads a header's object, refusing a name given twice (which a reader would take one of, and
/// another reader perhaps the other).
struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut raw = Raw {
            metadata: None,
            tensors: Vec::new(),
        };
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("it has `{key}` twice")));
            }
            if key == METADATA {
                raw.metadata = Some(map.next_value::<Strings>()?.0);
            } else {
                let info = map
                    .next_value::<RawInfo>()
                    .map_err(|e| de::Error::custom(format!("tensor `{key}`: {e}")))?;
                raw.tensors.push((key, info));
            }
        }
        Ok(raw)
    }
}

/// The metadata: strings by key, no key twice.
struct Strings(HashMap<String, String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StringsVisitor)
    }
}

struct StringsVisitor;

impl<'de> Visitor<'de> for StringsVisitor {
    type Value = Strings;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strings, A::Error> {
        let mut strings = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map
                .next_value::<String>()
                .map_err(|e| de::Error::custom(format!("metadata `{key}` is not a string: {e}")))?;
            if strings.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("its metadata has `{key}` twice")));
            }
        }
        Ok(Strings(strings))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// What parsing `header` over `data_len` bytes of data says.
    fn error(header: &str, data_len: u64) -> String {
        match parse(header.as_bytes(), data_len) {
            Ok(_) => panic!("{header} parses"),
            Err(e) => e,
        }
    }

    fn tensor(name: &str, dtype: &str, shape: &str, begin: u64, end: u64) -> String {
        format!("\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}")
    }

    #[test]
    fn tensors_that_fill_the_data_exactly_parse_in_any_order() {
        let header = format!(
            "{{{},{},\"__metadata__\":{{\"k\":\"v\"}}}}  ",
            tensor("b", "F32", "[2]", 4, 12),
            tensor("a", "U8", "[4]", 0, 4)
        );
        let metadata = parse(header.as_bytes(), 12).unwrap();
        assert_eq!(metadata.offset_keys(), ["a", "b"]);
        assert_eq!(metadata.metadata().as_ref().unwrap()["k"], "v");
        assert!(parse(b"{}", 0).unwrap().offset_keys().is_empty());
        // Empty tensors take no bytes, wherever they are.
        let header = format!(
            "{{{},{}}}",
            tensor("a", "F32", "[0, 3]", 0, 0),
            tensor("b", "U8", "[1]", 0, 1)
        );
        assert_eq!(parse(header.as_bytes(), 1).unwrap().offset_keys(), ["a", "b"]);
    }

    #[test]
    fn every_inconsistency_is_named() {
        let one = |dtype: &str, shape: &str, begin: u64, end: u64| {
            format!("{{{}}}", tensor("t", dtype, shape, begin, end))
        };
        for (header, data_len, expected) in [
            (one("Q9", "[1]", 0, 1), 1, "tensor `t` has an unknown dtype `Q9`"),
            (
                one("F64", "[4294967296, 4294967296]", 0, 8),
                8,
                "tensor `t` has shape [4294967296, 4294967296], whose size overflows",
            ),
            (one("F4", "[3]", 0, 2), 2, "does not fill a whole number of bytes"),
            (
                one("U8", "[4]", 4, 0),
                4,
                "tensor `t` ends (at byte 0) before it begins (at byte 4)",
            ),
            (
                one("U8", "[4]", 0, 4),
                3,
                "tensor `t` lies outside the file: it is truncated",
            ),
            (
                one("U8", "[4]", 0, u64::MAX),
                3,
                "it ends at byte 18446744073709551615",
            ),
            (
                one("F32", "[2]", 0, 4),
                4,
                "tensor `t` holds 4 bytes, but its dtype F32 and shape [2] need 8",
            ),
            (
                one("U8", "[4]", 0, 4),
                6,
                "the file has 2 bytes after its last tensor",
            ),
            (
                one("U8", "[4]", 2, 6),
                6,
                "bytes 0..2 of the tensor data belong to no tensor",
            ),
            (
                format!(
                    "{{{},{}}}",
                    tensor("a", "U8", "[4]", 0, 4),
                    tensor("b", "U8", "[2]", 2, 4)
                ),
                4,
                "tensors `a` and `b` overlap",
            ),
            (
                format!(
                    "{{{},{}}}",
                    tensor("a", "U8", "[4]", 0, 4),
                    tensor("a", "U8", "[4]", 0, 4)
                ),
                4,
                "it has `a` twice",
            ),
            (
                "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}".into(),
                0,
                "its metadata has `k` twice",
            ),
            (
                "{\"__metadata__\":{\"k\":1}}".into(),
                0,
                "metadata `k` is not a string",
            ),
            (
                "{\"t\":{\"dtype\":\"U8\"}}".into(),
                0,
                "tensor `t`: missing field `shape`",
            ),
            ("{\"t\":[1,".into(), 0, "the header is not JSON"),
            ("[]".into(), 0, "unreadable header"),
        ] {
            let err = error(&header, data_len);
            assert!(err.contains(expected), "{header}: `{err}` lacks `{expected}`");
        }
        let err = match parse(b"{\"\xff\":1}", 0) {
            Ok(_) => panic!("not UTF-8"),
            Err(e) => e,
        };
        assert_eq!(err, "the header is not UTF-8 text (byte 2 of it is not)");
    }
}
