//! `danling-bench`: danling side by side with what it replaces, on this machine, in one run.
//!
//! - (a) end-to-end training: `danling train bench/mlp.yaml` against Python DanLing running
//!   `bench/danling_mlp.py` (the same work), at 1 and 2 threads each;
//! - (b) runner overhead: the same model and data in a bare burn loop and through the runner;
//! - (c) checkpoint save and load of a 100M-parameter model against a raw write and read of the bytes;
//! - (d) startup: from process start to the end of the first step;
//! - (e) metrics: AUROC on 10M binary and 1M × 10 multi-class samples against torchmetrics.
//!
//! Writes a markdown table of ratios to `BENCHMARKS.md` (or `--output`) and prints it. The Python
//! sides run when `--python` (or `$PYTHON`, or `python3`) can import torch, danling and torchmetrics;
//! otherwise their columns say so.
//!
//! ```text
//! bench/run [--python PATH] [--repeats N] [--output FILE] [--only a,b,c,d,e]
//! ```

mod checkpoint;
mod e2e;
mod metrics;
mod mlp;
mod overhead;
mod report;

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::report::Report;

/// The same allocator as the `danling` binary, set up the same way (never handing freed memory back
/// to the system: see the binary's `keep_freed_memory`), so the in-process cases measure what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its index in `mimalloc.h`, versions 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// What the command line asked for.
#[derive(Debug)]
pub struct Options {
    /// The Python interpreter for the reference sides.
    pub python: String,
    /// Runs of each timed case; the medians are reported.
    pub repeats: usize,
    /// Where the markdown goes.
    pub output: PathBuf,
    /// Which cases run (letters a to e).
    pub only: String,
    /// Run the one case in `only` and print its rows as JSON (how each in-process case gets a
    /// process of its own).
    pub emit_json: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned()),
        repeats: 3,
        output: PathBuf::from("BENCHMARKS.md"),
        only: "abcde".to_owned(),
        emit_json: false,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--python" => options.python = value()?.clone(),
            "--repeats" => {
                let v = value()?;
                options.repeats = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--repeats: `{v}` is not a positive integer"))?;
            }
            "--output" => options.output = PathBuf::from(value()?),
            "--only" => options.only = value()?.replace(',', ""),
            "--emit-json" => options.emit_json = true,
            "-h" | "--help" => {
                println!(
                    "usage: danling-bench [--python PATH] [--repeats N] [--output FILE] [--only a,b,c,d,e]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    Ok(options)
}

/// The repository root: the benchmark's configs and scripts are read from there.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> std::process::ExitCode {
    #[allow(unsafe_code)]
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; no preconditions.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|options| run(&options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("danling-bench: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(options: &Options) -> anyhow::Result<()> {
    // Cases b and c have no Python side: a child running one of them need not ask.
    let python = if options.emit_json {
        e2e::Python::absent(&options.python)
    } else {
        e2e::Python::probe(&options.python)
    };
    let mut report = Report::new(options, &python);
    if options.emit_json {
        match options.only.as_str() {
            "b" => overhead::overhead(options, &mut report)?,
            "c" => checkpoint::bandwidth(options, &mut report)?,
            other => bail!("--emit-json runs case b or c alone, not `{other}`"),
        }
        println!("{}", report.to_json());
        return Ok(());
    }
    if options.only.contains('a') {
        e2e::end_to_end(options, &python, &mut report)?;
    }
    // The in-process cases each run in a fresh process, so that neither inherits the other's memory.
    for case in ['b', 'c'] {
        if options.only.contains(case) {
            isolated(case, options, &mut report)?;
        }
    }
    if options.only.contains('d') {
        e2e::startup(options, &python, &mut report)?;
    }
    if options.only.contains('e') {
        metrics::auroc(options, &python, &mut report)?;
    }
    let markdown = report.markdown();
    std::fs::write(&options.output, &markdown)
        .with_context(|| format!("cannot write {}", options.output.display()))?;
    println!("{markdown}");
    eprintln!("wrote {}", options.output.display());
    Ok(())
}

/// Runs case `case` in a child process of this binary and adds its rows to `report`.
fn isolated(case: char, options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--emit-json",
            "--only",
            &case.to_string(),
            "--python",
            &options.python,
        ])
        .args(["--repeats", &options.repeats.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("case {case} failed");
    }
    report.extend_from_json(&String::from_utf8_lossy(&out.stdout))
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}
