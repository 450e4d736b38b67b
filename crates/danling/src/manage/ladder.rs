//! The report's sweeps, drawn from their records ([`SweepRecord`]): per sweep its search, its best
//! trial, each trial's score by rung (ASHA's ladder), the score against each sampled key with the
//! key's importance, and the trials' table.
//!
//! A key's importance is how much of the order of the scores it explains: the absolute Spearman
//! rank correlation for a number, the correlation ratio η of the score ranks for a choice, both in
//! `[0, 1]`. With a ladder, every trial is compared at the first rung, the one they all reach.

use std::fmt::Write as _;
use std::path::Path;

use super::record::{SweepRecord, TrialState};
use super::space::Dist;
use super::svg::{Axes, Series, chart_with, escape};
use super::sweep::{Values, parse_values, shown};
use super::trials::label;
use crate::metrics::functional::regression::ranks;
use crate::results::ScoreMode;

/// Every sweep record directly under `root`, by file name; one that cannot be read is left out.
pub fn read_records(root: &Path) -> Vec<SweepRecord> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".sweep.json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| SweepRecord::read(p).ok().flatten())
        .collect()
}

/// The report's section of `sweeps` (empty without any).
pub fn section(sweeps: &[SweepRecord]) -> String {
    if sweeps.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2>Sweeps</h2>\n");
    for sweep in sweeps {
        html += &one(sweep);
    }
    html
}

