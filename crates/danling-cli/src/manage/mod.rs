//! Experiment management: `danling runs` over a project root's run directories.

mod compare;
mod filter;
mod report;
mod runs;
mod scan;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use crate::Failure;
use crate::args::Args;
use crate::flags;

pub use filter::Filter;
pub use runs::{Format, Query};
pub use scan::{Run, scan};

/// The project root when none is given.
const DEFAULT_ROOT: &str = "experiments";

fn input(message: impl std::fmt::Display) -> Failure {
    Failure::Input(anyhow::anyhow!("{message}"))
}

/// The comma-separated values of a repeatable flag, in order.
fn list(args: &Args, id: &str) -> Vec<String> {
    args.matches
        .get_many::<String>(id)
        .into_iter()
        .flatten()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
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
    let root = args
        .matches
        .get_one::<PathBuf>(flags::ROOT)
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    if !root.is_dir() {
        return Err(input(format!(
            "project root {} is not a directory",
            root.display()
        )));
    }
    let filter = args
        .matches
        .get_one::<String>(flags::FILTER)
        .map(|text| Filter::parse(text))
        .transpose()
        .map_err(input)?;
    let sort = args
        .matches
        .get_one::<String>(flags::SORT)
        .map(|key| match key.strip_prefix('-') {
            Some(key) => (key.to_owned(), true),
            None => (key.clone(), false),
        });
    let format = args
        .matches
        .get_one::<String>(flags::FORMAT)
        .and_then(|f| Format::parse(f))
        .unwrap_or(Format::Table);
    let query = Query {
        filter,
        sort,
        columns: list(args, flags::COLUMNS),
        only_changed: args.matches.get_flag(flags::ONLY_CHANGED),
        group_by: args.matches.get_one::<String>(flags::GROUP_BY).cloned(),
    };
    let all = scan(&root).map_err(Failure::Input)?;
    let selected = runs::select(&all, &query);
    let mut columns = query.columns.clone();
    if query.only_changed {
        let listed: Vec<&Run> = selected.iter().map(|(run, _)| *run).collect();
        for key in runs::changed_keys(&listed) {
            if !columns.contains(&key) {
                columns.push(key);
            }
        }
    }
    let listing = runs::listing(&selected, &columns, query.group_by.as_deref());
    crate::print(&listing.render(format, terminal_width()))
}

/// `danling compare`.
pub fn compare(args: &Args) -> Result<(), Failure> {
    let root = args
        .matches
        .get_one::<PathBuf>(flags::PROJECT_ROOT)
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let specs: Vec<&String> = args
        .matches
        .get_many::<String>(flags::RUNS_ARG)
        .into_iter()
        .flatten()
        .collect();
    let runs = specs
        .iter()
        .map(|spec| compare::resolve(spec, &root))
        .collect::<Result<Vec<_>, _>>()
        .map_err(input)?;
    let metric = args.matches.get_one::<String>(flags::METRIC).map(String::as_str);
    let text = compare::compare(&runs, metric, terminal_width().unwrap_or(100)).map_err(input)?;
    crate::print(&text)
}

/// `danling report`.
pub fn report(args: &Args) -> Result<(), Failure> {
    let root = args
        .matches
        .get_one::<PathBuf>(flags::PROJECT_ROOT)
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let sources: Vec<&String> = args
        .matches
        .get_many::<String>(flags::SOURCES)
        .into_iter()
        .flatten()
        .collect();
    let output = args
        .matches
        .get_one::<PathBuf>(flags::OUTPUT)
        .cloned()
        .unwrap_or_else(|| PathBuf::from("report.html"));
    // One directory that is not a run is a project root; anything else names runs.
    let (runs, source) = match sources.as_slice() {
        [] => (scan(&root).map_err(Failure::Input)?, root.display().to_string()),
        [one]
            if PathBuf::from(one).is_dir()
                && !PathBuf::from(one)
                    .join(danling::workspace::files::RUNNER)
                    .exists() =>
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
    let html = report::report(&runs, &source, &danling::workspace::timestamp());
    danling::fs::write_atomic(&output, html.as_bytes()).map_err(input)?;
    tracing::info!("wrote {} ({} runs)", output.display(), runs.len());
    crate::print(&format!("{}\n", output.display()))
}
