//! Ignored keys (the loader's `data.workers` and `data.prefetch` among them) change nothing that is
//! trained or reported, and a run continued from any of its
//! checkpoints, in its own run directory or from a copy of the file somewhere else, ends as the run
//! that was never stopped. Settings are drawn at random: the intervals at which the runner logs, saves
//! and prunes must never line up by luck for these to pass.
//!
//! More cases: `PROPTEST_CASES=200 cargo test --release -p danling --test ignored_keys`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Classify, runner, serial};
use danling::runner::Runner;
use danling::{Config, Override};
use proptest::prelude::*;
use serde_json::Value;

/// The ignored keys a user varies, each `None` when left at its default.
#[derive(Debug, Clone, Default)]
struct Io {
    log_interval: Option<u64>,
    save_steps: Option<u64>,
    save_interval: Option<u64>,
    keep_latest_k: Option<u64>,
    tensorboard: Option<bool>,
    progress: Option<bool>,
    log: Option<bool>,
    metrics_log: Option<bool>,
    workers: Option<u64>,
    prefetch: Option<u64>,
}

impl Io {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push = |key, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        push("log_interval", self.log_interval.map(|v| v.to_string()));
        push("save_steps", self.save_steps.map(|v| v.to_string()));
        push("save_interval", self.save_interval.map(|v| v.to_string()));
        push("keep_latest_k", self.keep_latest_k.map(|v| v.to_string()));
        push("tensorboard", self.tensorboard.map(|v| v.to_string()));
        push("progress", self.progress.map(|v| v.to_string()));
        push("log", self.log.map(|v| v.to_string()));
        push("metrics_log", self.metrics_log.map(|v| v.to_string()));
        push("data.workers", self.workers.map(|v| v.to_string()));
        push("data.prefetch", self.prefetch.map(|v| v.to_string()));
        pairs
    }
}

/// What is trained: hashed keys, the same for the runs a test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    /// Micro-batches per optimizer step.
    accum: u64,
    /// A budget of optimizer steps instead of 3 epochs.
    steps: Option<u64>,
    /// Early stopping.
    patience: Option<u64>,
}

impl Shape {
    fn accum(accum: u64) -> Self {
        Self {
            accum,
            steps: None,
            patience: None,
        }
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    (1u64..=3, maybe(5u64..=20), maybe(1u64..=2)).prop_map(|(accum, steps, patience)| Shape {
        accum,
        steps,
        patience,
    })
}

/// A run of 37 samples in batches of 5 (8 batches an epoch) for 3 epochs or `shape.steps` steps, with
/// dropout, shuffling, a cosine schedule and `shape.accum` micro-batches per optimizer step.
fn config(root: &Path, shape: Shape, extra: &[(&str, String)]) -> Config {
    let mut pairs: Vec<(&str, String)> = vec![
        ("project_root", root.to_str().unwrap().to_owned()),
        ("epochs", "3".into()),
        ("accum_steps", shape.accum.to_string()),
        ("optim.lr", "0.05".into()),
        ("sched.type", "cosine".into()),
        ("score_name", "accuracy".into()),
    ];
    if let Some(steps) = shape.steps {
        pairs.push(("epochs", "null".into()));
        pairs.push(("steps", steps.to_string()));
    }
    if let Some(patience) = shape.patience {
        pairs.push(("patience", patience.to_string()));
    }
    pairs.extend(extra.iter().cloned());
    let overrides: Vec<Override> = pairs
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect();
    Config::load(None, &overrides).unwrap()
}

/// Everything a run leaves that must not depend on an ignored key: the final weights, the model
/// tensors of `latest`, and the results files without their wall-clock values.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    weights: Vec<Vec<f32>>,
    latest_model: BTreeMap<String, Vec<u8>>,
    files: BTreeMap<&'static str, Value>,
}

fn outcome(runner: &Runner<Classify>, dir: &Path) -> Outcome {
    let bytes = std::fs::read(dir.join("checkpoints/latest.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let latest_model = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with("model."))
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    let files = ["results.json", "latest.json", "best.json"]
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let mut value: Value = serde_json::from_str(&text).unwrap();
            strip_wall_clock(&mut value);
            (name, value)
        })
        .collect();
    Outcome {
        weights: common::weights(runner),
        latest_model,
        files,
    }
}

/// Removes `timestamp` and the wall-clock results (`time`, `samples_per_s`, the time breakdown) at
/// every depth.
fn strip_wall_clock(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| key != "timestamp" && !danling::results::is_wall_clock(key));
            map.values_mut().for_each(strip_wall_clock);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_wall_clock),
        _ => {}
    }
}

/// Trains a run of `shape` with the ignored keys `io` in a fresh project root.
fn train(shape: Shape, io: &Io) -> (tempfile::TempDir, PathBuf, Outcome) {
    let root = tempfile::tempdir().unwrap();
    let mut runner = runner(config(root.path(), shape, &io.pairs()));
    let dir = runner.train().unwrap().dir.unwrap();
    let outcome = outcome(&runner, &dir);
    (root, dir, outcome)
}

