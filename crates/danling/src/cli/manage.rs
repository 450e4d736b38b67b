//! The experiment-management commands: `runs`, `compare`, `report` and `sweep` parse their flags,
//! call [`crate::manage`] and print.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use super::Failure;
use super::args::Args;
use crate::Sections;
use crate::manage::{Filter, Format, Query, Sweep, compare, report, runs, scan};

/// The project root when none is given.
const DEFAULT_ROOT: &str = "experiments";

fn input(message: impl std::fmt::Display) -> Failure {
    Failure::Input(anyhow::anyhow!("{message}"))
}

/// The directory given, or the default project root.
fn or_default(root: Option<&PathBuf>) -> PathBuf {
    root.cloned().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// The terminal's width, when stdout is one (`COLUMNS` wins).
fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, columns)| columns as usize)
}

/// `danling runs`.
pub fn runs(args: &Args) -> Result<(), Failure> {
    let root = or_default(args.root.as_ref());
    if !root.is_dir() {
        return Err(input(format!(
            "project root {} is not a directory",
            root.display()
        )));
    }
    let filter = args
        .filter
        .as_deref()
        .map(Filter::parse)
        .transpose()
        .map_err(input)?;
    let sort = args.sort.as_ref().map(|key| match key.strip_prefix('-') {
        Some(key) => (key.to_owned(), true),
        None => (key.clone(), false),
    });
    let format = args
        .format
        .as_deref()
        .and_then(Format::parse)
        .unwrap_or(Format::Table);
    let query = Query {
        filter,
        sort,
        columns: args.columns.clone(),
        only_changed: args.only_changed,
        group_by: args.group_by.clone(),
    };
    let all = scan(&root).map_err(Failure::Input)?;
    super::print(&runs::list(&all, &query).render(format, terminal_width()))
}

/// `danling compare`.
pub fn compare(args: &Args) -> Result<(), Failure> {
    let root = or_default(args.project_root.as_ref());
    let runs = args
        .runs
        .iter()
        .map(|spec| compare::resolve(spec, &root))
        .collect::<Result<Vec<_>, _>>()
        .map_err(input)?;
    let metric = args.metric.as_deref();
    let text = compare::compare(&runs, metric, terminal_width().unwrap_or(100)).map_err(input)?;
    super::print(&text)
}

/// `danling mlflow sync RUN...`: sends each run's missing points and status; a run the server does
/// not take is an error naming it, after the others are tried.
pub fn mlflow(args: &Args) -> Result<(), Failure> {
    if args.action.as_deref() != Some("sync") {
        return Err(input(format!(
            "unknown mlflow action `{}`; the one there is: sync",
            args.action.as_deref().unwrap_or_default()
        )));
    }
    let root = or_default(args.project_root.as_ref());
    let runs = args
        .runs
        .iter()
        .map(|spec| compare::resolve(spec, &root).map(|run| (spec, run.dir)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(input)?;
    let mut failed = Vec::new();
    let mut untracked = Vec::new();
    let mut out = String::new();
    for (spec, dir) in runs {
        match crate::workspace::mlflow::sync(&dir) {
            Ok(Some(synced)) => out.push_str(&format!(
                "{}: MLflow run {}: {} point(s) sent{}\n",
                dir.display(),
                synced.run_id,
                synced.points,
                synced.status.map(|s| format!(", status {s}")).unwrap_or_default()
            )),
            Ok(None) => untracked.push(format!("{spec}: the run has no `mlflow` section")),
            Err(error) => failed.push(format!("{spec}: {error}")),
        }
    }
    super::print(&out)?;
    if !failed.is_empty() {
        failed.extend(untracked);
        return Err(Failure::Other(anyhow::anyhow!(failed.join("; "))));
    }
    match untracked.is_empty() {
        true => Ok(()),
        false => Err(input(untracked.join("; "))),
    }
}

/// `danling report`.
pub fn report(args: &Args) -> Result<(), Failure> {
    let root = or_default(args.project_root.as_ref());
    let sources: Vec<&String> = args.sources.iter().collect();
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("report.html"));
    // One directory that is not a run is a project root; anything else names runs.
    let (runs, source) = match sources.as_slice() {
        [] => (scan(&root).map_err(Failure::Input)?, root.display().to_string()),
        [one]
            if PathBuf::from(one).is_dir()
                && !PathBuf::from(one).join(crate::workspace::files::RUNNER).exists() =>
        {
            (scan(&PathBuf::from(one)).map_err(Failure::Input)?, (*one).clone())
        }
        specs => (
            specs
                .iter()
                .map(|spec| compare::resolve(spec, &root))
                .collect::<Result<Vec<_>, _>>()
                .map_err(input)?,
            specs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        ),
    };
    // The records of the sweeps the runs belong to.
    let record_root = match sources.as_slice() {
        [one] if PathBuf::from(one).is_dir() && runs.iter().all(|r| r.dir != PathBuf::from(one)) => {
            PathBuf::from(one)
        }
        _ => root.clone(),
    };
    let sweeps: Vec<_> = crate::manage::ladder::read_records(&record_root)
        .into_iter()
        .filter(|s| runs.iter().any(|r| r.group.as_deref() == Some(s.group.as_str())))
        .collect();
    let html = report::report(&runs, &sweeps, &source, &crate::workspace::timestamp());
    crate::fs::write_atomic(&output, html.as_bytes()).map_err(input)?;
    tracing::info!("wrote {} ({} runs)", output.display(), runs.len());
    super::print(&format!("{}\n", output.display()))
}

/// `danling sweep`.
pub fn sweep<S: Sections>(args: &Args) -> Result<(), Failure> {
    let mut specs = args.axes.clone();
    // `danling sweep optim.lr=0.1,0.01` without a file: the first spec was taken for the file.
    let mut config = args.config.clone();
    if let Some(path) = &config
        && !path.exists()
        && path.to_string_lossy().contains('=')
    {
        specs.insert(0, path.to_string_lossy().into_owned());
        config = None;
    }
    let mut sweep =
        Sweep::plan::<S>(config.as_deref(), &args.overrides, &specs, &args.search).map_err(input)?;
    let jobs = args.jobs.unwrap_or(1).max(1);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = (cores / jobs).max(1);
    if args.dry_run {
        return super::print(&sweep.dry_run());
    }
    // Each trial is a `train` process of this very program.
    let program = std::env::current_exe()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot find this program's executable: {e}")))?;
    crate::signals::install()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let _log =
        crate::log::init_logging(crate::log::Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    tracing::info!(
        "sweep of {} trials in group {} ({} finished before): {jobs} at once, {threads} thread(s) each ({cores} cores); its record is {}",
        sweep.total,
        sweep.group,
        sweep.finished(),
        sweep.record_path.display()
    );
    let outcome = sweep
        .run(&program, jobs, threads)
        .map_err(|e| Failure::Other(anyhow::anyhow!(e)))?;
    // The group's runs, and the best of them.
    if let Ok((runs, best)) = sweep.listings() {
        let width = terminal_width();
        super::print(&format!(
            "{}\n{}",
            runs.render(Format::Table, width),
            best.render(Format::Table, width)
        ))?;
    }
    if let Some(signal) = crate::signals::requested().filter(|_| outcome.stopped) {
        return Err(Failure::Stopped(signal.exit_code()));
    }
    if outcome.failed > 0 {
        return Err(Failure::Other(anyhow::anyhow!(
            "{} of {} trials failed; their run.log says why",
            outcome.failed,
            sweep.total
        )));
    }
    Ok(())
}
