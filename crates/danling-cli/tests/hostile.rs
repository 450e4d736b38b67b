//! A checkpoint from a stranger, given to `evaluate`, `infer` or `train` (`--checkpoint`,
//! `--pretrained`): exit code 2 and one line naming the file and what is wrong, and nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// Runs danling in `dir`.
fn danling(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_danling"))
        .args(args)
        .current_dir(dir)
        .env_remove("DANLING_LOG")
        .output()
        .expect("danling runs")
}

/// Everything under `dir`.
fn listing(dir: &Path) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            all.insert(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    all
}

/// A safetensors file of `header` (padded to 8 bytes) and `data`.
fn safetensors(header: impl AsRef<[u8]>, data: &[u8]) -> Vec<u8> {
    let mut header = header.as_ref().to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// Hostile files, each with what its error must say.
fn strangers() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut huge = (1u64 << 63).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let tensor = |dtype: &str, shape: &str, end: u64| {
        format!("{{\"t\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[0,{end}]}}}}")
    };
    let danling = "{\"__metadata__\":{\"format\":\"danling.checkpoint\",\"state\":\"{}\"},\"t\":{\"dtype\":\
                   \"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    vec![
        (
            "huge.safetensors",
            huge,
            "header length (9223372036854775808 bytes)",
        ),
        (
            "short.safetensors",
            vec![1, 2, 3],
            "shorter than its 8-byte header length",
        ),
        (
            "text.safetensors",
            safetensors(b"{\"a\xff\":1}", &[]),
            "not UTF-8",
        ),
        ("json.safetensors", safetensors("{\"t\":", &[]), "not JSON"),
        (
            "dtype.safetensors",
            safetensors(tensor("Q9", "[4]", 4), &[0; 4]),
            "unknown dtype `Q9`",
        ),
        (
            "cut.safetensors",
            safetensors(tensor("U8", "[4]", 4), &[0; 3]),
            "outside the file",
        ),
        (
            "overflow.safetensors",
            safetensors(tensor("F32", "[4294967296,4294967296,4]", 4), &[0; 4]),
            "overflows",
        ),
        (
            "size.safetensors",
            safetensors(tensor("F32", "[2]", 4), &[0; 4]),
            "need 8",
        ),
        (
            "unchecked.safetensors",
            safetensors(danling, &[0]),
            "unchecked.safetensors",
        ),
        (
            "weights.safetensors",
            safetensors(tensor("I64", "[1]", 8), &[0; 8]),
            "weights.safetensors",
        ),
    ]
}

/// CRC-32C, continuing from `crc`, as danling's checksum computes it.
fn crc32c(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A checkpoint the CLI wrote, its optimizer record replaced by one whose state tensor carries no
/// parameter id (which burn, given it, panics on), and its checksum recomputed to match.
fn with_foreign_record(checkpoint: &Path) -> Vec<u8> {
    use burn::store::burn_pack::{Tensor, Writer};
    use burn::tensor::{Bytes, DType};
    use safetensors::tensor::{SafeTensors, TensorView};

    let bytes = std::fs::read(checkpoint).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensor = Tensor::new(
        "1.momentum.moment_1".into(),
        DType::F32,
        vec![1],
        None,
        Bytes::from_bytes_vec(vec![0; 4]),
    );
    let record = Writer::new(vec![tensor]).into_bytes().unwrap().to_vec();
    let mut tensors: Vec<(String, TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "optimizer.record")
        .collect();
    tensors.push((
        "optimizer.record".into(),
        TensorView::new(safetensors::Dtype::U8, vec![record.len()], &record).unwrap(),
    ));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut crc = 0;
    for (name, view) in &tensors {
        crc = crc32c(crc, &(name.len() as u64).to_le_bytes());
        crc = crc32c(crc, name.as_bytes());
        crc = crc32c(crc, &(view.data().len() as u64).to_le_bytes());
        crc = crc32c(crc, view.data());
    }
    let mut metadata = header.metadata().clone().unwrap();
    metadata.insert("crc32c".into(), format!("{crc:08x}"));
    safetensors::serialize(tensors, Some(metadata)).unwrap()
}

/// Each command that reads a checkpoint, given `file`.
fn commands(file: &str) -> Vec<Vec<String>> {
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits.yaml");
    let digits = digits.to_str().unwrap();
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        args(&["evaluate", "--checkpoint", file]),
        args(&[
            "infer",
            "--checkpoint",
            file,
            "--split",
            "val",
            "--output",
            "out.csv",
        ]),
        args(&["train", digits, "--progress", "false", "--checkpoint", file]),
        args(&["train", digits, "--progress", "false", "--pretrained", file]),
    ]
}

#[test]
fn a_hostile_checkpoint_exits_2_with_one_line_naming_it_and_writes_nothing() {
    // A real checkpoint, from a run elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/digits.yaml");
    let args = [
        "train",
        digits.to_str().unwrap(),
        "--epochs",
        "1",
        "--progress",
        "false",
    ];
    let output = danling(elsewhere.path(), &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = String::from_utf8(output.stdout).unwrap();
    let latest = elsewhere
        .path()
        .join(run.lines().last().unwrap())
        .join("checkpoints/latest.safetensors");
    let foreign = with_foreign_record(&latest);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("record.safetensors"), foreign).unwrap();
    let resume = [
        "train",
        digits.to_str().unwrap(),
        "--progress",
        "false",
        "--checkpoint",
        "record.safetensors",
    ];
    let mut cases: Vec<(Vec<String>, &str, &str)> = vec![(
        resume.iter().map(|s| (*s).to_owned()).collect(),
        "record.safetensors",
        "optimizer state: tensor `1.momentum.moment_1` carries no parameter id",
    )];
    for (name, bytes, _) in strangers() {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    for (name, _, needle) in strangers() {
        cases.extend(commands(name).into_iter().map(|args| (args, name, needle)));
    }
    let before = listing(dir.path());
    for (args, name, needle) in cases {
        {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = danling(dir.path(), &args);
            let err = String::from_utf8(output.stderr).unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
            assert!(output.stdout.is_empty(), "{args:?}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("danling: error: checkpoint "), "{args:?}: {err}");
            assert!(
                err.contains(name) && err.contains(needle),
                "{args:?}: {err} lacks {needle}"
            );
            assert_eq!(
                listing(dir.path()),
                before,
                "{args:?} wrote into the project root"
            );
        }
    }
}