fn maybe<T: std::fmt::Debug + Clone + 'static>(
    values: impl Strategy<Value = T> + 'static,
) -> impl Strategy<Value = Option<T>> {
    prop_oneof![1 => Just(None), 3 => values.prop_map(Some)]
}

fn io() -> impl Strategy<Value = Io> {
    (
        maybe(1u64..=9),
        maybe(1u64..=7),
        maybe(0u64..=3),
        maybe(1u64..=3),
        maybe(any::<bool>()),
        maybe(any::<bool>()),
        (maybe(any::<bool>()), maybe(any::<bool>())),
        (maybe(0u64..=4), maybe(1u64..=6)),
    )
        .prop_map(
            |(
                log_interval,
                save_steps,
                save_interval,
                keep_latest_k,
                tensorboard,
                progress,
                (log, metrics_log),
                (workers, prefetch),
            )| Io {
                log_interval,
                save_steps,
                save_interval,
                keep_latest_k,
                tensorboard,
                progress,
                log,
                metrics_log,
                workers,
                prefetch,
            },
        )
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The plain run (every ignored key at its default) of `shape`, trained once.
fn plain(shape: Shape) -> Outcome {
    static PLAIN: std::sync::Mutex<Vec<(Shape, Outcome)>> = std::sync::Mutex::new(Vec::new());
    let mut known = PLAIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, outcome)) = known.iter().find(|(s, _)| *s == shape) {
        return outcome.clone();
    }
    let outcome = train(shape, &Io::default()).2;
    known.push((shape, outcome.clone()));
    outcome
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn no_ignored_key_changes_the_weights_or_the_results(shape in shape(), io in io()) {
        let _serial = serial();
        let expected = plain(shape);
        let (_root, _dir, got) = train(shape, &io);
        prop_assert_eq!(&got.weights, &expected.weights, "weights of {:?} with {:?}", shape, io);
        prop_assert_eq!(&got.latest_model, &expected.latest_model, "latest's model tensors");
        for (name, value) in &expected.files {
            prop_assert_eq!(&got.files[name], value, "{} with {:?}", name, io);
        }
    }
}

/// The points of a run's `metrics.jsonl` without their time, the wall-clock values left out.
fn points(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let mut point: Value = serde_json::from_str(line).unwrap();
            point.as_object_mut().unwrap().remove("time");
            point
        })
        .filter(|point| !danling::results::is_wall_clock(point["name"].as_str().unwrap()))
        .collect()
}

/// Every file of a directory tree, by path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_owned(), bytes);
            }
        }
    }
    files
}

fn copy_tree(from: &Path, to: &Path) {
    for (relative, bytes) in snapshot(from) {
        let path = to.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// The `step-N` and `epoch-N` checkpoints of a run directory.
fn history(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("step-") || name.starts_with("epoch-")
        })
        .collect();
    files.sort();
    files
}

/// Continues `checkpoint` into `root` with the straight run's settings and returns the run dir.
fn resume(root: &Path, shape: Shape, io: &Io, checkpoint: &Path) -> (PathBuf, Outcome) {
    let mut pairs = io.pairs();
    pairs.push(("checkpoint", checkpoint.to_str().unwrap().to_owned()));
    let mut runner = runner(config(root, shape, &pairs));
    let dir = runner.train().unwrap().dir.unwrap();
    let outcome = outcome(&runner, &dir);
    (dir, outcome)
}

