//! (e) Metrics throughput: AUROC on 10M binary and 1M × 10 multi-class samples, danling against
//! torchmetrics on the same data (written to a temporary directory for `bench/metrics_torchmetrics.py`).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use danling::metrics::functional::{binary_auroc, multiclass_auroc};
use danling::rng::Rng;
use serde_json::Value;

use crate::e2e::Python;
use crate::report::{Report, Verdict};
use crate::{Options, root};

fn write(dir: &Path, name: &str, bytes: impl Iterator<Item = [u8; 8]>) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join(name))?);
    for chunk in bytes {
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(())
}

/// The fastest of `runs` timings of `f`, in seconds, and its value.
fn best_of(runs: usize, f: impl Fn() -> f64) -> (f64, f64) {
    let mut best = f64::INFINITY;
    let mut value = f64::NAN;
    for _ in 0..runs {
        let start = Instant::now();
        value = std::hint::black_box(f());
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, value)
}

/// torchmetrics' seconds per case at `threads`.
fn torchmetrics(python: &Python, dir: &Path, threads: usize) -> anyhow::Result<Vec<(String, f64)>> {
    let out = Command::new(&python.program)
        .arg("bench/metrics_torchmetrics.py")
        .arg(dir)
        .args(["--threads", &threads.to_string()])
        .current_dir(root())
        .output()?;
    if !out.status.success() {
        bail!(
            "metrics_torchmetrics.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let json: Value = serde_json::from_str(line)?;
            Ok((
                json["case"].as_str().context("case")?.to_owned(),
                json["seconds"].as_f64().context("seconds")?,
            ))
        })
        .collect()
}

pub fn auroc(options: &Options, python: &Python, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(e) AUROC throughput");
    let dir = tempfile::tempdir()?;
    let runs = options.repeats;
    let mut rng = Rng::from_parts(&[1016, 42]);
    let mut danling = Vec::new();

    let n = 10_000_000;
    let targets: Vec<i64> = (0..n).map(|_| i64::from(rng.uniform() < 0.3)).collect();
    // Informative, rounded scores (so there are ties): positives score higher on average.
    let preds: Vec<f64> = targets
        .iter()
        .map(|&t| ((rng.uniform() + 0.3 * t as f64) / 1.3 * 1e4).round() / 1e4)
        .collect();
    write(
        dir.path(),
        "binary_preds.f64",
        preds.iter().map(|p| p.to_le_bytes()),
    )?;
    write(
        dir.path(),
        "binary_targets.i64",
        targets.iter().map(|t| t.to_le_bytes()),
    )?;
    danling.push((
        "binary_auroc_10M",
        best_of(runs, || binary_auroc(&preds, &targets)).0,
    ));

    let (n, c) = (1_000_000, 10);
    let targets: Vec<i64> = (0..n).map(|_| rng.below(c as u64) as i64).collect();
    let mut preds = Vec::with_capacity(n * c);
    for &t in &targets {
        let row: Vec<f64> = (0..c)
            .map(|k| rng.uniform() + if k as i64 == t { 0.5 } else { 0.0 })
            .collect();
        let sum: f64 = row.iter().sum();
        preds.extend(row.iter().map(|x| x / sum));
    }
    write(
        dir.path(),
        "multiclass_preds.f64",
        preds.iter().map(|p| p.to_le_bytes()),
    )?;
    write(
        dir.path(),
        "multiclass_targets.i64",
        targets.iter().map(|t| t.to_le_bytes()),
    )?;
    danling.push((
        "multiclass_auroc_1Mx10",
        best_of(runs, || multiclass_auroc(&preds, &targets, c)).0,
    ));

    let reference: Option<Vec<Vec<(String, f64)>>> = if python.torchmetrics {
        Some(vec![
            torchmetrics(python, dir.path(), 1)?,
            torchmetrics(python, dir.path(), 2)?,
        ])
    } else {
        None
    };
    for (case, seconds) in danling {
        let name = match case {
            "binary_auroc_10M" => "(e) binary AUROC, 10M samples",
            _ => "(e) multi-class AUROC, 1M × 10",
        };
        let theirs = reference.as_ref().map(|runs| {
            runs.iter()
                .filter_map(|run| run.iter().find(|(c, _)| c == case).map(|(_, s)| *s))
                .fold(f64::INFINITY, f64::min)
        });
        match theirs {
            Some(theirs) => report.row(
                name,
                format!("{seconds:.3} s"),
                format!("torchmetrics {theirs:.3} s (fastest of 1, 2 threads)"),
                format!("{:.1}× faster", theirs / seconds),
                "faster",
                Verdict::from(theirs > seconds),
            ),
            None => report.row(
                name,
                format!("{seconds:.3} s"),
                "not run (no Python with torch and torchmetrics)".to_owned(),
                "–".to_owned(),
                "faster",
                Verdict::NotRun,
            ),
        }
    }
    Ok(())
}
