//! Preemption and requeue without a cluster: `resume: auto`, SIGUSR1 (and `preempt_signal`), the
//! `preempted` status, exit code 75, `scontrol requeue $SLURM_JOB_ID` (a stand-in `scontrol` on the
//! PATH records the call), and `metrics.jsonl` across resumes. A run preempted at any moment and run
//! again with the same command line ends as a straight run does: the same weights, results and points.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{danling, model_tensors, run_dir, scratch, stable_results, stderr, stdout};
use danling::workspace::metrics_log::{Point, read_points};
use serde_json::Value;

/// The run: long enough to be signalled mid-epoch, with step checkpoints between the epochs' and
/// log lines between those.
const ARGS: &[&str] = &[
    "train",
    "--data.name",
    "synthetic",
    "--data.n_train",
    "1536",
    "--data.batch_size",
    "32",
    "--model.hidden",
    "[128, 128]",
    "--epochs",
    "4",
    "--log_interval",
    "3",
    "--save_steps",
    "7",
    "--progress",
    "false",
    "--resume",
    "auto",
];

/// `metrics.jsonl`'s points without their times, wall-clock values left out.
fn points(run: &Path) -> Vec<Point> {
    let (points, _) = read_points(&run.join("metrics.jsonl"), 0).unwrap();
    let stable = points
        .into_iter()
        .filter(|p| !danling::results::is_wall_clock(&p.name));
    stable.map(|p| Point { time: 0.0, ..p }).collect()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

fn status(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap()
}

/// A folder with a stand-in `scontrol` that appends its arguments to `scontrol.log` beside it.
fn fake_scontrol(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("scontrol");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n",
            dir.join("scontrol.log").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs `ARGS` (plus `extra`) in `dir`; once `metrics.jsonl` has `after` lines, sends `signal`.
/// Returns the exit code, and whether the signal was sent before the run ended by itself.
fn run_until(dir: &Path, extra: &[&str], envs: &[(&str, String)], after: usize, signal: &str) -> (i32, bool) {
    let mut child = Command::new(common::bin())
        .args(ARGS)
        .args(extra)
        .current_dir(dir)
        .env_remove("DANLING_LOG")
        .env_remove("SLURM_JOB_ID")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut sent = false;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), sent);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run never ended"
        );
        if !sent && run_dir(dir).is_some_and(|run| lines(&run.join("metrics.jsonl")) >= after) {
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            sent = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_run_preempted_at_any_moment_and_run_again_ends_as_a_straight_run() {
    let straight = scratch();
    let output = danling(straight.path(), ARGS);
    assert!(output.status.success(), "{}", stderr(&output));
    let reference = run_dir(straight.path()).unwrap();
    let total = lines(&reference.join("metrics.jsonl"));
    assert!(total > 100, "{total} points");

    let dir = scratch();
    let path = format!(
        "{}:{}",
        fake_scontrol(dir.path()).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let slurm = |job: &str| vec![("PATH", path.clone()), ("SLURM_JOB_ID", job.to_owned())];
    // Preempted early, mid-run and late: under Slurm (requeued), outside it, and by `preempt_signal`.
    // A `kill -9` between them leaves points past its last checkpoint, which the next attempt cuts.
    let attempts: [(usize, &str, Vec<&str>, Vec<(&str, String)>); 5] = [
        (5, "-USR1", vec!["--requeue", "true"], slurm("4242")),
        (total / 3, "-USR1", vec![], vec![]),
        (
            total / 2,
            "-USR2",
            vec!["--preempt_signal", "USR2", "--requeue", "true"],
            slurm("4343"),
        ),
        (total * 3 / 5, "-KILL", vec![], vec![]),
        (total * 4 / 5, "-TERM", vec!["--preempt_signal", "TERM"], vec![]),
    ];
    let mut requeued = Vec::new();
    for (after, signal, extra, envs) in &attempts {
        let (code, sent) = run_until(dir.path(), extra, envs, *after, signal);
        assert!(sent, "the run ended before {after} points");
        let run = run_dir(dir.path()).unwrap();
        if *signal == "-KILL" {
            assert_eq!(code, -1);
            continue;
        }
        assert_eq!(code, 75, "{signal} after {after} points: exit {code}");
        let status = status(&run);
        assert_eq!(status["status"], "preempted", "{status}");
        assert!(run.join("checkpoints/latest.safetensors").is_file());
        if let Some((_, job)) = envs.iter().find(|(k, _)| *k == "SLURM_JOB_ID") {
            requeued.push(format!("requeue {job}"));
        }
        // What was logged past the checkpoint is logged again by the next attempt, never twice.
        let seen = points(&run);
        assert_eq!(
            seen[..],
            points(&reference)[..seen.len().min(points(&reference).len())]
        );
    }
    let scontrol = std::fs::read_to_string(dir.path().join("scontrol.log")).unwrap_or_default();
    assert_eq!(scontrol.lines().collect::<Vec<_>>(), requeued, "scontrol calls");
    // The same command line finishes the run.
    let output = danling(dir.path(), ARGS);
    assert!(output.status.success(), "{}", stderr(&output));
    let run = run_dir(dir.path()).unwrap();
    assert_eq!(status(&run)["status"], "finished");
    assert_eq!(
        model_tensors(&run.join("checkpoints/latest.safetensors")),
        model_tensors(&reference.join("checkpoints/latest.safetensors"))
    );
    assert_eq!(stable_results(&run), stable_results(&reference));
    assert_eq!(points(&run), points(&reference));
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(log.contains("asked Slurm to requeue job 4242"), "{log}");
    assert!(
        log.contains("preempted (requeue: false): exiting with 75"),
        "{log}"
    );

    // The listing says how each attempt ended; the last one finished.
    let listed = danling(dir.path(), &["runs", "--format", "json"]);
    assert!(stdout(&listed).contains("\"finished\""), "{}", stdout(&listed));
}

#[test]
fn resume_auto_starts_fresh_continues_and_refuses_a_run_whose_checkpoints_are_all_damaged() {
    let dir = scratch();
    let args = [
        "train",
        "--data.name",
        "digits",
        "--epochs",
        "2",
        "--progress",
        "false",
        "--resume",
        "auto",
    ];
    let first = danling(dir.path(), &args);
    assert!(first.status.success(), "{}", stderr(&first));
    let run = run_dir(dir.path()).unwrap();
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(
        log.contains("resume: auto, and") && log.contains("starting fresh"),
        "{log}"
    );
    let results = stable_results(&run);
    // Again: it resumes (the budget is spent) and changes nothing; no warning on the way.
    let again = danling(dir.path(), &args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!stderr(&again).contains("WARN"), "{}", stderr(&again));
    assert_eq!(stable_results(&run), results);
    // With a longer budget (a new id): fresh, as no checkpoint of that run exists.
    // Every checkpoint damaged: one line naming the folder, exit 2, and nothing written.
    let checkpoints = run.join("checkpoints");
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes.truncate(middle);
        std::fs::write(&path, bytes).unwrap();
    }
    let before: BTreeMap<PathBuf, Vec<u8>> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with("run.log"))
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let refused = danling(dir.path(), &args);
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let name = run.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains("resume: auto") && err.contains(&format!("{name}/checkpoints")),
        "{err}"
    );
    assert!(
        err.contains("latest.safetensors"),
        "names a damaged file and why: {err}"
    );
    for (path, bytes) in before {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{} changed", path.display());
    }
}

#[test]
fn preemption_settings_that_cannot_work_are_refused_naming_the_key() {
    let dir = scratch();
    for (args, key) in [
        (&["--requeue", "true"][..], "requeue"),
        (&["--preempt_signal", "KILL"][..], "preempt_signal"),
        (&["--resume", "sometimes"][..], "resume"),
        (&["--mlflow", "{uri: ftp://host}"][..], "mlflow.uri"),
        (&["--mlflow", "{uri: http://h, colour: red}"][..], "mlflow"),
    ] {
        let output = danling(
            dir.path(),
            &[&["train", "--data.name", "digits", "--epochs", "1"][..], args].concat(),
        );
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{args:?}: {err}");
        assert!(run_dir(dir.path()).is_none(), "{args:?} wrote a run");
    }
}
