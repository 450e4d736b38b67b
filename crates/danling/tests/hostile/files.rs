//! Checkpoint files taken apart and put together again: to change any part of one, and recompute its
//! checksum so that the change gets past it to the parsers behind.

use std::collections::BTreeMap;

use burn::store::burn_pack::{self, Scalar, Writer};
use burn::tensor::{Bytes, DType};

use super::checkpoint;

/// One tensor of a safetensors file, as written (its declared dtype and shape need not fit it).
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) name: String,
    pub(crate) dtype: String,
    pub(crate) shape: Vec<u64>,
    pub(crate) data: Vec<u8>,
}

/// A safetensors file taken apart, to be put together again with its checksum recomputed: so that
/// a change gets past the checksum to the parsers behind it.
#[derive(Clone, Debug)]
pub(crate) struct Parts {
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) tensors: Vec<Part>,
}

impl Parts {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let tensors = header
            .offset_keys()
            .into_iter()
            .map(|name| {
                let view = file.tensor(&name).unwrap();
                Part {
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().iter().map(|&d| d as u64).collect(),
                    data: view.data().to_vec(),
                    name,
                }
            })
            .collect();
        let metadata = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Self { metadata, tensors }
    }

    pub(crate) fn tensor(&mut self, name: &str) -> &mut Part {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap()
    }

    /// The file, its checksum recomputed as danling computes it: for each tensor in name order,
    /// the name's length (u64, little-endian), the name, the data's length and the data.
    pub(crate) fn sealed(&self) -> Vec<u8> {
        let mut parts = self.clone();
        let mut sorted: Vec<&Part> = self.tensors.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut crc = 0;
        for part in sorted {
            for piece in [
                &(part.name.len() as u64).to_le_bytes()[..],
                part.name.as_bytes(),
                &(part.data.len() as u64).to_le_bytes(),
                &part.data,
            ] {
                crc = crc32c::crc32c_append(crc, piece);
            }
        }
        parts.metadata.insert("crc32c".into(), format!("{crc:08x}"));
        parts.unsealed()
    }

    /// The file as it stands, tensors laid out one after the other.
    pub(crate) fn unsealed(&self) -> Vec<u8> {
        let mut offset = 0;
        let entries: Vec<String> = self
            .tensors
            .iter()
            .map(|t| {
                let end = offset + t.data.len();
                let entry = format!(
                    "{}:{{\"dtype\":{},\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
                    json(&t.name),
                    json(&t.dtype),
                    serde_json::to_string(&t.shape).unwrap()
                );
                offset = end;
                entry
            })
            .collect();
        let metadata: Vec<String> = self
            .metadata
            .iter()
            .map(|(k, v)| format!("{}:{}", json(k), json(v)))
            .collect();
        let header = format!(
            "{{\"__metadata__\":{{{}}},{}}}",
            metadata.join(","),
            entries.join(",")
        );
        let data: Vec<u8> = self.tensors.iter().flat_map(|t| t.data.clone()).collect();
        file(header.as_bytes(), &data)
    }
}

pub(crate) fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A safetensors file of `header` (padded to 8 bytes) and `data`.
pub(crate) fn file(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = header.to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// The header text of a safetensors file and the bytes after it.
pub(crate) fn split(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (bytes[8..8 + n].to_vec(), bytes[8 + n..].to_vec())
}

/// An optimizer record (burnpack) taken apart.
pub(crate) struct Record {
    pub(crate) tensors: Vec<State>,
    pub(crate) scalars: BTreeMap<String, Scalar>,
    pub(crate) paths: BTreeMap<String, String>,
}

/// A state tensor of an optimizer record.
pub(crate) struct State {
    pub(crate) name: String,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) id: Option<u64>,
    pub(crate) data: Vec<u8>,
}

impl Record {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
        let scalars = reader.scalars().clone();
        let paths = reader.metadata().clone();
        let tensors = reader
            .into_tensors()
            .unwrap()
            .into_iter()
            .map(|t| {
                let (name, dtype, shape, id, bytes) = t.into_parts().unwrap();
                State {
                    name,
                    dtype,
                    shape: shape.to_vec(),
                    id,
                    data: bytes.to_vec(),
                }
            })
            .collect();
        Self {
            tensors,
            scalars,
            paths,
        }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        let tensors = self
            .tensors
            .iter()
            .map(|t| {
                burn_pack::Tensor::new(
                    t.name.clone(),
                    t.dtype,
                    t.shape.clone(),
                    t.id,
                    Bytes::from_bytes_vec(t.data.clone()),
                )
            })
            .collect();
        let mut writer = Writer::new(tensors);
        for (key, value) in &self.scalars {
            writer = writer.with_scalar(key, *value);
        }
        for (key, value) in &self.paths {
            writer = writer.with_metadata(key, value);
        }
        writer.into_bytes().unwrap().to_vec()
    }
}

/// The real checkpoint with its optimizer record changed by `change`, checksum recomputed.
pub(crate) fn with_record(change: impl FnOnce(&mut Record)) -> Vec<u8> {
    let mut parts = Parts::of(checkpoint());
    let tensor = parts.tensor("optimizer.record");
    let mut record = Record::of(&tensor.data);
    change(&mut record);
    tensor.data = record.bytes();
    tensor.shape = vec![tensor.data.len() as u64];
    parts.sealed()
}
