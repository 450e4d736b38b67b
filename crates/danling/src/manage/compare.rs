//! `danling compare RUN RUN...`: what differs between runs, side by side, and one metric plotted in
//! the terminal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::filter::text;
use super::runs::{changed_keys, metric};
use super::scan::{Run, read_run, scan};

/// Finds the run that `spec` names: a run directory, or under `root` a prefix of a run's id, of the
/// id's run part (what follows its first `-`: outside git every id starts `xxxxxxxx-`), or of its
/// directory's name.
pub fn resolve(spec: &str, root: &Path) -> Result<Run, String> {
    let path = PathBuf::from(spec);
    if path.join(crate::workspace::files::RUNNER).is_file() {
        return Ok(read_run(&path));
    }
    let runs = scan(root).map_err(|e| format!("`{spec}` is not a run directory, and {e}"))?;
    let mut matching: Vec<Run> = runs.into_iter().filter(|run| names(run, spec)).collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(format!(
            "no run `{spec}`: not a run directory, nor an id under {}",
            root.display()
        )),
        n => {
            const SHOWN: usize = 5;
            let mut listed: Vec<String> = matching.iter().take(SHOWN).map(Run::label).collect();
            if n > SHOWN {
                listed.push(format!("and {} more", n - SHOWN));
            }
            Err(format!(
                "`{spec}` names {n} runs under {}: {}; give more of the id",
                root.display(),
                listed.join(", ")
            ))
        }
    }
}

/// Whether `spec` names `run`: a prefix of its id, of its id's run part, or of its directory's name.
fn names(run: &Run, spec: &str) -> bool {
    let dir_name = run
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_part = run.id.split_once('-').map_or("", |(_, rest)| rest);
    (!run.id.is_empty() && run.id.starts_with(spec))
        || (!run_part.is_empty() && run_part.starts_with(spec))
        || dir_name.starts_with(spec)
}

/// Rows of cells as an aligned table.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| console::measure_text_width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - console::measure_text_width(c))))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// The comparison of `runs`, with `metric_key` (`split.metric`; the first run's score when `None`)
/// plotted over the index in `width` columns.
pub fn compare(runs: &[Run], metric_key: Option<&str>, width: usize) -> Result<String, String> {
    let mut out = String::new();
    let labels: Vec<String> = (1..=runs.len()).map(|i| format!("[{i}]")).collect();
    let mut header = vec![String::new()];
    header.extend(labels.iter().cloned());
    let mut rows = vec![header.clone()];
    rows.push(
        std::iter::once("run".to_owned())
            .chain(runs.iter().map(|r| r.name.clone()))
            .collect(),
    );
    rows.push(
        std::iter::once("id".to_owned())
            .chain(runs.iter().map(|r| r.id.clone()))
            .collect(),
    );
    rows.push(
        std::iter::once("status".to_owned())
            .chain(runs.iter().map(|r| r.status.as_str().to_owned()))
            .collect(),
    );
    rows.push(
        std::iter::once("commit".to_owned())
            .chain(runs.iter().map(|r| match &r.commit {
                Some(c) => format!("{c}{}", if r.dirty { " (dirty)" } else { "" }),
                None => "(no git)".to_owned(),
            }))
            .collect(),
    );
    rows.push(
        std::iter::once("parent".to_owned())
            .chain(runs.iter().map(|r| r.parent.clone().unwrap_or_default()))
            .collect(),
    );
    out += &table(&rows);

    let listed: Vec<&Run> = runs.iter().collect();
    let changed = changed_keys(&listed);
    out += "\nconfig keys that differ\n";
    if changed.is_empty() {
        out += "  (none)\n";
    } else {
        let mut rows = vec![header.clone()];
        for key in &changed {
            rows.push(
                std::iter::once(key.clone())
                    .chain(
                        runs.iter()
                            .map(|r| r.config_value(key).map(text).unwrap_or_else(|| "–".into())),
                    )
                    .collect(),
            );
        }
        out += &table(&rows);
    }

    out += "\nresults: best (index) and last\n";
    let mut rows = vec![header.clone()];
    let score = |s: Option<super::scan::Score>| s.map(|s| format!("{} ({})", metric(s.value), s.index));
    rows.push(
        std::iter::once("score".to_owned())
            .chain(runs.iter().map(|r| match &r.score_split {
                Some(split) => format!("{split}.{} {:?}", r.score_name, r.mode).to_lowercase(),
                None => r.score_name.clone(),
            }))
            .collect(),
    );
    rows.push(
        std::iter::once("best".to_owned())
            .chain(runs.iter().map(|r| score(r.best).unwrap_or_default()))
            .collect(),
    );
    rows.push(
        std::iter::once("last".to_owned())
            .chain(runs.iter().map(|r| score(r.last).unwrap_or_default()))
            .collect(),
    );
    // Every split.metric of the best results, then of the last.
    for (label, record) in [
        ("best", runs.iter().map(|r| r.best_record()).collect::<Vec<_>>()),
        (
            "last",
            runs.iter()
                .map(|r| r.results.latest().map(|(_, rec)| rec))
                .collect(),
        ),
    ] {
        let mut keys: Vec<(String, String)> = Vec::new();
        for rec in record.iter().flatten() {
            for (split, metrics) in rec.iter() {
                for name in metrics.keys() {
                    if !crate::results::is_wall_clock(name) && !keys.contains(&(split.clone(), name.clone()))
                    {
                        keys.push((split.clone(), name.clone()));
                    }
                }
            }
        }
        for (split, name) in keys {
            rows.push(
                std::iter::once(format!("{label} {split}.{name}"))
                    .chain(record.iter().map(|rec| {
                        rec.and_then(|r| r.get(&split))
                            .and_then(|m| m.get(&name))
                            .map(|v| metric(*v))
                            .unwrap_or_default()
                    }))
                    .collect(),
            );
        }
    }
    out += &table(&rows);

    let key = match metric_key {
        Some(key) => key.to_owned(),
        None => runs
            .iter()
            .find_map(|r| {
                r.score_split
                    .as_ref()
                    .map(|split| format!("{split}.{}", r.score_name))
            })
            .unwrap_or_else(|| "val.loss".to_owned()),
    };
    let (split, name) = key
        .split_once('.')
        .ok_or_else(|| format!("--metric `{key}` is not split.metric (val.accuracy)"))?;
    let series: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            r.results
                .iter()
                .filter_map(|(index, rec)| {
                    let v = *rec.get(split)?.get(name)?;
                    v.is_finite().then_some((index as f64, v))
                })
                .collect()
        })
        .collect();
    if series.iter().all(Vec::is_empty) {
        return Err(format!("no run has `{key}` in its results"));
    }
    let _ = writeln!(out, "\n{key} over the index");
    let legend: Vec<String> = runs
        .iter()
        .zip(&labels)
        .map(|(r, label)| format!("{label} {} ({})", r.name, r.id))
        .collect();
    out += &plot(&series, &legend, width.clamp(30, 120), 14);
    Ok(out)
}

