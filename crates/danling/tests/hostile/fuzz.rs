//! Mutants of a real checkpoint, fed to every reader.

use burn::store::burn_pack::Scalar;
use burn::tensor::DType;
use danling::checkpoint::CheckpointError;

use super::files::{Parts, file, split, with_record};
use super::{READERS, checkpoint, run};

/// A small deterministic random number generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (at least 1).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "7",
    "255",
    "4294967296",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e400",
    "0.5",
    "null",
    "\"\"",
    "[]",
    "{}",
];

const DTYPES: &[&str] = &[
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64",
    "U64", "F4", "F6_E2M3", "Q9", "", "f32",
];

const JSONS: &[&str] = &[
    "",
    "null",
    "[]",
    "{}",
    "\"x\"",
    "1e999",
    "-1",
    "{\"epoch\": 1}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

const U64S: &[u64] = &[0, 1, 7, 8, 255, 1 << 31, 1 << 32, 1 << 63, u64::MAX, u64::MAX - 7];

/// Changes `bytes` in place at random: flipped bits, interesting values, a cut, a splice of its own
/// bytes elsewhere, a deletion; described in `log`.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, log: &mut Vec<String>) {
    let len = bytes.len();
    match rng.below(7) {
        0 if len > 0 => {
            for _ in 0..1 + rng.below(4) {
                let (at, bit) = (rng.below(len), rng.below(8));
                bytes[at] ^= 1 << bit;
                log.push(format!("flip bit {bit} of byte {at}"));
            }
        }
        1 if len > 0 => {
            let at = rng.below(len);
            let value = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b',', b'9', b'\\']);
            bytes[at] = value;
            log.push(format!("byte {at} := {value:#04x}"));
        }
        2 => {
            let at = rng.below(len + 1);
            bytes.truncate(at);
            log.push(format!("cut at {at}"));
        }
        3 if len > 0 => {
            let (from, to) = (rng.below(len), rng.below(len));
            let n = (1 + rng.below(64)).min(len - from).min(len - to);
            let chunk = bytes[from..from + n].to_vec();
            bytes[to..to + n].copy_from_slice(&chunk);
            log.push(format!("copy {n} bytes from {from} over {to}"));
        }
        4 if len > 0 => {
            let (from, to) = (rng.below(len), rng.below(len + 1));
            let n = (1 + rng.below(64)).min(len - from);
            let chunk = bytes[from..from + n].to_vec();
            bytes.splice(to..to, chunk);
            log.push(format!("insert {n} bytes from {from} at {to}"));
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let n = (1 + rng.below(64)).min(len - at);
            bytes.drain(at..at + n);
            log.push(format!("delete {n} bytes at {at}"));
        }
        _ if len >= 8 => {
            let at = rng.below(len - 7);
            let value = *rng.pick(U64S);
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            log.push(format!("u64 at {at} := {value}"));
        }
        _ => log.push("unchanged".into()),
    }
}

/// Changes a JSON text at random: a number or string replaced, or its bytes mutated.
fn mutate_text(rng: &mut Rng, text: &mut Vec<u8>, log: &mut Vec<String>) {
    let starts: Vec<usize> = (0..text.len())
        .filter(|&i| text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_digit()))
        .collect();
    let quotes: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'"').collect();
    match rng.below(3) {
        0 if !starts.is_empty() => {
            let at = *rng.pick(&starts);
            let end = (at..text.len())
                .find(|&i| !text[i].is_ascii_digit())
                .unwrap_or(text.len());
            let old: u64 = std::str::from_utf8(&text[at..end]).unwrap().parse().unwrap_or(0);
            let new = match rng.below(3) {
                0 => old.saturating_add(1).to_string(),
                1 => old.saturating_sub(1).to_string(),
                _ => (*rng.pick(NUMBERS)).to_owned(),
            };
            log.push(format!("number at {at}: {old} := {new}"));
            text.splice(at..end, new.into_bytes());
        }
        1 if quotes.len() >= 2 => {
            let i = rng.below(quotes.len() - 1);
            let (from, to) = (quotes[i] + 1, quotes[i + 1]);
            let new = *rng.pick(DTYPES);
            log.push(format!("text at {from}..{to} := {new:?}"));
            text.splice(from..to, new.bytes());
        }
        _ => mutate_bytes(rng, text, log),
    }
}