fn one(sweep: &SweepRecord) -> String {
    let mut html = String::new();
    let ladder = sweep.ladder.as_ref().map_or(String::new(), |l| {
        format!(
            "; ASHA rungs at {} {} (the top 1/{} go on)",
            sweep.unit,
            l.rungs.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            l.reduction
        )
    });
    let count = |state| sweep.trials.iter().filter(|t| t.state == state).count();
    let _ = write!(
        html,
        "<section class=\"sweep\" id=\"sweep-{}\"><h3>{}: {} trials by {}, seed {}{}</h3>\n<p>{} finished, {} pruned, {} \
         failed, {} unfinished; ranked by {} ({}).</p>\n",
        escape(&sweep.group),
        escape(&sweep.group),
        sweep.trials.len(),
        escape(&sweep.sampler),
        sweep.seed,
        escape(&ladder),
        count(TrialState::Finished),
        count(TrialState::Pruned),
        count(TrialState::Failed),
        count(TrialState::Running),
        escape(&sweep.score),
        if sweep.mode == ScoreMode::Min {
            "lower is better"
        } else {
            "higher is better"
        },
    );
    let better = |a: f64, b: f64| sweep.mode.is_better(a, b);
    let final_score = |t: &super::record::TrialRecord| {
        (t.state == TrialState::Finished)
            .then(|| t.rungs.last().map(|r| r.score))
            .flatten()
            .filter(|s| !s.is_nan())
    };
    let best = sweep
        .trials
        .iter()
        .filter_map(|t| final_score(t).map(|s| (t, s)))
        .reduce(|a, b| if better(b.1, a.1) { b } else { a });
    if let Some((trial, score)) = best {
        let _ = writeln!(
            html,
            "<p class=\"best\">Best: trial {} <b>{}</b> ({}), {} {}.</p>",
            trial.number + 1,
            escape(&trial.run_name),
            escape(&label(&trial.params)),
            escape(&sweep.score),
            super::runs::metric(score)
        );
    }
    // The ladder: a line per trial through its rungs.
    let names: Vec<String> = sweep
        .trials
        .iter()
        .map(|t| format!("{} {}", t.number + 1, label(&t.params)))
        .collect();
    let series: Vec<Series<'_>> = sweep
        .trials
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (t, name))| {
            (
                i,
                name.as_str(),
                t.rungs.iter().map(|r| (r.at as f64, r.score)).collect(),
            )
        })
        .collect();
    let axes = Axes {
        x_label: sweep.unit.as_str(),
        log_x: false,
        dots: true,
        whole_x: true,
    };
    let title = format!("{} by rung", sweep.score);
    let _ = writeln!(
        html,
        "<div class=\"charts\"><figure class=\"chart ladder\"><h3>{}</h3>{}</figure>",
        escape(&title),
        chart_with(&title, &series, false, axes)
    );
    // The best score of a trial trained to its end, against what the sweep had trained.
    let curve = sweep.best_curve();
    if !curve.is_empty() {
        let mut steps: Vec<(f64, f64)> = Vec::new();
        for (k, &(spent, best)) in curve.iter().enumerate() {
            if k > 0 {
                steps.push((spent as f64, curve[k - 1].1));
            }
            steps.push((spent as f64, best));
        }
        steps.push((sweep.spent() as f64, curve[curve.len() - 1].1));
        let title = format!("best {} against {}s trained", sweep.score, sweep.unit);
        let axes = Axes {
            x_label: &format!("{}s trained by the sweep", sweep.unit),
            log_x: false,
            dots: false,
            whole_x: true,
        };
        let _ = writeln!(
            html,
            "<figure class=\"chart cost\"><h3>{}</h3>{}</figure>",
            escape(&title),
            chart_with(&title, &[(0, "best so far", steps)], false, axes)
        );
    }
    // The score against each sampled key.
    let compared = |t: &super::record::TrialRecord| {
        if sweep.ladder.is_some() {
            t.rungs.first().map(|r| r.score)
        } else {
            final_score(t)
        }
    };
    for (key, spec) in &sweep.space {
        let Ok(Values::Sampled(dist)) = parse_values(key, spec) else {
            continue;
        };
        let points: Vec<(f64, f64, &str)> = sweep
            .trials
            .iter()
            .zip(&names)
            .filter_map(|(t, name)| {
                let x = dist.internal(t.params.get(key)?)?;
                let x = match dist {
                    Dist::LogUniform { .. } | Dist::Int { log: true, .. } => x.exp(),
                    _ => x,
                };
                Some((x, compared(t).filter(|s| !s.is_nan())?, name.as_str()))
            })
            .collect();
        let importance = importance(&dist, &points);
        let series: Vec<Series<'_>> = points
            .iter()
            .enumerate()
            .map(|(i, (x, s, name))| (i, *name, vec![(*x, *s)]))
            .collect();
        let title = format!(
            "{} against {key}{}: importance {}",
            sweep.score,
            if sweep.ladder.is_some() {
                " at the first rung"
            } else {
                ""
            },
            importance.map_or("–".to_owned(), |v| format!("{v:.2}"))
        );
        let axes = Axes {
            x_label: key,
            log_x: matches!(dist, Dist::LogUniform { .. } | Dist::Int { log: true, .. }),
            dots: true,
            whole_x: matches!(dist, Dist::Int { log: false, .. }),
        };
        let _ = writeln!(
            html,
            "<figure class=\"chart importance\" data-key=\"{}\" data-importance=\"{}\"><h3>{}</h3>{}</figure>",
            escape(key),
            importance.map_or(String::new(), |v| format!("{v:.4}")),
            escape(&title),
            chart_with(&title, &series, false, axes)
        );
    }
    html.push_str("</div>\n");
    // The trials.
    let rungs = sweep.ladder.as_ref().map_or(1, |l| l.rungs.len());
    html.push_str("<table class=\"trials\"><thead><tr><th>trial</th><th>run</th>");
    for key in sweep.space.keys() {
        let _ = write!(html, "<th>{}</th>", escape(key));
    }
    for r in 0..rungs {
        let _ = write!(html, "<th>rung {}</th>", r + 1);
    }
    html.push_str("<th>state</th><th>reason</th></tr></thead><tbody>\n");
    for trial in &sweep.trials {
        let _ = write!(
            html,
            "<tr class=\"status-{}\"><td>{}</td><td>{}</td>",
            trial.state.as_str(),
            trial.number + 1,
            escape(&trial.run_name)
        );
        for key in sweep.space.keys() {
            let value = trial.params.get(key).map(shown).unwrap_or_default();
            let _ = write!(html, "<td>{}</td>", escape(&value));
        }
        for r in 0..rungs {
            let value = trial
                .rungs
                .get(r)
                .map(|s| super::runs::metric(s.score))
                .unwrap_or_default();
            let _ = write!(html, "<td>{value}</td>");
        }
        let _ = writeln!(
            html,
            "<td>{}</td><td>{}</td></tr>",
            trial.state.as_str(),
            escape(trial.reason.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</tbody></table></section>\n");
    html
}

/// How much of the order of the scores a key explains, in `[0, 1]`; `None` with fewer than 3
/// trials or no spread.
fn importance(dist: &Dist, points: &[(f64, f64, &str)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let scores = ranks(&points.iter().map(|p| p.1).collect::<Vec<_>>());
    if let Dist::Choice(_) = dist {
        // The correlation ratio: the share of the rank variance between the choices.
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let total: f64 = scores.iter().map(|s| (s - mean).powi(2)).sum();
        let mut groups: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        for (p, s) in points.iter().zip(&scores) {
            groups.entry(p.0.to_bits()).or_default().push(*s);
        }
        let between: f64 = groups
            .values()
            .map(|g| g.len() as f64 * (g.iter().sum::<f64>() / g.len() as f64 - mean).powi(2))
            .sum();
        return (total > 0.0).then(|| (between / total).sqrt());
    }
    let values: Vec<f64> = points.iter().map(|p| p.0).collect();
    let rho = crate::metrics::functional::spearman(&values, &points.iter().map(|p| p.1).collect::<Vec<_>>());
    (!rho.is_nan()).then(|| rho.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importance_is_the_rank_correlation_or_the_correlation_ratio() {
        let lr = Dist::LogUniform { low: 1e-4, high: 1.0 };
        let rising: Vec<(f64, f64, &str)> = (1..=6).map(|i| (i as f64, (i * i) as f64, "")).collect();
        assert_eq!(importance(&lr, &rising), Some(1.0));
        let falling: Vec<(f64, f64, &str)> = (1..=6).map(|i| (i as f64, -(i as f64), "")).collect();
        assert_eq!(importance(&lr, &falling), Some(1.0));
        let choice = Dist::Choice(vec![0.into(), 1.into()]);
        // Choice 0.5 scores low, choice 1.5 high: it explains all of the order.
        let split = [(0.5, 1.0, ""), (0.5, 2.0, ""), (1.5, 5.0, ""), (1.5, 6.0, "")];
        let eta = importance(&choice, &split).unwrap();
        assert!(eta > 0.89, "{eta}");
        let mixed = [(0.5, 1.0, ""), (1.5, 2.0, ""), (0.5, 5.0, ""), (1.5, 6.0, "")];
        assert!(importance(&choice, &mixed).unwrap() < 0.5);
        assert_eq!(importance(&lr, &rising[..2]), None);
    }
}
