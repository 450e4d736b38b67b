//! The checksum a full checkpoint carries over its tensors, and checking a file against it.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::CheckpointError;
use super::header::Opened;
use super::read::PIECE;

/// What a file whose tensors do not match their checksum is told.
pub(crate) const CORRUPT: &str = "the tensor data does not match its checksum: the file is corrupt";

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

    /// Data of `len` bytes whose CRC-32C is `crc`: the CRC is combined in, without the data. A
    /// SHA-256 cannot be, so it is handed the data instead, read from `opened` at `at`.
    fn data(
        &mut self,
        opened: &Opened,
        at: u64,
        len: usize,
        crc: impl FnOnce() -> std::io::Result<u32>,
    ) -> std::io::Result<()> {
        match self {
            Self::Crc(sum) => *sum = crc32c_combine(*sum, crc()?, len),
            Self::Sha256(hasher) => {
                let mut buffer = vec![0u8; PIECE.min(len)];
                for start in (0..len).step_by(PIECE) {
                    let piece = &mut buffer[..PIECE.min(len - start)];
                    opened.read_at(at + start as u64, piece)?;
                    hasher.update(&*piece);
                }
            }
        }
        Ok(())
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

/// Checks every tensor of `opened` against the checksum in its `metadata`, given the CRC-32Cs of
/// those already read in `tally`: the rest are read a piece at a time on every core (memory stays at
/// a few pieces however large the file). Says whether they match; a file without a checksum does
/// not.
fn verify(opened: &Opened, metadata: &HashMap<String, String>, tally: &Tally) -> Result<bool, String> {
    // Files from before the switch to CRC-32C carry a SHA-256.
    let (mut digest, expected) = match (metadata.get(CHECKSUM), metadata.get(LEGACY_CHECKSUM)) {
        (Some(expected), _) => (Digest::Crc(0), expected),
        (None, Some(expected)) => (Digest::Sha256(Sha256::new()), expected),
        (None, None) => return Ok(false),
    };
    let mut names = opened.metadata.offset_keys();
    names.sort_unstable();
    for name in &names {
        let (at, len) = opened.span(name)?;
        digest.name(name.as_bytes());
        digest.part_len(len);
        let crc = || match tally.0.get(name) {
            Some(&crc) => Ok(crc),
            None => opened.crc_at(at, len),
        };
        digest
            .data(opened, at, len, crc)
            .map_err(|e| format!("tensor `{name}`: {e}"))?;
    }
    Ok(digest.finish() == *expected)
}

/// `loaded`, read from `opened` with the CRC-32C of each tensor read noted in `tally`, if the file
/// matches its checksum (the tensors not read are read to check it). Whatever went wrong in the
/// reading, a file that does not match is damaged, and that is the error: so the errors are those
/// of a file checked whole before it is read, and nothing from a damaged file is returned.
pub(crate) fn intact<T>(
    path: &Path,
    opened: &Opened,
    metadata: &HashMap<String, String>,
    tally: &Tally,
    loaded: Result<T, CheckpointError>,
) -> Result<T, CheckpointError> {
    if !verify(opened, metadata, tally).map_err(|message| CheckpointError::format(path, message))? {
        return Err(CheckpointError::format(path, CORRUPT));
    }
    loaded
}

/// The CRC-32C of each tensor's data read so far (by name), taken while it was read: checking the
/// file against its checksum then reads only the tensors not read.
#[derive(Debug, Default)]
pub(crate) struct Tally(HashMap<String, u32>);

impl Tally {
    /// Notes that tensor `name`'s data have CRC-32C `crc`.
    pub(crate) fn note(&mut self, name: &str, crc: u32) {
        self.0.insert(name.to_owned(), crc);
    }
}

/// Whether `metadata` carries the CRC-32C that [`Tally`] helps check (files from before it carry a
/// SHA-256, for which the tensors are read again, whole).
pub(crate) fn has_crc(metadata: &HashMap<String, String>) -> bool {
    metadata.contains_key(CHECKSUM)
}

/// The CRC-32C polynomial, bit-reflected as the CRC computes it.
const POLY: u32 = 0x82f6_3b78;

/// `a * b` modulo the polynomial, both bit-reflected (bit 31 holds `x^0`).
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 0;
    while bit < 32 {
        if a & (1 << (31 - bit)) != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit += 1;
    }
    product
}

/// `x^(2^k)` modulo the polynomial for each `k` a byte count can need (`8 * len < 2^67`).
const POWERS: [u32; 68] = {
    let mut powers = [0; 68];
    powers[0] = 1 << 30; // x^1
    let mut k = 1;
    while k < 68 {
        powers[k] = multiply(powers[k - 1], powers[k - 1]);
        k += 1;
    }
    powers
};

/// The CRC-32C of `a` followed by `b`, from the CRC-32C of each and the length of `b`, in
/// O(log len) steps (as zlib's `crc32_combine`; the crc32c crate's own takes tens of microseconds,
/// too slow to join the pieces of a file read on several cores).
pub(crate) fn crc32c_combine(a: u32, b: u32, len_b: usize) -> u32 {
    // a * x^(8 len_b): a's bits moved past b's bytes.
    let mut shift = 1u32 << 31; // x^0
    let mut n = len_b as u64;
    let mut k = 3; // x^(8n) = x^(2^3 n)
    while n != 0 {
        if n & 1 != 0 {
            shift = multiply(POWERS[k], shift);
        }
        n >>= 1;
        k += 1;
    }
    multiply(shift, a) ^ b
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

    use super::{CHECKSUM, Digest, LEGACY_CHECKSUM, checksum, crc32c_combine};
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
    fn crcs_of_pieces_combine_into_the_crc_of_the_whole() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for split in [0, 1, 2, 3, 7, 8, 100, 2500, 4999, 5000] {
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
                crc32c::crc32c(&bytes),
                "split at {split}"
            );
            assert_eq!(
                crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
                crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
            );
        }
        // Lengths far past any file agree with the crate's own (slow) combination.
        for len in [1 << 20, (1 << 40) + 3, usize::MAX] {
            assert_eq!(
                crc32c_combine(0x1234_5678, 0x9abc_def0, len),
                crc32c::crc32c_combine(0x1234_5678, 0x9abc_def0, len),
                "{len}"
            );
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
