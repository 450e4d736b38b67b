//! The checksum a full checkpoint carries over its tensors, and checking a file against it.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use super::header::Opened;

/// What a file whose tensors do not match their checksum is told.
pub(crate) const CORRUPT: &str = "the tensor data does not match its checksum: the file is corrupt";

/// Bytes read at a time when checking a file against its checksum.
const VERIFY_PIECE: usize = if cfg!(test) { 3 } else { 8 << 20 };

/// The metadata key of the checksum over the tensors, and that of the SHA-256 older files carry.
pub(crate) const CHECKSUM: &str = "crc32c";
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
pub(crate) fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    Digest::Crc(0).of(tensors)
}

/// Checks every tensor of `opened` against the checksum in its `metadata`, reading a piece at a time
/// (memory stays at one buffer however large the file). Says whether they match; a file without a
/// checksum does not.
pub(crate) fn verify(opened: &Opened, metadata: &HashMap<String, String>) -> Result<bool, String> {
    // Files from before the switch to CRC-32C carry a SHA-256.
    let (mut digest, expected) = match (metadata.get(CHECKSUM), metadata.get(LEGACY_CHECKSUM)) {
        (Some(expected), _) => (Digest::Crc(0), expected),
        (None, Some(expected)) => (Digest::Sha256(Sha256::new()), expected),
        (None, None) => return Ok(false),
    };
    let mut names = opened.metadata.offset_keys();
    names.sort_unstable();
    let mut buffer = Vec::new();
    for name in &names {
        let (at, len) = opened.span(name)?;
        digest.name(name.as_bytes());
        digest.part_len(len);
        for start in (0..len).step_by(VERIFY_PIECE) {
            buffer.resize(VERIFY_PIECE.min(len - start), 0);
            opened
                .read_at(at + start as u64, &mut buffer)
                .map_err(|e| format!("tensor `{name}`: {e}"))?;
            digest.update(&buffer);
        }
    }
    Ok(digest.finish() == *expected)
}

/// Whether `metadata` carries a checksum over the tensors (full checkpoints do; weights-only files
/// written by `save_model` and other programs' files do not).
pub(crate) fn has_checksum(metadata: &HashMap<String, String>) -> bool {
    metadata.contains_key(CHECKSUM) || metadata.contains_key(LEGACY_CHECKSUM)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::{Dtype, TensorView};

    use sha2::{Digest as _, Sha256};

    use super::{CHECKSUM, Digest, LEGACY_CHECKSUM, checksum};
    use crate::checkpoint::read_checkpoint;

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
