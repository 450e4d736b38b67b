//! `danling report`: one self-contained HTML file of a project's runs. The table sorts and filters
//! in the page; the charts are inline SVG, one per split and metric (`svg.rs`). Nothing is fetched
//! when the file is opened, and every text from a run (names, config values, metric names) is
//! escaped.
//!
//! The charts are drawn by a small SVG writer of our own (`svg.rs`) rather than `plotters`: a line chart with
//! axes, ticks, a legend and a log scale is some 150 lines, and the SVG stays lean (one `polyline`
//! per run, coordinates to 0.1 px), which keeps 100 runs × 100 epochs under 1 MB; it adds no
//! dependency and no font handling, and escaping stays in one function.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::filter::text;
use super::record::SweepRecord;
use super::runs::{duration, metric};
use super::scan::{Run, Status};
use super::svg::{Series, chart, colour, escape};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:14px;margin:8px 0}\
table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;\
white-space:nowrap}th{cursor:pointer;background:#f4f4f4;user-select:none}th.asc::after{content:' \\25B2'}\
th.desc::after{content:' \\25BC'}tr.hidden{display:none}.status-damaged,.status-failed,.status-killed{color:#b00}\
.status-running{color:#06c}.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{border:1px solid #eee;padding:8px;margin:0}\
.frame{fill:none;stroke:#999}.grid{stroke:#eee}.tick{stroke:#999}.xt{font-size:11px;text-anchor:middle;fill:#555}\
.yt{font-size:11px;text-anchor:end;fill:#555}.axis{font-size:11px;text-anchor:middle;fill:#555}\
.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px}\
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}pre{background:#f8f8f8;padding:8px;\
overflow:auto;max-height:320px}#filter{padding:4px 8px;width:320px}";

/// Sorts by a header's column (numbers as numbers, blanks last), filters rows by the text box, and
/// on load sorts by the best score, marking the table with `data-sorted`.
const SCRIPT: &str = r#"(function(){
var table=document.getElementById('runs');
function val(row,i){var c=row.cells[i];var v=c.getAttribute('data-value');if(v===null)v=c.textContent;return v;}
function sortBy(i,dir){var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=val(a,i),y=val(b,i);if(x===''&&y!=='')return 1;if(y===''&&x!=='')return -1;
var nx=parseFloat(x),ny=parseFloat(y);var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return dir*r;});
rows.forEach(function(r){body.appendChild(r);});
var hs=table.tHead.rows[0].cells;for(var k=0;k<hs.length;k++){hs[k].classList.remove('asc','desc');}
hs[i].classList.add(dir>0?'asc':'desc');table.setAttribute('data-sorted',hs[i].getAttribute('data-key')+(dir>0?' asc':' desc'));}
var heads=table.tHead.rows[0].cells;
for(var i=0;i<heads.length;i++){(function(i){heads[i].addEventListener('click',function(){
sortBy(i,heads[i].classList.contains('asc')?-1:1);});})(i);}
document.getElementById('filter').addEventListener('input',function(e){var q=e.target.value.toLowerCase();
Array.prototype.forEach.call(table.tBodies[0].rows,function(r){r.classList.toggle('hidden',q!==''&&r.textContent.toLowerCase().indexOf(q)<0);});});
for(var j=0;j<heads.length;j++){if(heads[j].getAttribute('data-key')==='best'){
sortBy(j,table.getAttribute('data-mode')==='min'?1:-1);}}
})();"#;