/// A line plot of `series` in characters: one digit per run (`*` where runs meet), axes with the
/// extreme values, and the legend.
pub fn plot(series: &[Vec<(f64, f64)>], labels: &[String], width: usize, height: usize) -> String {
    let points = series.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if (y1 - y0).abs() < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    if (x1 - x0).abs() < 1e-12 {
        x1 = x0 + 1.0;
    }
    let y_labels = [metric(y1), metric(y0)];
    let margin = y_labels.iter().map(String::len).max().unwrap_or(0);
    let plot_width = width.saturating_sub(margin + 2).max(10);
    let mut grid = vec![vec![' '; plot_width]; height];
    let cell = |x: f64, y: f64| {
        let col = ((x - x0) / (x1 - x0) * (plot_width - 1) as f64).round() as usize;
        let row = ((y1 - y) / (y1 - y0) * (height - 1) as f64).round() as usize;
        (row.min(height - 1), col.min(plot_width - 1))
    };
    for (i, line) in series.iter().enumerate() {
        let mark = char::from_digit(((i + 1) % 10) as u32, 10).unwrap_or('#');
        // Each segment drawn by its interpolated cells, then the points themselves.
        for pair in line.windows(2) {
            let ((xa, ya), (xb, yb)) = (pair[0], pair[1]);
            let steps = plot_width.max(1);
            for s in 0..=steps {
                let t = s as f64 / steps as f64;
                let (r, c) = cell(xa + t * (xb - xa), ya + t * (yb - ya));
                if grid[r][c] == ' ' {
                    grid[r][c] = '·';
                }
            }
        }
        for &(x, y) in line {
            let (r, c) = cell(x, y);
            grid[r][c] = if grid[r][c] == ' ' || grid[r][c] == '·' || grid[r][c] == mark {
                mark
            } else {
                '*'
            };
        }
    }
    let mut out = String::new();
    for (r, row) in grid.iter().enumerate() {
        let label = match r {
            0 => y_labels[0].clone(),
            r if r == height - 1 => y_labels[1].clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{label:>margin$} │{}",
            row.iter().collect::<String>().trim_end()
        );
    }
    let _ = writeln!(out, "{} └{}", " ".repeat(margin), "─".repeat(plot_width));
    let (left, right) = (format!("{x0}"), format!("{x1}"));
    let gap = plot_width.saturating_sub(left.len() + right.len());
    let _ = writeln!(out, "{}  {left}{}{right}", " ".repeat(margin), " ".repeat(gap));
    for (i, label) in labels.iter().enumerate() {
        let mark = char::from_digit(((i + 1) % 10) as u32, 10).unwrap_or('#');
        let _ = writeln!(
            out,
            "  {mark} = {label}{}",
            if series[i].is_empty() { " (no values)" } else { "" }
        );
    }
    out
}
