//! Data-parallel training over MPI, run as users run it: `mpiexec -n 2 danling train …`, against one
//! process on the global batch, through signals, `kill -9` and bad input on one rank.
//!
//! Needs OpenMPI's `mpiexec` (`apt install openmpi-bin libopenmpi-dev libclang-dev`) and the feature:
//! `cargo test -p danling-cli --features mpi --test mpi`.
#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{model_tensors, scratch, stable_results, stderr, stdout};
use serde_json::Value;

/// One MPI job at a time: two ranks already fill this machine's cores.
static JOBS: Mutex<()> = Mutex::new(());

const CONFIG: &str = "epochs: 2
data: {name: synthetic, n_train: 1001, n_val: 333, features: 16, classes: 3, batch_size: 25}
model: {type: mlp, hidden: [32]}
optim: {type: adamw, lr: 0.003}
sched: {type: cosine}
max_grad_norm: 1.0
progress: false
log_interval: 7
";

/// A run long enough to stop in the middle: 10 epochs of 80 global batches, a step checkpoint every
/// 7 steps, log lines every 3 batches (out of step with the checkpoints).
const LONG: &str = "epochs: 10
data: {name: synthetic, n_train: 4001, n_val: 333, features: 16, classes: 3, batch_size: 25}
model: {type: mlp, hidden: [64, 32]}
optim: {type: adamw, lr: 0.003}
sched: {type: cosine}
progress: false
log_interval: 3
save_steps: 7
";

fn mpiexec(ranks: usize) -> Command {
    let mut command = Command::new("mpiexec");
    command
        .args(["-n", &ranks.to_string(), "--oversubscribe", "--bind-to", "none"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("DANLING_LOG");
    command
}

/// `danling ARGS` on `ranks` ranks in `dir`.
fn train_on(ranks: usize, dir: &Path, args: &[&str]) -> Output {
    mpiexec(ranks)
        .arg(common::bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("mpiexec runs (install openmpi-bin)")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_dir(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("runner.yaml").exists())
        .collect();
    assert_eq!(dirs.len(), 1, "one run dir in {}", root.display());
    dirs.pop().unwrap()
}

fn latest(run: &Path) -> PathBuf {
    run.join("checkpoints/latest.safetensors")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The largest difference between two checkpoints' weights, relative to each tensor's largest value.
fn weight_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (model_tensors(a), model_tensors(b));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f64;
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        let (x, y) = (f32s(x), f32s(y));
        let scale = y.iter().fold(0f64, |m, v| m.max(f64::from(v.abs()))).max(1e-12);
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max(f64::from((p - q).abs()) / scale);
        }
    }
    worst
}

/// Every metric of two results.json histories, pairwise.
fn metric_pairs(a: &Value, b: &Value) -> Vec<(String, f64, f64)> {
    let mut pairs = Vec::new();
    let (a, b) = (&a["results.json"]["results"], &b["results.json"]["results"]);
    for (index, record) in a.as_object().unwrap() {
        for (split, metrics) in record.as_object().unwrap() {
            for (metric, value) in metrics.as_object().unwrap() {
                let other = b[index][split][metric].as_f64().unwrap_or(f64::NAN);
                pairs.push((
                    format!("{index}.{split}.{metric}"),
                    value.as_f64().unwrap(),
                    other,
                ));
            }
        }
    }
    assert!(!pairs.is_empty());
    pairs
}

fn runner_yaml(run: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(run.join("runner.yaml")).unwrap()).unwrap()
}

