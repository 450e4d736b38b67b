//! The run directory as a training process uses it: layout, runner.yaml, lock, fresh-start refusal,
//! results files, run.log, TensorBoard, and atomic writes under a real crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use danling::fs::{AtomicFile, write_atomic};
use danling::log::Console;
use danling::log::tensorboard::read_events;
use danling::results::Record;
use danling::runner::Role;
use danling::workspace::files;
use danling::{Config, Identity, Override, RunnerError, Session, StartMode, WorkspaceError};
use indexmap::IndexMap;
use serde_json::Value;

const QUIET: Role = Role {
    is_main: true,
    console: Console::Off,
    world_size: 1,
    device: None,
};

fn config(root: &Path, pairs: &[(&str, &str)]) -> Config {
    let mut overrides = vec![Override::parse("project_root", &root.display().to_string()).unwrap()];
    overrides.extend(pairs.iter().map(|(k, v)| Override::parse(k, v).unwrap()));
    Config::load(None, &overrides).unwrap()
}

fn open(config: &Config, mode: StartMode) -> Result<Session, RunnerError> {
    let identity = Identity::with_experiment_id(config, "xxxxxxxxxxxxxxxx", "").unwrap();
    Session::open(config, identity, mode, QUIET)
}

fn record(pairs: &[(&str, &str, f64)]) -> Record {
    let mut record: Record = IndexMap::new();
    for (split, metric, value) in pairs {
        record
            .entry(split.to_string())
            .or_default()
            .insert(metric.to_string(), *value);
    }
    record
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn opening_writes_runner_yaml_with_config_and_identity() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[("optim.lr", "0.02")]);
    let session = open(&config, StartMode::Fresh).unwrap();
    let dir = session.dir().unwrap().to_owned();
    assert_eq!(
        dir,
        root.path().join(format!("DanLing-Run-{}", session.identity().id))
    );
    assert!(session.checkpoint_dir().unwrap().is_dir());
    let text = std::fs::read_to_string(dir.join(files::RUNNER)).unwrap();
    let document: Value = serde_saphyr::from_str(&text).unwrap();
    let keys: Vec<&str> = document.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["config", "identity", "world_size"]);
    assert_eq!(document["world_size"], 1);
    assert_eq!(document["config"], config.to_value());
    assert_eq!(document["identity"]["id"], session.identity().id.as_str());
    let reread: Config = Config::load(Some(&dir.join(files::RUNNER)), &[]).unwrap();
    assert_eq!(reread, config);
}

#[test]
fn a_second_process_on_the_same_run_dir_is_refused_until_the_first_is_done() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[]);
    let first = open(&config, StartMode::Fresh).unwrap();
    let err = open(&config, StartMode::Resume).unwrap_err();
    assert!(
        matches!(err, RunnerError::Workspace(WorkspaceError::Locked { pid, .. }) if pid == std::process::id()),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("PID {}", std::process::id())));
    drop(first);
    open(&config, StartMode::Resume).unwrap();
}

#[test]
fn a_fresh_start_into_a_run_dir_with_checkpoints_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[]);
    let session = open(&config, StartMode::Fresh).unwrap();
    let checkpoints = session.checkpoint_dir().unwrap().to_owned();
    drop(session);
    std::fs::write(checkpoints.join("latest.safetensors"), b"weights").unwrap();

    let err = open(&config, StartMode::Fresh).unwrap_err();
    let message = err.to_string();
    assert!(matches!(
        err,
        RunnerError::Workspace(WorkspaceError::ExistingCheckpoints { .. })
    ));
    assert!(
        message.contains("resume: true") && message.contains("--overwrite"),
        "{message}"
    );
    assert!(checkpoints.join("latest.safetensors").exists(), "nothing is lost");

    drop(open(&config, StartMode::Resume).unwrap());
    assert!(checkpoints.join("latest.safetensors").exists());

    let resumed = config_with(&config, "resume", "true");
    assert_eq!(StartMode::from_config(&resumed, false), StartMode::Resume);
    assert_eq!(StartMode::from_config(&config, true), StartMode::Overwrite);

    drop(open(&config, StartMode::Overwrite).unwrap());
    assert!(!checkpoints.join("latest.safetensors").exists());
    let aside: Vec<_> = std::fs::read_dir(checkpoints.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoints.old-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old checkpoints are moved aside, not deleted");
    assert!(aside[0].path().join("latest.safetensors").exists());
}

fn config_with(config: &Config, key: &str, value: &str) -> Config {
    let mut tree = config.to_value();
    danling::config::apply_overrides(&mut tree, &[Override::parse(key, value).unwrap()]).unwrap();
    Config::from_value(tree).unwrap()
}

