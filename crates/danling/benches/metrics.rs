//! AUROC throughput on 10M binary samples and on 1M × 10 multi-class samples.
//!
//! `cargo bench -p danling --bench metrics -- [DIR]` times danling's functional AUROC and, given DIR,
//! writes the same data there (raw little-endian f64 predictions and i64 targets) for
//! `bench/metrics_torchmetrics.py` to time torchmetrics on. Prints one JSON line per case.

#![allow(clippy::expect_used)] // a benchmark binary: failing to write its data is fatal

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use danling::metrics::functional::{binary_auroc, multiclass_auroc};
use danling::rng::Rng;

fn write(dir: &Option<PathBuf>, name: &str, bytes: impl Iterator<Item = [u8; 8]>) {
    if let Some(dir) = dir {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(dir.join(name)).expect("create bench data"));
        for chunk in bytes {
            file.write_all(&chunk).expect("write bench data");
        }
    }
}

/// The fastest of `runs` timings of `f`, in seconds, and its value.
fn time(runs: usize, f: impl Fn() -> f64) -> (f64, f64) {
    let mut best = f64::INFINITY;
    let mut value = f64::NAN;
    for _ in 0..runs {
        let start = Instant::now();
        value = std::hint::black_box(f());
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, value)
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from);
    if let Some(dir) = &dir {
        std::fs::create_dir_all(dir).expect("create bench dir");
    }
    let mut rng = Rng::from_parts(&[1016, 42]);

    let n = 10_000_000;
    let targets: Vec<i64> = (0..n).map(|_| i64::from(rng.uniform() < 0.3)).collect();
    // Informative, rounded scores (so there are ties): positives score higher on average.
    let preds: Vec<f64> = targets
        .iter()
        .map(|&t| ((rng.uniform() + 0.3 * t as f64) / 1.3 * 1e4).round() / 1e4)
        .collect();
    write(&dir, "binary_preds.f64", preds.iter().map(|p| p.to_le_bytes()));
    write(
        &dir,
        "binary_targets.i64",
        targets.iter().map(|t| t.to_le_bytes()),
    );
    let (seconds, value) = time(3, || binary_auroc(&preds, &targets));
    println!(
        r#"{{"case": "binary_auroc_10M", "framework": "danling", "seconds": {seconds:.4}, "value": {value}}}"#
    );

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
        &dir,
        "multiclass_preds.f64",
        preds.iter().map(|p| p.to_le_bytes()),
    );
    write(
        &dir,
        "multiclass_targets.i64",
        targets.iter().map(|t| t.to_le_bytes()),
    );
    let (seconds, value) = time(3, || multiclass_auroc(&preds, &targets, c));
    println!(
        r#"{{"case": "multiclass_auroc_1Mx10", "framework": "danling", "seconds": {seconds:.4}, "value": {value}}}"#
    );
}