#[test]
fn two_ranks_train_like_one_process_on_the_global_batch() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(dir.path(), "c.yaml", CONFIG);
    let config = config.to_str().unwrap();
    // n = 1001 train and 333 val rows: neither a multiple of the global batch of 50.
    let two = train_on(
        2,
        dir.path(),
        &["train", config, "--project_root", "two", "--resume", "true"],
    );
    assert!(two.status.success(), "{}", stderr(&two));
    let one = common::danling(
        dir.path(),
        &[
            "train",
            config,
            "--project_root",
            "one",
            "--data.batch_size",
            "50",
        ],
    );
    assert!(one.status.success(), "{}", stderr(&one));
    let (two_run, one_run) = (run_dir(&dir.path().join("two")), run_dir(&dir.path().join("one")));

    let difference = weight_difference(&latest(&two_run), &latest(&one_run));
    eprintln!("largest weight difference, 2 ranks × 25 against 1 × 50: {difference:e} (relative)");
    assert!(difference <= 1e-5, "{difference}");
    for (name, a, b) in metric_pairs(&stable_results(&two_run), &stable_results(&one_run)) {
        assert!((a - b).abs() <= 1e-6, "{name}: {a} against {b}");
    }

    // The sharded evaluation is a one-process evaluation of the split: the final weights evaluated
    // by one process give the last epoch's val metrics.
    let latest_two = latest(&two_run);
    let evaluated = common::danling(
        dir.path(),
        &[
            "evaluate",
            config,
            "--checkpoint",
            latest_two.to_str().unwrap(),
            "--split",
            "val",
        ],
    );
    assert!(evaluated.status.success(), "{}", stderr(&evaluated));
    let evaluated: Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    let recorded = &stable_results(&two_run)["latest.json"]["val"];
    for (metric, value) in evaluated["val"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(m, _)| !danling::results::is_wall_clock(m))
    {
        let (a, b) = (value.as_f64().unwrap(), recorded[metric].as_f64().unwrap());
        let tolerance = if metric == "loss" { 1e-6 } else { 1e-9 };
        assert!(
            (a - b).abs() <= tolerance,
            "val {metric}: {a} evaluated, {b} recorded by 2 ranks"
        );
    }

    // The same config has the same id on any number of ranks; runner.yaml records the world size.
    let (two_doc, one_doc) = (runner_yaml(&two_run), runner_yaml(&one_run));
    assert_eq!(two_doc["world_size"], 2);
    assert_eq!(one_doc["world_size"], 1);
    let two_id = stdout(&two);
    assert!(
        two_id
            .trim_end()
            .ends_with(two_run.file_name().unwrap().to_str().unwrap())
    );

    // Rank 1 prints its warnings, marked, and nothing else; only rank 0 prints the run dir.
    let err = stderr(&two);
    assert!(err.contains("[rank 1]") && err.contains("resume: true"), "{err}");
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with("[rank 1] "), "unmarked line on stderr: {line}");
    }
    let printed = stdout(&two);
    let dir_lines = printed.lines().filter(|l| l.starts_with("two/")).count();
    assert_eq!(dir_lines, 1, "{printed}");
}

#[test]
fn two_rank_runs_are_bit_identical() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(
        dir.path(),
        "c.yaml",
        &CONFIG.replace("hidden: [32]}", "hidden: [32], dropout: 0.2}"),
    );
    let config = config.to_str().unwrap();
    for root in ["a", "b"] {
        let out = train_on(2, dir.path(), &["train", config, "--project_root", root]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (a, b) = (run_dir(&dir.path().join("a")), run_dir(&dir.path().join("b")));
    assert_eq!(model_tensors(&latest(&a)), model_tensors(&latest(&b)));
    assert_eq!(stable_results(&a), stable_results(&b));
}

/// Starts a long 2-rank run, waits for its first step checkpoint, then lets `stop` end it; returns
/// how the job ended and how long it took after `stop`.
fn interrupted(dir: &Path, config: &str, root: &str, stop: impl FnOnce(&Child)) -> (Output, Duration) {
    let child = mpiexec(2)
        .arg(common::bin())
        .args(["train", config, "--project_root", root])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let checkpoints = dir.join(root);
    let started = || {
        std::fs::read_dir(&checkpoints).ok().is_some_and(|runs| {
            runs.filter_map(Result::ok)
                .any(|run| run.path().join("checkpoints/step-14.safetensors").exists())
        })
    };
    while !started() {
        assert!(Instant::now() < deadline, "the run never wrote a step checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(&child);
    let stopped = Instant::now();
    let output = child.wait_with_output().unwrap();
    // No rank is left: mpiexec may return a moment before the last of them is gone.
    while ranks_alive(root) {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "a rank is left running"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (output, stopped.elapsed())
}

/// Whether a process of a job training into `root` is alive.
fn ranks_alive(root: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"danling"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--project_root" && w[1] == root.as_bytes())
        })
}

/// The PID of rank `rank` of the job that `mpiexec` (`parent`) runs.
fn rank_pid(parent: u32, rank: usize) -> u32 {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    for _ in 0..1000 {
        for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1));
            let is_child = ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent);
            if is_child && environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no rank {rank} under mpiexec {parent}");
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every checkpoint file of a run dir loads (none is torn), and no temporary file is left.
fn intact(run: &Path) {
    for entry in std::fs::read_dir(run.join("checkpoints")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "a temporary file is left: {name}");
        let bytes = std::fs::read(&path).unwrap();
        safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{name} is torn: {e}"));
    }
}

/// The uninterrupted 2-rank run of `config`, in `{dir}/straight`: the reference of a stopped one.
fn straight_run(dir: &Path, config: &str) -> PathBuf {
    let out = train_on(2, dir, &["train", config, "--project_root", "straight"]);
    assert!(out.status.success(), "{}", stderr(&out));
    run_dir(&dir.join("straight"))
}

/// Resumes `root`'s run on 2 ranks and checks that it ends exactly as `straight` did.
fn resumes_exactly(dir: &Path, config: &str, root: &str, straight: &Path) {
    let resumed = resumed(dir, config, root, 2);
    assert_eq!(model_tensors(&latest(&resumed)), model_tensors(&latest(straight)));
    assert_eq!(stable_results(&resumed), stable_results(straight));
}

