//! `danling-bench`: danling side by side with what it replaces, on this machine, in one run.
//!
//! - (a) end-to-end training: `danling train bench/mlp.yaml` against Python DanLing running
//!   `bench/danling_mlp.py` (the same work), at 1 and 2 threads each;
//! - (b) runner overhead: the same model and data in a bare burn loop and through the runner;
//! - (c) checkpoint save and load of a 100M-parameter model against a raw write and read of the bytes;
//! - (d) startup: from process start to the end of the first step;
//! - (e) metrics: AUROC on 10M binary and 1M × 10 multi-class samples against torchmetrics;
//! - (f) data parallelism: 2 MPI ranks × 1 thread against 1 process × 2 threads on one global batch
//!   (needs `mpiexec` and the binary built with `--features mpi`, which `bench/run` does when
//!   `mpiexec` is there);
//! - (g) experiment management: `danling runs` over 1,000 run directories;
//! - (i) data-bound training: burn's MNIST CNN on 20,000 PNGs with 0, 1 and 2 loader threads,
//!   against PyTorch's `DataLoader` and torchvision's `ImageFolder` with 0, 1 and 2 workers (needs
//!   torch and torchvision);
//! - (k) search: 27 trials of the digits MLP by random draws, TPE and TPE + ASHA, against Optuna's
//!   TPE with its `SuccessiveHalvingPruner` driving the same danling trials (needs optuna).
//!
//! Writes a markdown table of ratios to `BENCHMARKS.md` (or `--output`) and prints it. The Python
//! sides run when `--python` (or `$PYTHON`, or `python3`) can import torch, danling and torchmetrics;
//! otherwise their columns say so.
//!
//! ```text
//! bench/run [--python PATH] [--repeats N] [--output FILE] [--only a,b,c,d,e,f,g,i,k]
//! ```

mod checkpoint;
mod e2e;
mod images;
mod listing;
mod metrics;
mod mlp;
mod overhead;
mod parallel;
mod report;
mod search;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, value_parser};

use crate::report::Report;

/// The same allocator as the `danling` binary, set up the same way (never handing freed memory back
/// to the system: see `danling::alloc`), so the in-process cases measure what it runs.
#[global_allocator]
static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;

/// What the command line asked for.
#[derive(Debug)]
pub struct Options {
    /// The Python interpreter for the reference sides.
    pub python: String,
    /// Runs of each timed case; the medians are reported.
    pub repeats: usize,
    /// Where the markdown goes.
    pub output: PathBuf,
    /// Which cases run (letters a to g, and i).
    pub only: String,
    /// Run the one case in `only` and print its rows as JSON (how each in-process case gets a
    /// process of its own).
    pub emit_json: bool,
}

/// The bench's flags, from which its arguments are parsed and its `--help` is written.
fn flags() -> clap::Command {
    clap::Command::new("danling-bench")
        .about("Benchmarks danling against Python DanLing and a bare burn loop; writes a table of ratios")
        .override_usage(
            "danling-bench [--python PATH] [--repeats N] [--output FILE] [--only a,b,c,d,e,f,g,i,k]",
        )
        // As before clap: a flag given twice takes its last value.
        .args_override_self(true)
        .arg(
            Arg::new("python")
                .long("python")
                .value_name("PATH")
                .help("The Python interpreter of the reference sides [default: $PYTHON, or python3]"),
        )
        .arg(
            Arg::new("repeats")
                .long("repeats")
                .value_name("N")
                .value_parser(positive)
                .default_value("3")
                .help("Runs of each timed case; the medians are reported"),
        )
        .arg(
            Arg::new("output")
                .long("output")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .default_value("BENCHMARKS.md")
                .help("Where the markdown goes"),
        )
        .arg(
            Arg::new("only")
                .long("only")
                .value_name("a,b,c,d,e,f,g,i,k")
                .default_value("abcdefgik")
                .help("The cases to run (see Cases below)"),
        )
        .after_help(
            "Cases:\n  \
             a  end-to-end training against Python DanLing, at 1 and 2 threads\n  \
             b  the runner's overhead over a bare burn loop\n  \
             c  checkpoint save and load of a 100M-parameter model against raw writes and reads\n  \
             d  startup: from process start to the end of the first step\n  \
             e  AUROC on 10M binary and 1M x 10 multi-class samples against torchmetrics\n  \
             f  2 MPI ranks x 1 thread against 1 process x 2 threads (needs mpiexec)\n  \
             g  `danling runs` over a project root of 1,000 run directories\n  \
             i  burn's MNIST CNN on 20,000 PNGs, 0/1/2 loader threads, against PyTorch's DataLoader\n  \
             k  27-trial searches by random, TPE and TPE + ASHA, against Optuna's TPE + SuccessiveHalving",
        )
        .arg(
            Arg::new("emit-json")
                .long("emit-json")
                .action(ArgAction::SetTrue)
                .hide(true)
                .help("Run the one case in --only and print its rows as JSON"),
        )
}

