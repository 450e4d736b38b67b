//! (f) data parallelism over MPI: the benchmark MLP on a global batch of 256, as one process on two
//! threads and as two ranks (`mpiexec -n 2`) of one thread each. On two cores this measures what the
//! collectives cost, not a speed-up.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::e2e::danling;
use crate::overhead::list;
use crate::report::{Report, Verdict};
use crate::{Options, median, root};

/// One run's samples/s and, on two ranks, the all-reduce's share of the training time.
struct Run {
    rate: f64,
    share: Option<f64>,
}

/// Parses the runner's closing line: `trained N samples in T s (R samples/s, …; 2 ranks, the
/// gradient all-reduce X s (P% of the time))`.
fn closing(stdout: &str) -> anyhow::Result<Run> {
    let line = stdout
        .lines()
        .find(|line| line.contains("trained ") && line.contains("samples/s"))
        .context("danling train printed no `trained N samples` line")?;
    let rate = line
        .split(" (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|rate| rate.parse().ok())
        .context("no samples/s in the closing line")?;
    let share = line
        .split("s (")
        .last()
        .and_then(|rest| rest.split('%').next())
        .and_then(|share| share.parse::<f64>().ok())
        .filter(|_| line.contains("all-reduce"));
    Ok(Run { rate, share })
}

fn one_process() -> anyhow::Result<Run> {
    let project = tempfile::tempdir()?;
    let out = Command::new(danling()?)
        .args([
            "train",
            "bench/mlp.yaml",
            "--data.batch_size",
            "256",
            "--project_root",
        ])
        .arg(project.path())
        .env("RAYON_NUM_THREADS", "2")
        .current_dir(root())
        .output()?;
    if !out.status.success() {
        bail!("danling train failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    closing(&String::from_utf8_lossy(&out.stdout))
}

/// Two ranks, or `None` when there is no `mpiexec` or the binary was built without `mpi`.
fn two_ranks() -> anyhow::Result<Option<Run>> {
    let project = tempfile::tempdir()?;
    let Ok(out) = Command::new("mpiexec")
        .args(["-n", "2", "--oversubscribe", "--bind-to", "none"])
        .arg(danling()?)
        .args([
            "train",
            "bench/mlp.yaml",
            "--data.batch_size",
            "128",
            "--project_root",
        ])
        .arg(project.path())
        .env("RAYON_NUM_THREADS", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .current_dir(root())
        .output()
    else {
        return Ok(None);
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("without the cargo feature `mpi`") {
        return Ok(None);
    }
    if !out.status.success() {
        bail!("mpiexec -n 2 danling train failed: {stderr}");
    }
    closing(&String::from_utf8_lossy(&out.stdout)).map(Some)
}

/// (f), `repeats` times each, interleaved.
pub fn data_parallel(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(f) one process × 2 threads against 2 ranks × 1 thread, global batch 256");
    let (mut one, mut two, mut shares) = (vec![], vec![], vec![]);
    for _ in 0..options.repeats {
        one.push(one_process()?.rate);
        match two_ranks()? {
            Some(run) => {
                two.push(run.rate);
                shares.extend(run.share);
            }
            None => break,
        }
    }
    let one_rate = median(&one);
    if two.is_empty() {
        report.row(
            "(f) 2 ranks × 1 thread vs 1 process × 2 threads (global batch 256)",
            "not run (no mpiexec, or danling built without `--features mpi`)".to_owned(),
            format!("{one_rate:.0} samples/s"),
            "–".to_owned(),
            "≥ 0.9×",
            Verdict::NotRun,
        );
        return Ok(());
    }
    let two_rate = median(&two);
    let ratio = two_rate / one_rate;
    report.row(
        "(f) 2 ranks × 1 thread vs 1 process × 2 threads (global batch 256)",
        format!(
            "{two_rate:.0} samples/s (all-reduce {:.1}% of the time)",
            median(&shares)
        ),
        format!("{one_rate:.0} samples/s"),
        format!("{ratio:.2}×"),
        "≥ 0.9×",
        Verdict::from(ratio >= 0.9),
    );
    let whole = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.detail(format!(
        "(f) samples/s, one process: {}; two ranks: {}; the all-reduce's share of rank 0's training time (%): {}",
        whole(&one),
        whole(&two),
        list(&shares)
    ));
    report.section(cost_model(two_rate, median(&shares) / 100.0));
    Ok(())
}

/// The benchmark MLP's parameters: 784-512-512-10, weights and biases (`bench/mlp.yaml`).
const PARAMETERS: f64 = (784.0 * 512.0 + 512.0) + (512.0 * 512.0 + 512.0) + (512.0 * 10.0 + 10.0);

/// Per-rank batch of the model: each rank keeps the 128 of the two-rank run.
const RANK_BATCH: f64 = 128.0;

/// A cost model on paper for N nodes, from this run's compute time per step.
fn cost_model(two_rank_rate: f64, share: f64) -> String {
    let bytes = PARAMETERS * 4.0;
    // The two-rank run's step (256 samples) less its all-reduce: one rank's compute on 128 samples.
    let step = 2.0 * RANK_BATCH / two_rank_rate;
    let compute = step * (1.0 - share);
    let mut text = format!(
        "## Data parallelism at scale: a cost model\n\n\
         On paper, from case (f): the benchmark MLP has {PARAMETERS:.0} parameters, so each step \
         all-reduces {:.2} MB of f32 gradients. One rank's forward, backward and update on its 128 \
         samples took {:.2} ms here (the two-rank step of {:.2} ms less the all-reduce's {:.0}%). A ring \
         all-reduce moves 2(N−1)/N of the gradient bytes in and out of each node per step, in 2(N−1) \
         messages; the table assumes the link's full bandwidth and 5 µs per message (10 Gb/s Ethernet) \
         or 2 µs (100 Gb/s InfiniBand), with no overlap of the all-reduce and the compute, as danling \
         does it today.\n\n\
         | nodes | link | bytes per node per step | all-reduce | compute | step | efficiency |\n\
         |---|---|---|---|---|---|---|\n",
        bytes / 1e6,
        compute * 1e3,
        step * 1e3,
        share * 100.0,
    );
    for nodes in [8.0f64, 64.0] {
        for (gbits, latency) in [(10.0, 5e-6), (100.0, 2e-6)] {
            let moved = 2.0 * (nodes - 1.0) / nodes * bytes;
            let reduce = moved / (gbits * 1e9 / 8.0) + 2.0 * (nodes - 1.0) * latency;
            let total = compute + reduce;
            text.push_str(&format!(
                "| {nodes:.0} | {gbits:.0} Gb/s | {:.2} MB | {:.2} ms | {:.2} ms | {:.2} ms | {:.0}% |\n",
                moved / 1e6,
                reduce * 1e3,
                compute * 1e3,
                total * 1e3,
                100.0 * compute / total,
            ));
        }
    }
    text.push_str(
        "\nWhere the all-reduce costs about as much as the compute (10 Gb/s), overlapping it with the \
         backward pass pays: gradients bucketed by layer (PyTorch DDP's 25 MB buckets; here the last \
         layer's gradients are ready first) can travel while the earlier layers' are computed, which \
         hides up to min(all-reduce, backward ≈ ⅔ of the compute) of the step. At 100 Gb/s the \
         all-reduce is a tenth of the step and bucketing buys little; a larger per-rank batch or \
         `accum_steps` (one all-reduce per optimizer step, not per micro-batch) lowers its share \
         further. On one machine, as here, the all-reduce's time is mostly copies between the \
         device's tensors and the host buffer, and waiting for the slower rank.\n",
    );
    text
}
