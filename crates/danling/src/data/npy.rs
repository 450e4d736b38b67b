//! NumPy `.npy` arrays, read row by row.

use std::fs::File;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};

use super::DataError;
use super::disk::{open, read_at};

/// The element types an `.npy` array may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
    F16,
    I64,
    I32,
    I16,
    I8,
    U8,
    U16,
    U32,
    Bool,
}

impl Dtype {
    /// The dtype of a NumPy `descr` (little-endian or byte-sized).
    fn parse(descr: &str) -> Option<Self> {
        let (order, code) = descr.split_at(1.min(descr.len()));
        if !matches!(order, "<" | "|" | "=") {
            return None;
        }
        Some(match code {
            "f4" => Self::F32,
            "f8" => Self::F64,
            "f2" => Self::F16,
            "i8" => Self::I64,
            "i4" => Self::I32,
            "i2" => Self::I16,
            "i1" => Self::I8,
            "u1" => Self::U8,
            "u2" => Self::U16,
            "u4" => Self::U32,
            "b1" => Self::Bool,
            _ => return None,
        })
    }

    fn bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F16 | Self::I16 | Self::U16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    fn to_f32(self, b: &[u8]) -> f32 {
        match self {
            Self::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Self::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Self::F16 => burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Self::I64 => i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Self::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            Self::I16 => f32::from(i16::from_le_bytes([b[0], b[1]])),
            Self::I8 => f32::from(i8::from_le_bytes([b[0]])),
            Self::U8 | Self::Bool => f32::from(b[0]),
            Self::U16 => f32::from(u16::from_le_bytes([b[0], b[1]])),
            Self::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
        }
    }
}

/// A NumPy `.npy` array read row by row: item `i` is `array[i]` flattened, as f32. The header is
/// checked when the file is opened: the format version, a little-endian numeric dtype, C order,
/// and a file long enough for its shape (a truncated copy is refused up front, naming the file).
#[derive(Debug)]
pub struct NpyArray {
    path: PathBuf,
    file: File,
    dtype: Dtype,
    shape: Vec<usize>,
    offset: u64,
}

impl NpyArray {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let (file, len) = open(path)?;
        let bad = |message: String| DataError::format(path, message);
        let mut prefix = [0u8; 12];
        read_at(&file, &mut prefix[..10], 0).map_err(|_| bad("too short for an .npy header".into()))?;
        if &prefix[..6] != b"\x93NUMPY" {
            return Err(bad("not an .npy file (no \\x93NUMPY magic)".into()));
        }
        let (header_len, start) = match prefix[6] {
            1 => (usize::from(u16::from_le_bytes([prefix[8], prefix[9]])), 10u64),
            2 | 3 => {
                read_at(&file, &mut prefix[..12], 0).map_err(|_| bad("truncated .npy header".into()))?;
                let n = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
                (usize::try_from(n).unwrap_or(usize::MAX), 12u64)
            }
            v => return Err(bad(format!(".npy format version {v} is not 1, 2 or 3"))),
        };
        if header_len > 1 << 20 || start + header_len as u64 > len {
            return Err(bad(format!("header of {header_len} bytes does not fit the file")));
        }
        let mut header = vec![0u8; header_len];
        read_at(&file, &mut header, start).map_err(|_| bad("truncated .npy header".into()))?;
        let header = String::from_utf8_lossy(&header);
        let descr = header_value(&header, "descr").ok_or_else(|| bad("header has no 'descr'".into()))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let dtype = Dtype::parse(descr)
            .ok_or_else(|| bad(format!("dtype '{descr}' is not a little-endian number or bool")))?;
        if header_value(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
            return Err(bad("Fortran-order arrays are not read; save it in C order".into()));
        }
        let shape_text = header_value(&header, "shape").ok_or_else(|| bad("header has no 'shape'".into()))?;
        let shape = parse_shape(shape_text).ok_or_else(|| bad(format!("cannot read shape {shape_text}")))?;
        if shape.is_empty() {
            return Err(bad("a 0-dimensional array has no rows".into()));
        }
        let offset = start + header_len as u64;
        let elements = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let needed = elements.and_then(|n| n.checked_mul(dtype.bytes() as u64));
        match needed {
            Some(needed) if offset + needed <= len => {}
            _ => {
                return Err(bad(format!(
                    "shape {shape:?} of {descr} needs more than the {} bytes after the header: the \
                     file is truncated",
                    len - offset
                )));
            }
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            dtype,
            shape,
            offset,
        })
    }

    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements in a row (`array[i]`).
    pub fn row_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Row `index`, flattened, as f32.
    pub fn row(&self, index: usize) -> Result<Vec<f32>, DataError> {
        if index >= self.shape[0] {
            return Err(DataError::format(
                &self.path,
                format!("row {index} is past the last of {}", self.shape[0]),
            ));
        }
        let width = self.dtype.bytes();
        let row_bytes = self.row_len() * width;
        let mut bytes = vec![0u8; row_bytes];
        read_at(&self.file, &mut bytes, self.offset + (index * row_bytes) as u64).map_err(|source| {
            DataError::Read {
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(bytes.chunks_exact(width).map(|b| self.dtype.to_f32(b)).collect())
    }
}

impl Dataset<Vec<f32>> for NpyArray {
    fn get(&self, index: usize) -> Result<Vec<f32>, DatasetError> {
        self.row(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.shape[0]
    }
}

/// The text after `'key':` in a NumPy header dict, up to the next top-level comma.
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    Some(rest.trim())
}

/// `(3, 4)`, `(3,)` or `()`.
fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn npy_rows_are_read_as_f32_and_bad_headers_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("<f4", "(3, 2, 2)", &data)).unwrap();
        let array = NpyArray::open(&path).unwrap();
        assert_eq!(array.shape(), [3, 2, 2]);
        assert_eq!(array.len(), 3);
        assert_eq!(array.get(1).unwrap(), vec![2.0, 2.5, 3.0, 3.5]);

        let labels: Vec<u8> = [3i64, -1, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, npy("<i8", "(3,)", &labels)).unwrap();
        let array = NpyArray::open(&path).unwrap();
        assert_eq!(array.get(1).unwrap(), vec![-1.0]);

        for (bytes, expected) in [
            (npy("<f4", "(3, 2, 2)", &data[..40]), "truncated"),
            (npy(">f4", "(3, 2, 2)", &data), "little-endian"),
            (npy("<U3", "(3,)", &data), "not a little-endian number"),
            (b"PK\x03\x04 not numpy".to_vec(), "magic"),
            (npy("<f4", "()", &data[..4]), "0-dimensional"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let error = NpyArray::open(&path).unwrap_err().to_string();
            assert!(error.contains("x.npy") && error.contains(expected), "{error}");
        }
    }
}