#[test]
fn results_files_follow_each_record_and_ties_go_to_the_later_index() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[("patience", "2")]);
    let mut session = open(&config, StartMode::Fresh).unwrap();
    let dir = session.dir().unwrap().to_owned();
    let losses = [0.5, 0.4, 0.4, 0.45, 0.41];
    let mut outcomes = Vec::new();
    for (i, loss) in losses.iter().enumerate() {
        let r = record(&[("train", "loss", 1.0), ("val", "loss", *loss)]);
        outcomes.push(session.record(i as u64 + 1, r).unwrap());
    }
    let best: Vec<bool> = outcomes.iter().map(|o| o.is_best).collect();
    let stop: Vec<bool> = outcomes.iter().map(|o| o.should_stop).collect();
    assert_eq!(best, [true, true, true, false, false]);
    assert_eq!(stop, [false, false, false, false, true]);

    let results = read_json(&dir.join(files::RESULTS));
    assert_eq!(results["results"]["3"]["val"]["loss"], 0.4);
    assert_eq!(results["id"], session.identity().id.as_str());
    let latest = read_json(&dir.join(files::LATEST));
    assert_eq!(latest["index"], 5);
    assert_eq!(latest["val"]["loss"], 0.41);
    let best = read_json(&dir.join(files::BEST));
    assert_eq!(best["index"], 3, "a tie goes to the later index");
    let names: Vec<&str> = best.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, ["name", "id", "timestamp", "index", "train", "val"]);
}

#[test]
fn run_log_is_appended_with_a_header_per_attempt() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[]);
    let session = open(&config, StartMode::Fresh).unwrap();
    let log = session.dir().unwrap().join(files::LOG);
    let id = session.identity().id.clone();
    tracing::info!("first attempt says hello");
    drop(session);
    let session = open(&config, StartMode::Resume).unwrap();
    tracing::warn!("second attempt says hello");
    drop(session);
    tracing::info!("after the run: not in the log");

    let text = std::fs::read_to_string(log).unwrap();
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("=====")).collect();
    assert_eq!(headers.len(), 2, "{text}");
    for header in &headers {
        assert!(
            header.contains(&format!("danling {}", danling::VERSION)),
            "{header}"
        );
        assert!(header.contains(&id), "{header}");
    }
    let first = text.find("first attempt says hello").unwrap();
    let second = text.find("second attempt says hello").unwrap();
    assert!(text.find(headers[0]).unwrap() < first && first < text.rfind(headers[1]).unwrap());
    assert!(second > text.rfind(headers[1]).unwrap());
    assert!(!text.contains("not in the log"));
}

#[test]
fn log_false_writes_no_run_log_and_a_non_main_process_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[("log", "false")]);
    let session = open(&config, StartMode::Fresh).unwrap();
    let dir = session.dir().unwrap().to_owned();
    drop(session);
    assert!(dir.join(files::RUNNER).exists());
    assert!(!dir.join(files::LOG).exists());

    let other = tempfile::tempdir().unwrap();
    let config = self::config(other.path(), &[]);
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let mut worker = Session::open(
        &config,
        identity,
        StartMode::Fresh,
        Role {
            is_main: false,
            console: Console::Off,
            world_size: 2,
            device: None,
        },
    )
    .unwrap();
    worker.record(1, record(&[("val", "loss", 1.0)])).unwrap();
    assert!(worker.dir().is_none());
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
}

#[test]
fn tensorboard_true_writes_scalars_per_split_and_metric() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), &[("tensorboard", "true")]);
    let mut session = open(&config, StartMode::Fresh).unwrap();
    session
        .record(1, record(&[("train", "loss", 0.75), ("val", "accuracy", 0.5)]))
        .unwrap();
    session.record(2, record(&[("train", "loss", 0.25)])).unwrap();
    let tb = session.dir().unwrap().join(files::TENSORBOARD);
    let files: Vec<_> = std::fs::read_dir(&tb).unwrap().filter_map(Result::ok).collect();
    assert_eq!(files.len(), 1);
    let events = read_events(&files[0].path()).unwrap();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    let scalars: Vec<(i64, String, f32)> = events[1..]
        .iter()
        .flat_map(|e| e.scalars.iter().map(move |(t, v)| (e.step, t.clone(), *v)))
        .collect();
    assert_eq!(
        scalars,
        [
            (1, "train/loss".into(), 0.75),
            (1, "val/accuracy".into(), 0.5),
            (2, "train/loss".into(), 0.25)
        ]
    );

    let quiet = tempfile::tempdir().unwrap();
    let session = open(&self::config(quiet.path(), &[]), StartMode::Fresh).unwrap();
    assert!(
        !session.dir().unwrap().join(files::TENSORBOARD).exists(),
        "off by default"
    );
}

/// The child half of the crash test: writes new contents, makes them durable, and dies before the
/// rename. The parent runs it with `--ignored`.
#[test]
#[ignore = "the child process of a_crash_between_write_and_rename_leaves_the_old_file_intact"]
fn crash_helper_dies_between_write_and_rename() {
    let path = std::env::var("DANLING_TEST_CRASH_TARGET").expect("run by the crash test");
    let mut file = AtomicFile::create(Path::new(&path)).unwrap();
    file.write_all(b"new contents").unwrap();
    file.flush().unwrap();
    std::process::abort();
}

#[test]
fn a_crash_between_write_and_rename_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latest.json");
    write_atomic(&path, b"old contents").unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_helper_dies_between_write_and_rename",
            "--ignored",
            "--test-threads=1",
        ])
        .env("DANLING_TEST_CRASH_TARGET", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child crashed");
    assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "latest.json")
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "the crash left its temporary file: {leftovers:?}"
    );
    assert!(
        leftovers[0].starts_with(".latest.json.tmp-"),
        "and it is hidden beside the target"
    );
    write_atomic(&path, b"next").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"next");
}
