//! What the loops tell the user: step lines every `log_interval` batches, an epoch line per epoch, and
//! progress bars on a terminal (never in `run.log`).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::timing::{PARTS, breakdown};
use crate::metrics::{AverageMeter, MetricSet};
use crate::results::{Record, SplitResult, is_wall_clock};

/// A progress bar over the batches of one split, drawn only when enabled and stderr is a terminal.
pub(crate) fn progress_bar(enabled: bool, len: usize, label: &str) -> ProgressBar {
    let target = if enabled && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) = ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} [{elapsed} < {eta}] {msg}")
    {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar
}

/// The step line.
pub(crate) fn step_line(
    label: &str,
    batch: usize,
    batches: usize,
    loss: f64,
    lr: f64,
    per_batch: Duration,
    samples_per_s: f64,
) -> String {
    format!(
        "{label} [{batch}/{batches}] loss {loss:.4} lr {lr:.3e} {:.2} ms/batch {samples_per_s:.0} samples/s",
        per_batch.as_secs_f64() * 1e3
    )
}

/// The epoch line: each split's loss and metrics.
pub(crate) fn epoch_line(label: &str, record: &Record, is_best: bool) -> String {
    let splits: Vec<String> = record
        .iter()
        .map(|(split, metrics)| format!("{split}: {}", metrics_text(metrics)))
        .collect();
    format!(
        "{label} {}{}",
        splits.join(" | "),
        if is_best { " (best)" } else { "" }
    )
}

/// A split's loss and metrics, then, for a train split, where its time went.
fn metrics_text(metrics: &SplitResult) -> String {
    let text = metrics
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "lr" | "skipped") && !is_wall_clock(name))
        .map(|(name, value)| format!("{name} {value:.4}"))
        .collect::<Vec<_>>()
        .join(" ");
    match metrics.get("wall") {
        Some(&wall) => {
            let seconds: Vec<f64> = PARTS
                .iter()
                .map(|p| metrics.get(*p).copied().unwrap_or(0.0))
                .collect();
            format!("{text} (time: {})", breakdown(&seconds, wall))
        }
        None => text,
    }
}

/// A split's result: `loss`, the metrics, the `extra` values (train splits: `lr`, `skipped`), then
/// `time` (seconds per batch) and `samples_per_s`.
pub(crate) fn split_result(
    loss: &AverageMeter,
    metrics: &MetricSet,
    extra: &[(&str, f64)],
    batches: usize,
    seconds: f64,
) -> SplitResult {
    let mut result = SplitResult::new();
    result.insert("loss".into(), loss.avg());
    result.extend(metrics.compute());
    result.extend(extra.iter().map(|(name, value)| (name.to_string(), *value)));
    result.insert("time".into(), seconds / batches.max(1) as f64);
    result.insert(
        "samples_per_s".into(),
        loss.count / seconds.max(f64::MIN_POSITIVE),
    );
    result
}
