//! (a) End-to-end training and (d) startup, as whole processes: the `danling` binary against the
//! Python reference script, on the same work.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::overhead::list;
use crate::report::{Report, Verdict};
use crate::{Options, median, root};

/// The Python interpreter and which reference sides it can run.
pub struct Python {
    /// The interpreter.
    pub program: String,
    /// `import torch, danling` works: the end-to-end reference runs.
    pub danling: Option<String>,
    /// `import torch, torchmetrics` works: the metrics reference runs.
    pub torchmetrics: bool,
}

impl Python {
    /// `program`, not asked: no reference side runs.
    pub fn absent(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            danling: None,
            torchmetrics: false,
        }
    }

    /// Asks `program` what it can import.
    pub fn probe(program: &str) -> Self {
        let imports = |code: &str| {
            Command::new(program)
                .args(["-c", code])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        Self {
            program: program.to_owned(),
            danling: imports(
                "import torch, danling, importlib.metadata as m; \
                 print(f'torch {torch.__version__}, danling {m.version(\"danling\")}')",
            ),
            torchmetrics: imports("import torch, torchmetrics").is_some(),
        }
    }
}

/// The `danling` binary built beside this one.
pub fn danling() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("danling");
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p danling-cli` (bench/run does)",
            path.display()
        );
    }
    Ok(path)
}

/// One `danling train bench/mlp.yaml` in a fresh project root: (process seconds, train samples/s
/// from the runner's closing line).
fn danling_run(threads: usize) -> anyhow::Result<(f64, f64)> {
    let project = tempfile::tempdir()?;
    let start = Instant::now();
    let out = Command::new(danling()?)
        .args(["train", "bench/mlp.yaml", "--project_root"])
        .arg(project.path())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .current_dir(root())
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("danling train failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // "trained 38400 samples in 1.234 s (31120 samples/s, ...)"
    let rate = stdout
        .lines()
        .find_map(|line| {
            let rest = line.split("trained ").nth(1)?;
            let rate = rest.split(" (").nth(1)?.split(' ').next()?;
            rate.parse::<f64>().ok()
        })
        .context("danling train printed no `trained N samples` line")?;
    Ok((wall, rate))
}

/// One run of the reference script: (process seconds, its JSON line).
fn python_run(python: &Python, threads: usize) -> anyhow::Result<(f64, Value)> {
    let start = Instant::now();
    let out = Command::new(&python.program)
        .arg("bench/danling_mlp.py")
        .args(["--threads", &threads.to_string()])
        .current_dir(root())
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    Ok((wall, json_line(&out, "bench/danling_mlp.py")?))
}

/// The last JSON line a reference script printed, or why there is none (its stderr when it failed).
pub fn json_line(out: &std::process::Output, script: &str) -> anyhow::Result<Value> {
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("{script} printed no JSON line"))?;
    Ok(serde_json::from_str(json)?)
}

const THREADS: [usize; 2] = [1, 2];

/// Interleaves danling and Python runs at 1 and 2 threads, `repeats` times each.
pub fn end_to_end(options: &Options, python: &Python, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(a) end-to-end training, danling and the Python reference");
    let mut danling_wall = [vec![], vec![]];
    let mut danling_rate = [vec![], vec![]];
    let mut python_wall = [vec![], vec![]];
    let mut python_rate = [vec![], vec![]];
    for _ in 0..options.repeats {
        for (i, &threads) in THREADS.iter().enumerate() {
            let (wall, rate) = danling_run(threads)?;
            danling_wall[i].push(wall);
            danling_rate[i].push(rate);
            if python.danling.is_some() {
                let (wall, json) = python_run(python, threads)?;
                python_wall[i].push(wall);
                python_rate[i].push(json["train_samples_per_s"].as_f64().unwrap_or(f64::NAN));
            }
        }
    }
    let med = |v: &[Vec<f64>; 2]| [median(&v[0]), median(&v[1])];
    let (dw, dr, pw, pr) = (
        med(&danling_wall),
        med(&danling_rate),
        med(&python_wall),
        med(&python_rate),
    );
    for (i, threads) in THREADS.iter().enumerate() {
        report.detail(format!(
            "(a) {threads} thread(s): danling train samples/s {} (process s {}); Python {} (process s {})",
            list0(&danling_rate[i]),
            list(&danling_wall[i]),
            list0(&python_rate[i]),
            list(&python_wall[i]),
        ));
    }
    // The targets compare each side at its own fastest thread count.
    let best = |rates: [f64; 2]| if rates[1] > rates[0] { 1 } else { 0 };
    let (d, p) = (best(dr), best(pr));
    let fastest_wall = |walls: [f64; 2]| walls[0].min(walls[1]);
    if python.danling.is_some() {
        let ratio = dr[d] / pr[p];
        report.row(
            "(a) training samples/s (train() incl. evaluation)",
            format!("{:.0} ({} thr)", dr[d], THREADS[d]),
            format!(
                "{:.0} ({} thr; {:.0} at {} thr)",
                pr[p],
                THREADS[p],
                pr[1 - p],
                THREADS[1 - p]
            ),
            format!("{ratio:.2}×"),
            "≥ 1.5×",
            Verdict::from(ratio >= 1.5),
        );
        let ratio = fastest_wall(pw) / fastest_wall(dw);
        report.row(
            "(a) whole `train` process",
            format!("{:.2} s", fastest_wall(dw)),
            format!("{:.2} s", fastest_wall(pw)),
            format!("{ratio:.2}× faster"),
            "≥ 2×",
            Verdict::from(ratio >= 2.0),
        );
    } else {
        report.row(
            "(a) training samples/s (train() incl. evaluation)",
            format!("{:.0} ({} thr)", dr[d], THREADS[d]),
            "not run (no Python with torch and danling)".to_owned(),
            "–".to_owned(),
            "≥ 1.5×",
            Verdict::NotRun,
        );
    }
    let ratio = dr[1] / dr[0];
    report.row(
        "(a) danling 2 threads vs 1 thread",
        format!("{:.0} samples/s", dr[1]),
        format!("{:.0} samples/s", dr[0]),
        format!("{ratio:.2}×"),
        "decides the default",
        Verdict::Info,
    );
    Ok(())
}

/// Seconds from spawning `danling train` until it prints its first step line.
fn danling_first_step() -> anyhow::Result<f64> {
    let project = tempfile::tempdir()?;
    let start = Instant::now();
    let mut child = Command::new(danling()?)
        .args(["train", "bench/mlp.yaml", "--log_interval", "1", "--project_root"])
        .arg(project.path())
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut seconds = None;
    for line in BufReader::new(stdout).lines() {
        if line?.contains("train [1/") {
            seconds = Some(start.elapsed().as_secs_f64());
            break;
        }
    }
    child.kill().ok();
    child.wait()?;
    seconds.context("danling train printed no first step line")
}

/// (d) startup, `repeats` times; the Python side is its own `startup_s` (imports and set-up, not
/// the interpreter's start, so it flatters Python slightly).
pub fn startup(options: &Options, python: &Python, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(d) startup to the first step");
    let danling: Vec<f64> = (0..options.repeats)
        .map(|_| danling_first_step())
        .collect::<anyhow::Result<_>>()?;
    let python_startup: Vec<f64> = if python.danling.is_some() {
        (0..options.repeats)
            .map(|_| python_run(python, 1).map(|(_, json)| json["startup_s"].as_f64().unwrap_or(f64::NAN)))
            .collect::<anyhow::Result<_>>()?
    } else {
        vec![]
    };
    let d = median(&danling);
    report.row(
        "(d) startup: process start to end of first step",
        format!("{d:.3} s"),
        if python_startup.is_empty() {
            "not run".to_owned()
        } else {
            format!("{:.3} s (imports and set-up only)", median(&python_startup))
        },
        if python_startup.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.1}× sooner", median(&python_startup) / d)
        },
        "< 0.3 s",
        Verdict::from(d < 0.3),
    );
    report.detail(format!(
        "(d) danling seconds to the first step: {}; Python startup_s: {}",
        list(&danling),
        list(&python_startup)
    ));
    Ok(())
}

fn list0(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