/// The report of `runs` and the `sweeps` they come from, titled with `source` (the project root
/// or the runs named).
pub fn report(runs: &[Run], sweeps: &[SweepRecord], source: &str, generated: &str) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let mode = runs.first().map_or("max", |r| {
        if matches!(r.mode, crate::results::ScoreMode::Min) {
            "min"
        } else {
            "max"
        }
    });
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"generator\" \
         content=\"danling {}\"><title>danling report: {}</title><style>{STYLE}</style></head><body>\n<h1>danling \
         report: {}</h1>\n<p>{} runs, written {}.</p>\n",
        crate::VERSION,
        escape(source),
        escape(source),
        runs.len(),
        escape(generated)
    );

    // The runs table.
    let _ = write!(
        html,
        "<h2>Runs</h2>\n<input id=\"filter\" type=\"search\" placeholder=\"filter runs\" aria-label=\"filter runs\">\n\
         <table id=\"runs\" data-sorted=\"none\" data-mode=\"{mode}\"><thead><tr>"
    );
    for (key, label) in [
        ("name", "name"),
        ("id", "id"),
        ("status", "status"),
        ("group", "group"),
        ("progress", "progress"),
        ("score", "score"),
        ("best", "best"),
        ("best_index", "best at"),
        ("last", "last"),
        ("commit", "commit"),
        ("started", "started"),
        ("duration", "duration"),
        ("parent", "parent"),
    ] {
        let _ = write!(html, "<th data-key=\"{key}\">{label}</th>");
    }
    html.push_str("</tr></thead><tbody>\n");
    for run in runs {
        let id = anchor(run);
        let number = |x: Option<f64>| x.map(|v| (format!("{v}"), metric(v)));
        let cells: Vec<(Option<String>, String)> = vec![
            (
                None,
                format!("<a href=\"#config-{id}\">{}</a>", escape(&run.name)),
            ),
            (None, escape(&run.id)),
            (
                None,
                format!(
                    "<span class=\"status-{}\" title=\"{}\">{}</span>",
                    run.status.as_str(),
                    escape(run.reason.as_deref().unwrap_or("")),
                    run.status.as_str()
                ),
            ),
            (None, escape(run.group.as_deref().unwrap_or(""))),
            (
                run.progress.map(|(done, _, _)| done.to_string()),
                run.progress
                    .map(|(d, b, u)| format!("{u} {d}/{b}"))
                    .unwrap_or_default(),
            ),
            (
                None,
                escape(&match &run.score_split {
                    Some(split) => format!("{split}.{}", run.score_name),
                    None => run.score_name.clone(),
                }),
            ),
            number(run.best.map(|b| b.value))
                .map_or((Some(String::new()), String::new()), |(v, s)| (Some(v), s)),
            (
                Some(run.best.map(|b| b.index.to_string()).unwrap_or_default()),
                run.best.map(|b| b.index.to_string()).unwrap_or_default(),
            ),
            number(run.last.map(|b| b.value))
                .map_or((Some(String::new()), String::new()), |(v, s)| (Some(v), s)),
            (
                None,
                escape(
                    &run.commit
                        .as_ref()
                        .map(|c| format!("{c}{}", if run.dirty { "*" } else { "" }))
                        .unwrap_or_default(),
                ),
            ),
            (None, escape(run.started.as_deref().unwrap_or(""))),
            (
                Some(run.seconds.map(|s| s.to_string()).unwrap_or_default()),
                run.seconds.map(duration).unwrap_or_default(),
            ),
            (
                None,
                run.parent
                    .as_ref()
                    .map(|p| match runs.iter().find(|r| &r.id == p) {
                        Some(parent) => {
                            format!("<a href=\"#config-{}\">{}</a>", anchor(parent), escape(p))
                        }
                        None => escape(p),
                    })
                    .unwrap_or_default(),
            ),
        ];
        let _ = write!(html, "<tr id=\"run-{id}\">");
        for (value, shown) in cells {
            match value {
                Some(value) => {
                    let _ = write!(html, "<td data-value=\"{}\">{shown}</td>", escape(&value));
                }
                None => {
                    let _ = write!(html, "<td>{shown}</td>");
                }
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>\n");

    // Best per group.
    let mut groups: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups
            .entry(run.group.clone().unwrap_or_default())
            .or_default()
            .push(run);
    }
    html.push_str("<h2>Best per group</h2>\n<table id=\"groups\"><thead><tr><th>group</th><th>runs</th><th>best run</th>\
                   <th>score</th><th>best</th></tr></thead><tbody>\n");
    for (group, members) in &groups {
        let best = members.iter().filter(|r| r.best.is_some()).min_by(|a, b| {
            let (x, y) = (a.best.map_or(0.0, |s| s.value), b.best.map_or(0.0, |s| s.value));
            let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
            if matches!(a.mode, crate::results::ScoreMode::Min) {
                o
            } else {
                o.reverse()
            }
        });
        let group = if group.is_empty() { "(none)" } else { group };
        let (name, score, value) = match best {
            Some(run) => (
                format!("<a href=\"#config-{}\">{}</a>", anchor(run), escape(&run.name)),
                escape(&format!(
                    "{}.{}",
                    run.score_split.as_deref().unwrap_or(""),
                    run.score_name
                )),
                run.best
                    .map(|b| format!("{} @{}", metric(b.value), b.index))
                    .unwrap_or_default(),
            ),
            None => ("–".to_owned(), String::new(), String::new()),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{name}</td><td>{score}</td><td>{value}</td></tr>",
            escape(group),
            members.len()
        );
    }
    html.push_str("</tbody></table>\n");
    html.push_str(&super::ladder::section(sweeps));

    // One chart per split and metric, in the order they first appear.
    let mut keys: Vec<(String, String)> = Vec::new();
    for run in runs {
        for (_, record) in run.results.iter() {
            for (split, metrics) in record {
                for name in metrics.keys() {
                    let key = (split.clone(), name.clone());
                    if !crate::results::is_wall_clock(name) && !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
    }
    html.push_str("<h2>Charts</h2>\n<ul class=\"legend\" id=\"legend\">");
    for (i, run) in runs.iter().enumerate() {
        let _ = write!(
            html,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{} <small>{}</small></li>",
            colour(i),
            escape(&run.name),
            escape(&run.id)
        );
    }
    html.push_str("</ul>\n<div class=\"charts\">\n");
    for (split, name) in &keys {
        let series: Vec<Series<'_>> = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let line = run
                    .results
                    .iter()
                    .filter_map(|(index, record)| Some((index as f64, *record.get(split)?.get(name)?)))
                    .collect();
                (i, run.name.as_str(), line)
            })
            .collect();
        let log = name == "lr" || name.ends_with("_lr");
        let title = format!("{split} {name}{}", if log { " (log scale)" } else { "" });
        let svg = chart(&title, &series, log);
        if svg.is_empty() {
            continue;
        }
        let _ = writeln!(
            html,
            "<figure class=\"chart\" data-split=\"{}\" data-metric=\"{}\"><h3>{}</h3>{svg}</figure>",
            escape(split),
            escape(name),
            escape(&title)
        );
    }
    html.push_str("</div>\n");
    html.push_str(&time_bars(runs));

    // Each run's config, and where it came from.
    html.push_str("<h2>Configs</h2>\n");
    for run in runs {
        let config = serde_saphyr::to_string(&run.config).unwrap_or_else(|_| text(&run.config));
        let parent = match &run.parent {
            Some(p) => match runs.iter().find(|r| &r.id == p) {
                Some(parent) => format!(
                    " — continued from <a href=\"#config-{}\">{}</a>",
                    anchor(parent),
                    escape(p)
                ),
                None => format!(" — continued from {}", escape(p)),
            },
            None => String::new(),
        };
        let reason = match (&run.status, &run.reason) {
            (Status::Damaged | Status::Failed | Status::Killed, Some(reason)) => {
                format!(" — {}: {}", run.status.as_str(), escape(reason))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            html,
            "<details id=\"config-{}\"><summary>{} <small>{}</small>{parent}{reason}</summary><p>{}</p><pre>{}</pre></details>",
            anchor(run),
            escape(&run.name),
            escape(&run.id),
            escape(&run.dir.display().to_string()),
            escape(&config)
        );
    }
    let _ = write!(html, "<script>{SCRIPT}</script>\n</body></html>\n");
    html
}

/// An id for a run's elements: its label with anything outside `[A-Za-z0-9_-]` replaced.
/// "Where the time goes": one stacked bar per run that recorded the breakdown of its train splits.
fn time_bars(runs: &[Run]) -> String {
    let rows: Vec<(String, Vec<f64>)> = runs
        .iter()
        .filter_map(|run| {
            let mut parts = vec![0.0; crate::results::TIME_PARTS.len()];
            let mut any = false;
            for (_, record) in run.results.iter() {
                for metrics in record.values() {
                    for (sum, part) in parts.iter_mut().zip(crate::results::TIME_PARTS) {
                        if let Some(value) = metrics.get(part).filter(|v| v.is_finite()) {
                            *sum += value;
                            any = true;
                        }
                    }
                }
            }
            any.then(|| (run.id.clone(), parts))
        })
        .collect();
    let legend = [
        "data wait",
        "forward+backward",
        "all-reduce",
        "optimizer",
        "checkpoint",
        "other",
    ];
    let svg = super::svg::stacked_bars(&rows, &legend);
    if svg.is_empty() {
        return String::new();
    }
    format!(
        "<h2>Where the time goes</h2>\n<figure class=\"time\" id=\"time\"><h3>train splits, all epochs</h3>{svg}</figure>\n"
    )
}

fn anchor(run: &Run) -> String {
    run.label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
