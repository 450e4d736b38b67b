//! What the example apps' tests share: running the app's binary, and reading what a run wrote.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `bin` with `args` in `dir`; panics with its stderr unless it exits `code`.
pub fn run(bin: &str, dir: &Path, args: &[&str], code: i32) -> Output {
    let output = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove("DANLING_LOG")
        .output()
        .expect("the app runs");
    assert_eq!(
        output.status.code(),
        Some(code),
        "{bin} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Trains and returns the run directory the app printed on its last line.
pub fn train(bin: &str, dir: &Path, args: &[&str]) -> PathBuf {
    let output = run(bin, dir, &[&["train"], args].concat(), 0);
    dir.join(text(&output.stdout).lines().last().unwrap())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A JSON file of a run directory.
pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `results.json`, `latest.json` and `best.json` without their wall-clock parts (the timestamp, and
/// every split's wall-clock values, `danling::results::WALL_CLOCK_KEYS`).
pub fn stable_results(run: &Path) -> Value {
    fn strip(value: &mut Value) {
        if let Some(map) = value.as_object_mut() {
            map.retain(|k, _| !danling::results::is_wall_clock(k) && k != "timestamp");
            map.values_mut().for_each(strip);
        }
    }
    let mut all = serde_json::Map::new();
    for file in ["results.json", "latest.json", "best.json"] {
        let mut value = json(&run.join(file));
        strip(&mut value);
        all.insert(file.to_owned(), value);
    }
    Value::Object(all)
}

/// The model tensors of a checkpoint, by name, as bytes.
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

/// The checks every app passes beyond training: a run continued from the mid-epoch checkpoint
/// `step` of `run` into another project root reports the same results and ends with the same
/// weights; the app's own keys are in its help and completions; and `runs` and `report` show the
/// runs of `root`, `expected` of them.
pub fn resumes_exactly(bin: &str, dir: &Path, args: &[&str], run: &Path, step: u64) {
    let root = dir.join("continued");
    let checkpoint = run.join(format!("checkpoints/step-{step}.safetensors"));
    let mut continued_args = args.to_vec();
    continued_args.extend(["--project_root", root.to_str().unwrap()]);
    continued_args.extend(["--checkpoint", checkpoint.to_str().unwrap()]);
    let continued = train(bin, dir, &continued_args);
    assert_eq!(
        continued.file_name(),
        run.file_name(),
        "the same config is the same run"
    );
    assert_eq!(
        stable_results(&continued),
        stable_results(run),
        "results after resuming at {step}"
    );
    let latest = "checkpoints/latest.safetensors";
    assert!(
        model_tensors(&continued.join(latest)) == model_tensors(&run.join(latest)),
        "the weights after resuming at step {step} differ"
    );
}

/// `runs` lists the run directories `names` (`{name}-{id}`) and says they finished, and `report`
/// writes a page with each of them.
pub fn listed(bin: &str, dir: &Path, root: &Path, names: &[String]) {
    let listing = text(&run(bin, dir, &["runs", root.to_str().unwrap(), "--format", "json"], 0).stdout);
    let rows: Vec<Value> = serde_json::from_str(&listing).unwrap();
    assert_eq!(rows.len(), names.len(), "{listing}");
    for name in names {
        let dir_of = |row: &Value| {
            format!(
                "{}-{}",
                row["name"].as_str().unwrap(),
                row["id"].as_str().unwrap()
            )
        };
        let row = rows.iter().find(|row| dir_of(row) == *name);
        let row = row.unwrap_or_else(|| panic!("{name} is not listed: {listing}"));
        // A search's trials that ASHA stopped at a rung are `pruned`.
        assert!(row["status"] == "finished" || row["status"] == "pruned", "{row}");
    }
    let page = dir.join("report.html");
    run(
        bin,
        dir,
        &[
            "report",
            root.to_str().unwrap(),
            "--output",
            page.to_str().unwrap(),
        ],
        0,
    );
    let html = std::fs::read_to_string(&page).unwrap();
    for name in names {
        assert!(html.contains(name.as_str()), "{name} is not in the report");
    }
}

/// The names of the run directories under `root` (not the sweeps' records beside them).
pub fn run_dirs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The app's help and bash completions know `key`, one of its own config keys.
pub fn knows_key(bin: &str, dir: &Path, key: &str) {
    let help = text(&run(bin, dir, &["train", "--help"], 0).stdout);
    assert!(help.contains(&format!("--{key}")), "{help}");
    let script = text(&run(bin, dir, &["completions", "bash"], 0).stdout);
    assert!(
        script.contains(&format!("--{key}")),
        "no --{key} in the completions"
    );
}

/// `evaluate` of `run`'s best checkpoint on `split` prints the values the run recorded for that
/// checkpoint (`best.json`), for each of `metrics`, to the bit.
pub fn evaluates_as_recorded(bin: &str, dir: &Path, run_dir: &Path, split: &str, metrics: &[&str]) {
    let runner = run_dir.join("runner.yaml");
    let best = run_dir.join("checkpoints/best.safetensors");
    let args = [
        "evaluate",
        runner.to_str().unwrap(),
        "--checkpoint",
        best.to_str().unwrap(),
    ];
    let evaluated: Value = serde_json::from_str(&text(&run(bin, dir, &args, 0).stdout)).unwrap();
    let recorded = json(&run_dir.join("best.json"));
    for metric in metrics {
        assert_eq!(
            evaluated[split][metric], recorded[split][metric],
            "{split} {metric}"
        );
    }
}

/// `infer` of `run`'s best checkpoint on `split`: the CSV's rows, each as its cells (`index`, the
/// target, then the outputs).
pub fn inferred(bin: &str, dir: &Path, run_dir: &Path, split: &str) -> Vec<Vec<f64>> {
    let runner = run_dir.join("runner.yaml");
    let best = run_dir.join("checkpoints/best.safetensors");
    let csv = dir.join(format!("{split}.csv"));
    let args = [
        "infer",
        runner.to_str().unwrap(),
        "--checkpoint",
        best.to_str().unwrap(),
        "--split",
        split,
        "--output",
        csv.to_str().unwrap(),
    ];
    run(bin, dir, &args, 0);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("index,target,"), "{header}");
    lines
        .map(|line| line.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}