/// What the command line asks for: the options, or a text to print (`--help`), or a one-line error.
fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Options, clap::Error> {
    let matches = flags().try_get_matches_from(argv)?;
    let text = |id: &str| matches.get_one::<String>(id).cloned();
    Ok(Options {
        python: text("python")
            .or_else(|| std::env::var("PYTHON").ok())
            .unwrap_or_else(|| "python3".to_owned()),
        repeats: matches.get_one::<usize>("repeats").copied().unwrap_or(3),
        output: matches
            .get_one::<PathBuf>("output")
            .cloned()
            .unwrap_or_else(|| PathBuf::from("BENCHMARKS.md")),
        only: text("only").unwrap_or_default().replace(',', ""),
        emit_json: matches.get_flag("emit-json"),
    })
}

/// The value of `--repeats`: a positive integer.
fn positive(value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| "not a positive integer".to_owned())
}

/// clap's `err` as one line, without its usage and tips.
fn one_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// The repository root: the benchmark's configs and scripts are read from there.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn main() -> std::process::ExitCode {
    danling::alloc::keep_freed_memory();
    let options = match parse(std::env::args_os()) {
        Ok(options) => options,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            print!("{}", err.render());
            return std::process::ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("danling-bench: {}", one_line(&err));
            return std::process::ExitCode::from(2);
        }
    };
    match run(&options) {
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
    if options.only.contains('f') {
        parallel::data_parallel(options, &mut report)?;
    }
    if options.only.contains('g') {
        listing::runs(options, &mut report)?;
    }
    if options.only.contains('i') {
        images::data_bound(options, &mut report)?;
    }
    if options.only.contains('k') {
        search::search(options, &mut report)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options(line: &str) -> Result<Options, clap::Error> {
        parse(
            std::iter::once("danling-bench")
                .chain(line.split_whitespace())
                .map(OsString::from),
        )
    }

    #[test]
    fn flags_have_their_defaults_and_the_last_value_wins() {
        let defaults = options("").unwrap();
        assert_eq!(
            (
                defaults.repeats,
                defaults.output,
                defaults.only,
                defaults.emit_json
            ),
            (3, PathBuf::from("BENCHMARKS.md"), "abcdefgik".to_owned(), false)
        );
        let given =
            options("--only a,c --repeats 5 --output b.md --python py --repeats=2 --emit-json").unwrap();
        assert_eq!(
            (
                given.repeats,
                given.output,
                given.only,
                given.python,
                given.emit_json
            ),
            (2, PathBuf::from("b.md"), "ac".to_owned(), "py".to_owned(), true)
        );
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for (line, needle) in [
            ("--repeats 0", "not a positive integer"),
            ("--repeats x", "not a positive integer"),
            ("--repeats", "--repeats"),
            ("--bogus", "--bogus"),
        ] {
            let err = options(line).map(|_| ()).unwrap_err();
            assert!(one_line(&err).contains(needle), "{line}: {}", one_line(&err));
            assert!(!one_line(&err).contains('\n'));
        }
        let help = options("--help").map(|_| ()).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert!(help.render().to_string().contains("--repeats <N>"));
    }
}
