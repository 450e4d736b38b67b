//! Under a real Slurm: a single-node cluster (munged, slurmctld and slurmd on loopback, every file in
//! the test's own folder: `tests/slurm/cluster.sh`) takes `sbatch` jobs as a user writes them.
//!
//! - A job preempted with `scancel --signal=USR1 --batch` writes `latest`, says `preempted`, asks
//!   Slurm to requeue it, and the requeued job (the same script) finishes the run bit-identical to a
//!   straight run.
//! - A 2-rank `srun --mpi=pmix` job trains what `mpiexec -n 2` trains, bit for bit.
//!
//! Needs root, `slurm-wlm` and `munge` (Debian), OpenMPI, and the `mpi` feature:
//! `cargo test -p danling-cli --features mpi --test slurm`. Without Slurm the test says so and passes,
//! unless `DANLING_REQUIRE_SLURM=1` (CI sets it).
#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{model_tensors, run_dir, scratch, stable_results, stderr};

/// A throw-away Slurm cluster, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/cluster.sh")
}

impl Cluster {
    fn start() -> Option<Self> {
        let found = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let missing: Vec<&str> = ["slurmctld", "slurmd", "munged", "sbatch", "scontrol", "scancel"]
            .into_iter()
            .filter(|name| !found(name))
            .collect();
        if !missing.is_empty() || !root {
            let why = format!("missing {missing:?}, root: {root}");
            assert!(
                std::env::var_os("DANLING_REQUIRE_SLURM").is_none(),
                "DANLING_REQUIRE_SLURM is set, and Slurm cannot run here: {why}"
            );
            eprintln!("no Slurm here ({why}): the Slurm tests are skipped (apt install slurm-wlm munge)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster.sh start: {}", stderr(&out));
        let conf = dir.path().join("etc/slurm.conf");
        Some(Self { dir, conf })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf).env_remove("DANLING_LOG");
        command
    }

    /// Submits `body` as a batch script run in `workdir`; returns the job id.
    fn submit(&self, workdir: &Path, options: &[&str], body: &str) -> String {
        let mut text = String::from("#!/bin/bash\n");
        for option in options {
            text.push_str(&format!("#SBATCH {option}\n"));
        }
        text.push_str(&format!("#SBATCH -o {}/job-%j.out\n", workdir.display()));
        text.push_str(&format!("cd {}\n{body}\n", workdir.display()));
        let path = workdir.join("job.sh");
        std::fs::write(&path, text).unwrap();
        let out = self
            .command("sbatch")
            .args(["--parsable", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "sbatch: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `JobState` and `Restarts` of `job`.
    fn state(&self, job: &str) -> (String, u32) {
        let out = self
            .command("scontrol")
            .args(["show", "job", "-o", job])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .to_owned()
        };
        (field("JobState"), field("Restarts").parse().unwrap_or(0))
    }

    /// Waits for `job` to end; returns its state and restarts.
    fn wait(&self, job: &str, workdir: &Path) -> (String, u32) {
        let started = Instant::now();
        loop {
            let (state, restarts) = self.state(job);
            if matches!(
                state.as_str(),
                "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL"
            ) {
                return (state, restarts);
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "job {job} still {state} after 300 s: {}",
                output(workdir, job)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

fn output(workdir: &Path, job: &str) -> String {
    std::fs::read_to_string(workdir.join(format!("job-{job}.out"))).unwrap_or_default()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// A run long enough to be preempted mid-epoch, with step checkpoints between the epochs'.
const PREEMPTED: &[&str] = &[
    "train",
    "--data.name",
    "synthetic",
    "--data.n_train",
    "2560",
    "--model.hidden",
    "[256, 256]",
    "--epochs",
    "5",
    "--log_interval",
    "4",
    "--save_steps",
    "11",
    "--progress",
    "false",
];

/// The 2-rank run.
const RANKS: &[&str] = &[
    "train",
    "--data.name",
    "digits",
    "--data.batch_size",
    "32",
    "--epochs",
    "3",
    "--progress",
    "false",
];

#[test]
fn slurm_requeues_a_preempted_job_that_then_finishes_exactly_and_srun_ranks_train_as_mpiexec_ranks() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let bin = common::bin();

    // Preempted and requeued: the same batch script serves both starts.
    let straight = scratch();
    let reference = Command::new(bin)
        .args(PREEMPTED)
        .current_dir(straight.path())
        .env_remove("DANLING_LOG")
        .output()
        .unwrap();
    assert!(reference.status.success(), "{}", stderr(&reference));
    let reference = run_dir(straight.path()).unwrap();
    let total = lines(&reference.join("metrics.jsonl"));

    let work = scratch();
    let args = PREEMPTED.join(" ").replace("[256, 256]", "'[256, 256]'");
    let job = cluster.submit(
        work.path(),
        &["--requeue", "--open-mode=append", "-n 1"],
        &format!("exec {bin} {args} --resume auto --requeue true"),
    );
    // Signalled once a third of its points are logged.
    let started = Instant::now();
    while run_dir(work.path()).is_none_or(|run| lines(&run.join("metrics.jsonl")) < total / 3) {
        assert!(
            cluster.state(&job).0 != "COMPLETED",
            "the job ended before it was signalled: {}",
            output(work.path(), &job)
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never trained"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = cluster
        .command("scancel")
        .args(["--signal=USR1", "--batch", &job])
        .output()
        .unwrap();
    assert!(signalled.status.success(), "{}", stderr(&signalled));
    let (state, restarts) = cluster.wait(&job, work.path());
    let log = output(work.path(), &job);
    assert_eq!((state.as_str(), restarts), ("COMPLETED", 1), "{log}");
    assert!(
        log.contains(&format!("asked Slurm to requeue job {job}")),
        "{log}"
    );
    assert!(log.contains("resuming from"), "{log}");
    let run = run_dir(work.path()).unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "finished", "{status}");
    assert_eq!(
        model_tensors(&run.join("checkpoints/latest.safetensors")),
        model_tensors(&reference.join("checkpoints/latest.safetensors"))
    );
    assert_eq!(stable_results(&run), stable_results(&reference));
    assert_eq!(lines(&run.join("metrics.jsonl")), total);
    eprintln!("requeue job {job}:\n{log}");

    // Two ranks under srun equal two ranks under mpiexec.
    let under_srun = scratch();
    let job = cluster.submit(
        under_srun.path(),
        &["-N 1", "-n 2"],
        &format!(
            "export RAYON_NUM_THREADS=1\nsrun --mpi=pmix {bin} {}",
            RANKS.join(" ")
        ),
    );
    let (state, _) = cluster.wait(&job, under_srun.path());
    assert_eq!(state, "COMPLETED", "{}", output(under_srun.path(), &job));
    let under_mpiexec = scratch();
    let out = Command::new("mpiexec")
        .args(["-n", "2", "--oversubscribe", "--bind-to", "none", bin])
        .args(RANKS)
        .current_dir(under_mpiexec.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("DANLING_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (
        run_dir(under_srun.path()).unwrap(),
        run_dir(under_mpiexec.path()).unwrap(),
    );
    let runner = std::fs::read_to_string(a.join("runner.yaml")).unwrap();
    assert!(runner.contains("world_size: 2"), "{runner}");
    assert_eq!(
        model_tensors(&a.join("checkpoints/latest.safetensors")),
        model_tensors(&b.join("checkpoints/latest.safetensors"))
    );
    assert_eq!(stable_results(&a), stable_results(&b));
    eprintln!("srun job {job}:\n{}", output(under_srun.path(), &job));
}
