//! (g) `danling runs` over a project root of 1,000 run directories.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::e2e::danling;
use crate::overhead::list;
use crate::report::{Report, Verdict};
use crate::{Options, median, root};

const RUNS: usize = 1000;
const EPOCHS: usize = 20;

/// Trains one small run into `project`, then copies it into `RUNS` run directories, each with its
/// own id and results.
fn project(project: &Path) -> anyhow::Result<()> {
    let out = Command::new(danling()?)
        .args([
            "train",
            "--data.name",
            "synthetic",
            "--data.n_train",
            "256",
            "--data.n_val",
            "64",
            "--epochs",
            "2",
            "--progress",
            "false",
            "--project_root",
        ])
        .arg(project.join("seed"))
        .current_dir(root())
        .output()?;
    if !out.status.success() {
        bail!("danling train failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let seed = std::fs::read_dir(project.join("seed"))?
        .next()
        .context("no run dir")??
        .path();
    let runner = std::fs::read_to_string(seed.join("runner.yaml"))?;
    let status = std::fs::read_to_string(seed.join("status.json"))?;
    let id = runner
        .lines()
        .find_map(|l| l.trim().strip_prefix("id: "))
        .context("no id in runner.yaml")?
        .trim_matches('"')
        .to_owned();
    for n in 0..RUNS {
        let new_id = format!("{}{n:04}", &id[..id.len() - 4]);
        let dir = project.join("root").join(format!("Run-{new_id}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("runner.yaml"),
            runner
                .replace(&id, &new_id)
                .replace("lr: 0.001", &format!("lr: {}", 0.001 * (1 + n % 7) as f64)),
        )?;
        std::fs::write(dir.join("status.json"), &status)?;
        let results: Vec<String> = (1..=EPOCHS)
            .map(|e| {
                let loss = 1.0 / (e as f64 + n as f64 / 100.0);
                format!(
                    "\"{e}\": {{\"train\": {{\"loss\": {loss}, \"time\": 0.5}}, \"val\": {{\"loss\": {}, \"accuracy\": {}}}}}",
                    loss * 1.1,
                    1.0 - loss / 2.0
                )
            })
            .collect();
        std::fs::write(
            dir.join("results.json"),
            format!(
                "{{\"name\": \"Run\", \"id\": \"{new_id}\", \"timestamp\": \"t\", \"results\": {{{}}}}}",
                results.join(", ")
            ),
        )?;
    }
    Ok(())
}

/// Seconds of one `danling runs` over the project root.
fn listing(root_dir: &Path, args: &[&str]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = Command::new(danling()?)
        .arg("runs")
        .arg(root_dir)
        .args(args)
        .output()?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("danling runs failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows = String::from_utf8_lossy(&out.stdout).lines().count();
    if rows <= RUNS / 10 && args.is_empty() {
        bail!("danling runs listed {rows} lines for {RUNS} runs");
    }
    Ok(seconds)
}

/// (g), `repeats` times.
pub fn runs(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(g) danling runs over {RUNS} run directories");
    let dir = tempfile::tempdir()?;
    project(dir.path())?;
    let root_dir = dir.path().join("root");
    let plain: Vec<f64> = (0..options.repeats)
        .map(|_| listing(&root_dir, &[]))
        .collect::<anyhow::Result<_>>()?;
    let filtered: Vec<f64> = (0..options.repeats)
        .map(|_| {
            listing(
                &root_dir,
                &[
                    "--filter",
                    "optim.lr < 0.004",
                    "--sort",
                    "-val.accuracy",
                    "--only-changed",
                ],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let (p, f) = (median(&plain), median(&filtered));
    report.row(
        &format!("(g) `danling runs` over {RUNS} run dirs ({EPOCHS} epochs each)"),
        format!("{p:.3} s (filtered, sorted, --only-changed: {f:.3} s)"),
        "–".to_owned(),
        "–".to_owned(),
        "< 0.5 s",
        Verdict::from(p < 0.5 && f < 0.5),
    );
    report.detail(format!(
        "(g) seconds, plain: {}; with --filter, --sort and --only-changed: {}",
        list(&plain),
        list(&filtered)
    ));
    Ok(())
}
