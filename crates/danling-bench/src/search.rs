//! (k) Search: the built-in MLP on the UCI digits, 9 epochs, over learning rate, width, weight
//! decay and dropout; 27 trials of `danling sweep` by random draws, by TPE, and by TPE with ASHA
//! (rungs at epochs 1, 3 and 9, η 3), against Optuna's TPE with its `SuccessiveHalvingPruner` at the
//! same rungs driving the same danling trials (`bench/search_optuna.py`), for ten seeds. Each
//! side's best score of a trial trained to the end is set against the epochs its search trained.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use danling::manage::record::SweepRecord;
use serde_json::Value;

use crate::e2e::danling;
use crate::report::{Report, Verdict};
use crate::{Options, root};

/// The base config of every trial (no early stopping: a trial's cost is its epochs).
const CONFIG: &str = "experiment_name: search
epochs: 9
score_name: accuracy
model: {hidden: [64], dropout: 0.1}
data: {name: digits, batch_size: 64}
optim: {type: adamw, lr: 0.01, weight_decay: 0.0001}
sched: {type: cosine, warmup_steps: 20}
progress: false
";

/// The space, as `danling sweep` takes it; `bench/search_optuna.py` suggests the same.
const SPACE: [&str; 4] = [
    "optim.lr=loguniform(1e-4,0.3)",
    "model.hidden=choice([32],[64],[128],[256])",
    "optim.weight_decay=loguniform(1e-6,0.1)",
    "model.dropout=uniform(0,0.5)",
];
const TRIALS: &str = "27";
const SEEDS: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/// One search of danling's: its record.
fn sweep(dir: &Path, seed: u64, sampler: &str, asha: bool) -> anyhow::Result<SweepRecord> {
    let root = dir.join(format!("{sampler}-{asha}-{seed}"));
    let mut command = Command::new(danling()?);
    command
        .arg("sweep")
        .arg(dir.join("search.yaml"))
        .args(SPACE)
        .args([
            "--trials",
            TRIALS,
            "--sampler",
            sampler,
            "--seed",
            &seed.to_string(),
        ])
        .arg(format!("--project_root={}", root.display()));
    if asha {
        command.args(["--prune", "asha", "--min-epochs", "1", "--reduction", "3"]);
    }
    let out = command.output()?;
    if !out.status.success() {
        bail!("danling sweep failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = std::fs::read_dir(&root)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".sweep.json"))
        .context("the sweep wrote no record")?;
    SweepRecord::read(&path)
        .map_err(anyhow::Error::msg)?
        .context("the sweep's record is empty")
}

/// Optuna's search: `{best, epochs, curve: [[epochs, best]...]}`.
fn optuna(python: &str, dir: &Path, seed: u64) -> anyhow::Result<Value> {
    let out = Command::new(python)
        .arg(root().join("bench/search_optuna.py"))
        .arg(danling()?)
        .arg(dir.join("search.yaml"))
        .arg(dir.join(format!("optuna-{seed}")))
        .args([
            "--trials",
            TRIALS,
            "--seed",
            &seed.to_string(),
            "--rungs",
            "1,3,9",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "search_optuna.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Whether `python` can import optuna.
fn has_optuna(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import optuna"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The epochs a curve of `(epochs, best)` took to reach `target` (higher is better).
fn reached(curve: &[(u64, f64)], target: f64) -> Option<u64> {
    curve
        .iter()
        .find(|(_, best)| *best >= target - 1e-12)
        .map(|(e, _)| *e)
}

/// Case (k).
pub fn search(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("search.yaml"), CONFIG)?;
    let with_optuna = has_optuna(&options.python);
    let (mut met, mut better, mut ratios, mut lines) = (0, 0, Vec::new(), Vec::new());
    for seed in SEEDS {
        eprintln!("(k) seed {seed}");
        let random = sweep(dir.path(), seed, "random", false)?;
        let tpe = sweep(dir.path(), seed, "tpe", false)?;
        let asha = sweep(dir.path(), seed, "tpe", true)?;
        let best = |r: &SweepRecord| r.best_curve().last().map_or(f64::NAN, |(_, b)| *b);
        let mut line = format!(
            "(k) seed {seed}: random {:.4} in {} epochs; TPE {:.4} in {}; TPE + ASHA {:.4} in {} (curve {:?})",
            best(&random),
            random.spent(),
            best(&tpe),
            tpe.spent(),
            best(&asha),
            asha.spent(),
            asha.best_curve()
        );
        if with_optuna {
            let theirs = optuna(&options.python, dir.path(), seed)?;
            let their_best = theirs["best"].as_f64().unwrap_or(f64::NAN);
            let curve: Vec<(u64, f64)> = serde_json::from_value(theirs["curve"].clone()).unwrap_or_default();
            let their_epochs = reached(&curve, their_best).unwrap_or(u64::MAX);
            let ours = reached(&asha.best_curve(), their_best);
            met += usize::from(ours.is_some_and(|e| e <= their_epochs));
            better += usize::from(best(&asha) >= their_best);
            ratios.push(ours.map_or(f64::INFINITY, |e| e as f64 / their_epochs as f64));
            line += &format!(
                "; Optuna TPE + SuccessiveHalving {their_best:.4} in {} epochs, reached at {their_epochs} \
                 (curve {curve:?}); TPE + ASHA reached it at {}",
                theirs["epochs"],
                ours.map_or("never".to_owned(), |e| e.to_string())
            );
        }
        lines.push(line);
    }
    let case = "(k) search, 27 trials of 9 epochs × 10 seeds: epochs TPE + ASHA takes to reach Optuna's best, \
                over the epochs Optuna took";
    if with_optuna {
        ratios.sort_by(f64::total_cmp);
        let median = (ratios[ratios.len() / 2 - 1] + ratios[ratios.len() / 2]) / 2.0;
        report.row(
            case,
            format!(
                "reached it in no more epochs in {met} of {} seeds; ended at or above it in {better}",
                SEEDS.len()
            ),
            "Optuna TPE + SuccessiveHalvingPruner, the same trials".into(),
            format!("median {median:.2}×"),
            "median ≤ 1×",
            Verdict::from(median <= 1.0),
        );
    } else {
        report.row(
            case,
            "see the details".into(),
            format!("not run: `{}` cannot import optuna", options.python),
            "–".into(),
            "median ≤ 1×",
            Verdict::NotRun,
        );
    }
    for line in lines {
        report.detail(line);
    }
    Ok(())
}
