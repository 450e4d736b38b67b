//! `danling runs`: one row per run of a project root, filtered, sorted, grouped, as a table that fits
//! the terminal, JSON, CSV or markdown.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::results::ScoreMode;
use serde_json::{Map, Value, json};

use super::filter::{Filter, field, text};
use super::scan::{Run, Status};

/// How the listing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, fitted to a width.
    Table,
    /// A JSON array of objects, numbers as numbers.
    Json,
    /// CSV with a header line.
    Csv,
    /// A Markdown table.
    Markdown,
}

impl Format {
    /// The format named `table`, `json`, `csv` or `md`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "table" => Some(Format::Table),
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "md" | "markdown" => Some(Format::Markdown),
            _ => None,
        }
    }
}

/// What `danling runs` was asked for.
#[derive(Debug, Default)]
pub struct Query {
    /// Keep only the runs it holds for.
    pub filter: Option<Filter>,
    /// The sort key, and whether descending.
    pub sort: Option<(String, bool)>,
    /// More columns: config keys or `split.metric` values.
    pub columns: Vec<String>,
    /// Add a column per config key whose values differ across the runs kept.
    pub only_changed: bool,
    /// One row per value of this key: its best run.
    pub group_by: Option<String>,
}

/// The listing `query` asks for of `runs`: the runs it keeps in its order, with its columns, and
/// with `only_changed` a column for each config key whose values differ among them.
pub fn list(runs: &[Run], query: &Query) -> Listing {
    let selected = select(runs, query);
    let mut columns = query.columns.clone();
    if query.only_changed {
        let listed: Vec<&Run> = selected.iter().map(|(run, _)| *run).collect();
        for key in changed_keys(&listed) {
            if !columns.contains(&key) {
                columns.push(key);
            }
        }
    }
    listing(&selected, &columns, query.group_by.as_deref())
}

/// The rows a query keeps, in order, each with the number of runs it stands for (its group's size
/// under `--group-by`, else 1).
pub fn select<'a>(runs: &'a [Run], query: &Query) -> Vec<(&'a Run, usize)> {
    let mut kept: Vec<&Run> = runs
        .iter()
        .filter(|run| query.filter.as_ref().is_none_or(|f| f.matches(run)))
        .collect();
    if let Some((key, descending)) = &query.sort {
        kept.sort_by(|a, b| order(sort_key(a, key), sort_key(b, key), *descending));
    }
    let Some(group_key) = &query.group_by else {
        return kept.into_iter().map(|run| (run, 1)).collect();
    };
    // The best run of each group (by its best score), in the order the groups first appear.
    let mut groups: Vec<(String, Vec<&Run>)> = Vec::new();
    for run in kept {
        let name = field(run, group_key).map(|v| text(&v)).unwrap_or_default();
        match groups.iter_mut().find(|(g, _)| *g == name) {
            Some((_, members)) => members.push(run),
            None => groups.push((name, vec![run])),
        }
    }
    groups
        .into_iter()
        .filter_map(|(_, members)| {
            let count = members.len();
            members
                .into_iter()
                .min_by(|a, b| better(a, b))
                .map(|best| (best, count))
        })
        .collect()
}

