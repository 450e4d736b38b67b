//! Helpers shared by the tests that run the `danling` command.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The `danling` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_danling")
}

/// Runs danling in `dir` (outside any git repository unless the test makes one).
pub fn danling(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("DANLING_LOG")
        .output()
        .expect("danling runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

/// A temporary directory outside any git repository.
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(
        !Command::new("git")
            .args(["rev-parse", "--git-dir"])
            .current_dir(dir.path())
            .output()
            .is_ok_and(|o| o.status.success()),
        "the temp dir must be outside any git repository"
    );
    dir
}

/// The one run directory under `{dir}/experiments`, if there is one yet.
pub fn run_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("experiments"))
        .ok()
        .and_then(|mut entries| entries.next())
        .map(|entry| entry.unwrap().path())
}

/// The model tensors of a checkpoint, by name.
pub fn model_tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("model."))
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    tensors.sort();
    tensors
}

/// A results document (`results.json`, `latest.json` or `best.json`) without its wall-clock parts:
/// the `timestamp`, and every split's wall-clock values (`danling::results::WALL_CLOCK_KEYS`).
pub fn stable(mut doc: Value) -> Value {
    fn strip(value: &mut Value) {
        if let Some(map) = value.as_object_mut() {
            map.retain(|k, _| !danling::results::is_wall_clock(k));
            map.values_mut().for_each(strip);
        }
    }
    doc.as_object_mut().unwrap().remove("timestamp");
    strip(&mut doc);
    doc
}

/// `results.json`, `latest.json` and `best.json` of a run directory, without their wall-clock parts,
/// by file name (`null` for a file that is not there).
pub fn stable_results(run: &Path) -> Value {
    let mut all = serde_json::Map::new();
    for file in ["results.json", "latest.json", "best.json"] {
        let value = match std::fs::read_to_string(run.join(file)) {
            Ok(text) => stable(serde_json::from_str(&text).unwrap()),
            Err(_) => Value::Null,
        };
        all.insert(file.to_owned(), value);
    }
    Value::Object(all)
}