/// A mutant of the real checkpoint, and how it was made.
fn mutant(rng: &mut Rng) -> (Vec<u8>, String) {
    let mut log = Vec::new();
    let bytes = match rng.below(6) {
        // Raw bytes: mostly caught by the header's parse or the checksum.
        0 | 1 => {
            let mut bytes = checkpoint().to_vec();
            for _ in 0..1 + rng.below(3) {
                mutate_bytes(rng, &mut bytes, &mut log);
            }
            bytes
        }
        // The header's text, its length kept right.
        2 => {
            let (mut header, data) = split(checkpoint());
            for _ in 0..1 + rng.below(2) {
                mutate_text(rng, &mut header, &mut log);
            }
            log.insert(0, "header".into());
            file(&header, &data)
        }
        // A metadata value, behind a valid checksum.
        3 => {
            let mut parts = Parts::of(checkpoint());
            let keys: Vec<String> = parts.metadata.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            let value = parts.metadata.get_mut(&key).unwrap();
            if rng.below(4) == 0 {
                *value = (*rng.pick(JSONS)).to_owned();
                log.push(format!("metadata `{key}` := {value:?}"));
            } else {
                let mut text = std::mem::take(value).into_bytes();
                log.push(format!("metadata `{key}`"));
                mutate_text(rng, &mut text, &mut log);
                *value = String::from_utf8_lossy(&text).into_owned();
            }
            parts.sealed()
        }
        // A tensor's bytes, dtype or shape, behind a valid checksum.
        4 => {
            let mut parts = Parts::of(checkpoint());
            // The optimizer record (burn's own format) a third of the time, any tensor otherwise.
            let i = match rng.below(3) {
                0 => parts
                    .tensors
                    .iter()
                    .position(|t| t.name == "optimizer.record")
                    .unwrap(),
                _ => rng.below(parts.tensors.len()),
            };
            let tensor = &mut parts.tensors[i];
            log.push(format!("tensor `{}`", tensor.name));
            match rng.below(4) {
                0 => {
                    tensor.dtype = (*rng.pick(DTYPES)).to_owned();
                    log.push(format!("dtype := {}", tensor.dtype));
                }
                1 => {
                    let dims = rng.below(4);
                    tensor.shape = (0..dims).map(|_| (*rng.pick(U64S)).min(1 << 40)).collect();
                    log.push(format!("shape := {:?}", tensor.shape));
                }
                _ => {
                    for _ in 0..1 + rng.below(3) {
                        mutate_bytes(rng, &mut tensor.data, &mut log);
                    }
                    if tensor.dtype == "U8" && rng.below(4) != 0 {
                        tensor.shape = vec![tensor.data.len() as u64];
                    }
                }
            }
            parts.sealed()
        }
        // The optimizer record's structure, re-encoded by burn and behind a valid checksum.
        _ => with_record(|record| {
            let i = rng.below(record.tensors.len());
            let tensor = &mut record.tensors[i];
            log.push(format!("record tensor `{}`", tensor.name));
            match rng.below(5) {
                0 => {
                    tensor.id = [None, Some(0), Some(u64::MAX), tensor.id.map(|id| id ^ 1)][rng.below(4)];
                    log.push(format!("id := {:?}", tensor.id));
                }
                1 => {
                    tensor.dtype = *rng.pick(&[
                        DType::F64,
                        DType::F16,
                        DType::BF16,
                        DType::I64,
                        DType::U8,
                        DType::U32,
                    ]);
                    let size = tensor.dtype.size();
                    tensor.data = tensor
                        .data
                        .chunks(4)
                        .flat_map(|c| c.iter().copied().cycle().take(size))
                        .collect();
                    log.push(format!("dtype := {:?}", tensor.dtype));
                }
                2 => {
                    let n = tensor.data.len() / 4;
                    tensor.shape = rng
                        .pick(&[vec![n], vec![1, n], vec![n, 1], vec![n, 1, 1], vec![]])
                        .clone();
                    tensor.data.truncate(tensor.shape.iter().product::<usize>() * 4);
                    log.push(format!("shape := {:?}", tensor.shape));
                }
                3 => {
                    let keys: Vec<String> = record.scalars.keys().cloned().collect();
                    let key = rng.pick(&keys).clone();
                    let value = *rng.pick(&[
                        Scalar::UInt(0),
                        Scalar::UInt(9),
                        Scalar::UInt(u64::MAX),
                        Scalar::Int(-1),
                        Scalar::Float(f64::NAN),
                        Scalar::Bool(true),
                    ]);
                    log.push(format!("scalar `{key}` := {value:?}"));
                    record.scalars.insert(key, value);
                }
                _ => {
                    let removed = record.tensors.remove(i);
                    log.push(format!("removed `{}`", removed.name));
                }
            }
        }),
    };
    (bytes, log.join(", "))
}

/// Mutants of a real checkpoint (flipped, cut and spliced bytes, edited header text, metadata,
/// tensors and optimizer records, most behind a recomputed checksum), each fed to every reader: each
/// must return the checkpoint or an error naming the file, never panic.
///
/// A few hundred mutants by default; for a long run:
///
/// ```text
/// DANLING_FUZZ_CASES=100000 cargo test --release -p danling --test hostile
/// ```
///
/// `DANLING_FUZZ_SEED` picks another sequence of mutants.
#[test]
fn mutants_of_a_real_checkpoint_never_panic_any_reader() {
    let cases: usize = std::env::var("DANLING_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("DANLING_FUZZ_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(13);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutant.safetensors");
    let mut loaded = [0usize; 3];
    for case in 0..cases {
        let mut rng = Rng(seed ^ (case as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let (bytes, how) = mutant(&mut rng);
        std::fs::write(&path, &bytes).unwrap();
        for (i, reader) in READERS.into_iter().enumerate() {
            let described = || format!("seed {seed}, case {case} ({how})");
            match run(reader, &path) {
                Err(panic) => panic!("{panic}: {}", described()),
                Ok(Ok(())) => loaded[i] += 1,
                Ok(Err(err)) => {
                    let message = err.to_string();
                    assert!(
                        message.contains(path.to_str().unwrap()) && !message.contains('\n'),
                        "{reader:?}: {message}: {}",
                        described()
                    );
                    assert!(
                        !matches!(err, CheckpointError::Read { .. }),
                        "{reader:?}: an I/O error for a bad file: {message}: {}",
                        described()
                    );
                }
            }
        }
    }
    eprintln!("{cases} mutants; loaded by read/model/resume: {loaded:?}");
}