/// `Less` when `a`'s best score is better than `b`'s (runs without one last).
fn better(a: &Run, b: &Run) -> Ordering {
    match (a.best, b.best) {
        (Some(x), Some(y)) => {
            let ordering = x.value.partial_cmp(&y.value).unwrap_or(Ordering::Equal);
            match a.mode {
                ScoreMode::Min => ordering,
                ScoreMode::Max => ordering.reverse(),
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn sort_key(run: &Run, key: &str) -> Option<Value> {
    match key {
        "started" => run.started.clone().map(Value::String),
        "duration" => run.seconds.map(|s| json!(s)),
        "progress" => run.progress.map(|(done, _, _)| json!(done)),
        _ => field(run, key),
    }
}

/// Missing values sort last either way; numbers as numbers, the rest as text.
fn order(a: Option<Value>, b: Option<Value>, descending: bool) -> Ordering {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (Some(_), None) => return Ordering::Less,
        (None, Some(_)) => return Ordering::Greater,
        (None, None) => return Ordering::Equal,
    };
    let ordering = match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => text(&a).cmp(&text(&b)),
    };
    if descending { ordering.reverse() } else { ordering }
}

/// Every leaf of a config tree by dotted key; lists are leaves.
fn leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let dotted = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&dotted, inner, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// The config keys whose values differ across `runs` (or that some lack), sorted.
pub fn changed_keys(runs: &[&Run]) -> Vec<String> {
    let flat: Vec<BTreeMap<String, Value>> = runs
        .iter()
        .map(|run| {
            let mut out = BTreeMap::new();
            leaves("", &run.config, &mut out);
            out
        })
        .collect();
    let mut keys: Vec<String> = flat.iter().flat_map(|f| f.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys.retain(|key| {
        let first = flat.first().and_then(|f| f.get(key));
        flat.iter().any(|f| f.get(key) != first)
    });
    keys
}

/// A metric value as the table writes it: 4 decimals, or fewer digits for large values.
pub fn metric(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    match x.abs() {
        0.0 => "0".to_owned(),
        a if a >= 1e4 => format!("{x:.0}"),
        a if a < 1e-3 => format!("{x:.3e}"),
        _ => format!("{x:.4}"),
    }
}

/// Seconds as `12.3s`, `4m05s` or `2h07m`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// An RFC 3339 time as `2026-12-01 13:04` (UTC).
fn started(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| time.to_owned())
}

/// The score a run is ranked by, as `val.accuracy`.
fn score_label(run: &Run) -> String {
    match &run.score_split {
        Some(split) => format!("{split}.{}", run.score_name),
        None => run.score_name.clone(),
    }
}

/// The listing: the rows' cells under their column names.
#[derive(Debug)]
pub struct Listing {
    /// The column names.
    pub headers: Vec<String>,
    /// The cells, row by row.
    pub rows: Vec<Vec<String>>,
    /// The same rows as JSON objects, with numbers as numbers.
    pub objects: Vec<Value>,
}

/// The listing of `selected`: the standard columns, `extra` after them, and `runs` (the group's
/// size) first under `--group-by`.
pub fn listing(selected: &[(&Run, usize)], extra: &[String], group_by: Option<&str>) -> Listing {
    let labels: Vec<String> = selected.iter().map(|(run, _)| score_label(run)).collect();
    let uniform = labels.windows(2).all(|w| w[0] == w[1]);
    let score = match (uniform, labels.first()) {
        (true, Some(label)) => format!(" ({label})"),
        _ => String::new(),
    };
    let mut headers: Vec<String> = Vec::new();
    if let Some(key) = group_by {
        headers.extend([key.to_owned(), "runs".to_owned()]);
    }
    headers.extend(
        [
            "name",
            "id",
            "status",
            "progress",
            &format!("best{score}"),
            "last",
            "commit",
            "started",
            "duration",
            "parent",
        ]
        .map(str::to_owned),
    );
    headers.extend(extra.iter().cloned());
    let mut rows = Vec::new();
    let mut objects = Vec::new();
    for ((run, count), label) in selected.iter().zip(&labels) {
        let prefix = if uniform {
            String::new()
        } else {
            format!("{label} ")
        };
        let status = match (&run.reason, run.status) {
            (
                Some(reason),
                Status::Finished
                | Status::Stopped
                | Status::Failed
                | Status::Pruned
                | Status::Preempted
                | Status::Damaged,
            ) => {
                format!("{} ({reason})", run.status.as_str())
            }
            _ => run.status.as_str().to_owned(),
        };
        let mut row = Vec::new();
        if let Some(key) = group_by {
            row.push(field(run, key).map(|v| text(&v)).unwrap_or_default());
            row.push(count.to_string());
        }
        row.extend([
            run.name.clone(),
            run.id.clone(),
            status,
            run.progress
                .map(|(done, budget, unit)| format!("{unit} {done}/{budget}"))
                .unwrap_or_default(),
            run.best
                .map(|b| format!("{prefix}{} @{}", metric(b.value), b.index))
                .unwrap_or_default(),
            run.last.map(|b| metric(b.value)).unwrap_or_default(),
            run.commit
                .as_ref()
                .map(|c| format!("{c}{}", if run.dirty { "*" } else { "" }))
                .unwrap_or_default(),
            run.started.as_deref().map(started).unwrap_or_default(),
            run.seconds.map(duration).unwrap_or_default(),
            run.parent.clone().unwrap_or_default(),
        ]);
        let mut object = Map::new();
        if let Some(key) = group_by {
            object.insert("group_key".into(), json!(key));
            object.insert("group".into(), field(run, key).unwrap_or(Value::Null));
            object.insert("runs".into(), json!(count));
        }
        if group_by.is_none() {
            object.insert("group".into(), json!(run.group));
        }
        object.insert("name".into(), json!(run.name));
        object.insert("id".into(), json!(run.id));
        object.insert("dir".into(), json!(run.dir.display().to_string()));
        object.insert("status".into(), json!(run.status.as_str()));
        object.insert("reason".into(), json!(run.reason));
        object.insert(
            "progress".into(),
            run.progress.map_or(
                Value::Null,
                |(done, budget, unit)| json!({"unit": unit, "done": done, "budget": budget}),
            ),
        );
        object.insert(
            "score".into(),
            json!({"name": run.score_name, "split": run.score_split, "mode": run.mode}),
        );
        let score = |s: Option<super::scan::Score>| {
            s.map_or(
                Value::Null,
                |s| json!({"index": s.index, "value": finite(s.value)}),
            )
        };
        object.insert("best".into(), score(run.best));
        object.insert("last".into(), score(run.last));
        object.insert("commit".into(), json!(run.commit));
        object.insert("dirty".into(), json!(run.dirty));
        object.insert("started".into(), json!(run.started));
        object.insert("seconds".into(), json!(run.seconds));
        object.insert("parent".into(), json!(run.parent));
        for key in extra {
            let value = field(run, key);
            let shown = match (&value, run.config_value(key).is_some()) {
                (Some(v), true) => text(v),
                (Some(v), false) => cell(v),
                (None, _) => String::new(),
            };
            row.push(shown);
            object.insert(key.clone(), value.unwrap_or(Value::Null));
        }
        rows.push(row);
        objects.push(Value::Object(object));
    }
    Listing {
        headers,
        rows,
        objects,
    }
}

fn finite(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A value in a table cell: metrics rounded, the rest as written.
fn cell(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => metric(n.as_f64().unwrap_or(f64::NAN)),
        other => text(other),
    }
}