fn resumed(dir: &Path, config: &str, root: &str, ranks: usize) -> PathBuf {
    let out = train_on(
        ranks,
        dir,
        &["train", config, "--project_root", root, "--resume", "true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    run_dir(&dir.join(root))
}

#[test]
fn sigterm_to_a_rank_stops_every_rank_at_one_step_and_the_resume_is_exact() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(dir.path(), "long.yaml", LONG);
    let config = config.to_str().unwrap();
    let straight = straight_run(dir.path(), config);

    let (out, _) = interrupted(dir.path(), config, "stopped", |job| {
        signal(rank_pid(job.id(), 1), "-TERM")
    });
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let log = stdout(&out);
    assert_eq!(log.matches("stopped by Terminate").count(), 1, "{log}");
    let run = run_dir(&dir.path().join("stopped"));
    intact(&run);
    resumes_exactly(dir.path(), config, "stopped", &straight);
}

#[test]
fn kill_9_of_one_rank_ends_the_job_and_the_resume_is_exact() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(dir.path(), "long.yaml", LONG);
    let config = config.to_str().unwrap();
    let straight = straight_run(dir.path(), config);

    let (out, took) = interrupted(dir.path(), config, "killed", |job| {
        signal(rank_pid(job.id(), 1), "-KILL")
    });
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(30), "the job took {took:?} to end");
    let run = run_dir(&dir.path().join("killed"));
    intact(&run);
    resumes_exactly(dir.path(), config, "killed", &straight);
}

#[test]
fn a_two_rank_checkpoint_goes_on_with_one_process_on_the_same_global_batch_only() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(dir.path(), "long.yaml", LONG);
    let config = config.to_str().unwrap();
    let straight = straight_run(dir.path(), config);
    let (out, _) = interrupted(dir.path(), config, "stopped", |job| {
        signal(rank_pid(job.id(), 1), "-TERM")
    });
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let checkpoint = latest(&run_dir(&dir.path().join("stopped")));
    let checkpoint = checkpoint.to_str().unwrap();

    // Another global batch: refused, naming the three keys.
    let other = common::danling(
        dir.path(),
        &[
            "train",
            config,
            "--project_root",
            "other",
            "--checkpoint",
            checkpoint,
        ],
    );
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    let message = stderr(&other);
    for key in ["batch_size", "world_size", "accum_steps"] {
        assert!(message.contains(key), "{message}");
    }
    assert_eq!(message.lines().count(), 1, "{message}");

    // The same global batch, as 1 × 50 and as 1 × 25 with accum_steps 2: the same trajectory.
    for (root, extra) in [
        ("one", ["--data.batch_size", "50"]),
        ("accum", ["--accum_steps", "2"]),
    ] {
        let mut args = vec![
            "train",
            config,
            "--project_root",
            root,
            "--checkpoint",
            checkpoint,
        ];
        args.extend(extra);
        let out = common::danling(dir.path(), &args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("the same global batch of 50"),
            "{}",
            stdout(&out)
        );
        let run = run_dir(&dir.path().join(root));
        let difference = weight_difference(&latest(&run), &latest(&straight));
        eprintln!("{root}: largest weight difference against the 2-rank run: {difference:e}");
        assert!(difference <= 1e-4, "{root}: {difference}");
        for (name, a, b) in metric_pairs(&stable_results(&run), &stable_results(&straight)) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{root} {name}: {a} against {b}"
            );
        }
    }
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_collective_that_fails_on_one_rank_ends_the_job_with_one_line_naming_it_and_the_rank() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(dir.path(), "c.yaml", CONFIG);
    let config = config.to_str().unwrap();
    let start = Instant::now();
    // Rank 1 builds another model than rank 0's: rank 0's weights do not fit it. Before, the
    // broadcast of the weights fell back to rank 1's own, and the ranks trained apart.
    let out = mpiexec(1)
        .arg(common::bin())
        .args(["train", config])
        .args([":", "-n", "1"])
        .arg(common::bin())
        .args(["train", config, "--model.hidden", "[33]"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("[rank 1] danling: error: "))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("[rank 1] danling: error: collective `prepare` failed on rank 1: ")
            && lines[0].contains("the model's parameters")
            && lines[0].contains("every rank must build the same model"),
        "{err}"
    );
    // Nothing trained: no checkpoint and no result, on either rank.
    let written: Vec<PathBuf> = files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors") || p.ends_with("results.json"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn bad_input_on_one_rank_ends_the_job_with_its_message() {
    let _job = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let config = write(dir.path(), "c.yaml", CONFIG);
    let config = config.to_str().unwrap();
    let start = Instant::now();
    // Rank 1 names a data file its machine does not have.
    let out = mpiexec(1)
        .arg(common::bin())
        .args(["train", config])
        .args([":", "-n", "1"])
        .arg(common::bin())
        .args([
            "train",
            config,
            "--data.name",
            "csv",
            "--data.path",
            "/nonexistent/train.csv",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("[rank 1] danling: error: cannot read data file /nonexistent/train.csv")),
        "{err}"
    );
}