/// Settings whose step checkpoints fall between log flushes (`save_steps` is not a multiple of
/// `log_interval`), and the other ignored keys a continuation is started with.
fn misaligned() -> impl Strategy<Value = (Shape, Io, Io)> {
    (shape(), 2u64..=5, 1u64..=4, 1u64..=2, io()).prop_filter_map(
        "save_steps a multiple of log_interval",
        |(shape, log_interval, save_steps, save_interval, again)| {
            (save_steps % log_interval != 0).then(|| {
                let io = Io {
                    log_interval: Some(log_interval),
                    save_steps: Some(save_steps),
                    save_interval: Some(save_interval),
                    workers: Some(u64::from(save_steps % 3 == 0)),
                    ..Io::default()
                };
                (shape, io, again)
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    #[test]
    fn continuing_from_every_checkpoint_in_place_or_from_a_copy_ends_as_the_straight_run(
        (shape, io, again) in misaligned()
    ) {
        let _serial = serial();
        let (root, dir, expected) = train(shape, &io);
        let run_name = dir.file_name().unwrap().to_owned();
        let source = snapshot(&dir);
        let expected_points = points(&dir);
        prop_assert!(expected_points.len() > 3, "metrics.jsonl: {:?}", expected_points);
        let checkpoints = history(&dir);
        prop_assert!(!checkpoints.is_empty(), "save_steps leaves step checkpoints");
        for checkpoint in &checkpoints {
            let file = checkpoint.file_name().unwrap();
            // In place: the run's own directory (in a copy of the project, so that each continuation
            // starts from the straight run's files).
            let copy = tempfile::tempdir().unwrap();
            copy_tree(root.path(), copy.path());
            let own = copy.path().join(&run_name).join("checkpoints").join(file);
            let (resumed_dir, got) = resume(copy.path(), shape, &io, &own);
            prop_assert_eq!(&resumed_dir, &copy.path().join(&run_name));
            prop_assert_eq!(&got, &expected, "in place from {:?}: {:?} with {:?}", file, shape, io);
            // metrics.jsonl holds each point once, as the straight run's does.
            prop_assert_eq!(
                points(&resumed_dir), expected_points.clone(),
                "metrics.jsonl in place from {:?}: {:?} with {:?}", file, shape, io
            );

            // From a copy of the file alone, into a project root that has never seen the run.
            let elsewhere = tempfile::tempdir().unwrap();
            let loose = elsewhere.path().join(file);
            std::fs::copy(checkpoint, &loose).unwrap();
            let fresh = tempfile::tempdir().unwrap();
            // Its I/O settings may differ: they are ignored keys.
            let (new_dir, got) = resume(fresh.path(), shape, &again, &loose);
            prop_assert_eq!(&new_dir, &fresh.path().join(&run_name), "same config, same id");
            prop_assert_eq!(&got, &expected, "from a copy of {:?}: {:?} with {:?}", file, shape, again);
            if again.log != Some(false) {
                let log = std::fs::read_to_string(new_dir.join("run.log")).unwrap();
                let header = log.lines().next().unwrap();
                prop_assert!(
                    header.contains(&format!("continued from {}", loose.display())),
                    "{}", header
                );
            }
            let yaml = std::fs::read_to_string(new_dir.join("runner.yaml")).unwrap();
            prop_assert!(!yaml.contains("parent"), "same id, no parent: {}", yaml);
            prop_assert!(snapshot(&dir) == source, "the source run dir is untouched");
        }
    }
}

#[test]
fn changed_hashed_keys_continue_as_a_new_run_that_names_its_parent() {
    let _serial = serial();
    let io = Io {
        save_steps: Some(3),
        log_interval: Some(2),
        ..Io::default()
    };
    let (_root, dir, _) = train(Shape::accum(2), &io);
    let source = snapshot(&dir);
    let parent_id = dir.file_name().unwrap().to_string_lossy().into_owned();
    let results = |dir: &Path| -> Value {
        let mut value: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
        strip_wall_clock(&mut value);
        value["results"].take()
    };
    let parent_results = results(&dir);

    // Extend the run by an epoch, from the end of its training.
    let latest = dir.join("checkpoints/latest.safetensors");
    let fresh = tempfile::tempdir().unwrap();
    let mut pairs = io.pairs();
    pairs.push(("checkpoint", latest.to_str().unwrap().to_owned()));
    pairs.push(("epochs", "4".into()));
    let mut extended = runner(config(fresh.path(), Shape::accum(2), &pairs));
    let trained = extended.train().unwrap();
    let child = trained.dir.unwrap();
    assert_ne!(child.file_name(), dir.file_name(), "a new id");
    assert_eq!(trained.state.epoch, 4);
    assert_eq!(trained.state.step, 16, "12 steps carried over, 4 more");
    let child_results = results(&child);
    for index in ["1", "2", "3"] {
        assert_eq!(
            child_results[index], parent_results[index],
            "epoch {index} carried over"
        );
    }
    assert!(child_results.get("4").is_some());
    let yaml: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(child.join("runner.yaml")).unwrap()).unwrap();
    let parent = &yaml["identity"]["parent"];
    assert!(parent_id.ends_with(parent["id"].as_str().unwrap()), "{parent}");
    assert_eq!(parent["step"], 12);
    assert_eq!(
        Path::new(parent["checkpoint"].as_str().unwrap()),
        latest.canonicalize().unwrap()
    );
    // The lineage is in the new run's checkpoints too, so it survives the new run's own resumes.
    let again = danling::checkpoint::read_checkpoint(&child.join("checkpoints/latest.safetensors")).unwrap();
    assert_eq!(again.identity.parent.unwrap().step, 12);
    assert!(snapshot(&dir) == source, "the parent's run dir is untouched");

    // A new learning rate from the middle of an epoch: a new run from step 3 on.
    let step = dir.join("checkpoints/step-3.safetensors");
    let other = tempfile::tempdir().unwrap();
    let mut pairs = io.pairs();
    pairs.push(("checkpoint", step.to_str().unwrap().to_owned()));
    pairs.push(("optim.lr", "0.01".into()));
    let trained = runner(config(other.path(), Shape::accum(2), &pairs))
        .train()
        .unwrap();
    let yaml = std::fs::read_to_string(trained.dir.unwrap().join("runner.yaml")).unwrap();
    assert!(yaml.contains("parent:") && yaml.contains("step: 3"), "{yaml}");
    assert!(snapshot(&dir) == source, "the parent's run dir is untouched");
}
