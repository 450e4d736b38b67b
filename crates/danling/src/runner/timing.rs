//! Where a train split's time goes: waiting for data, forward and backward, the gradient all-reduce,
//! the optimizer, checkpoints, and the rest (metrics, logs, callbacks), as wall-clock seconds and
//! shares of the split; with its tokens per second and the process's peak resident memory.
//!
//! The parts are timed on the training thread. On the CPU backend kernels run as they are called,
//! so each part holds its own work. A GPU backend queues kernels and runs them later: its time shows
//! where the training thread waits for them (the optimizer's one read of the loss), so there the
//! breakdown is of the training thread's time, not the device's.

use std::time::Duration;

pub(crate) use crate::results::TIME_PARTS as PARTS;

/// What the closing line calls each part.
const LABELS: [&str; 6] = [
    "data",
    "forward+backward",
    "all-reduce",
    "optimizer",
    "checkpoint",
    "other",
];

/// Data wait above this share of the training time makes the closing line suggest `data.workers`...
pub(crate) const DATA_WAIT_WARNING: f64 = 0.10;
/// ...when it is also this long in seconds: a run of a fraction of a second is not worth a warning.
pub(crate) const DATA_WAIT_WARNING_SECONDS: f64 = 1.0;

/// The time of each timed part of some training, on the training thread.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Times {
    /// Blocked on the loader, and collating its items onto the device.
    pub data: Duration,
    /// The training steps' forward passes, backward passes and gradient accumulation.
    pub forward_backward: Duration,
    /// The gradient all-reduce (nothing on one process).
    pub all_reduce: Duration,
    /// The non-finite check, clipping, the optimizer and scheduler, the buffers and the average.
    pub optimizer: Duration,
    /// Checkpoints written inside the split (`save_steps`, a stop).
    pub checkpoint: Duration,
    /// Tokens trained, where the task counts them.
    pub tokens: u64,
}

impl Times {
    /// Adds `other`'s times to these.
    pub(crate) fn add(&mut self, other: &Self) {
        self.data += other.data;
        self.forward_backward += other.forward_backward;
        self.all_reduce += other.all_reduce;
        self.optimizer += other.optimizer;
        self.checkpoint += other.checkpoint;
        self.tokens += other.tokens;
    }

    /// Seconds of each part in [`PARTS`] order, `other` being what is left of `wall`.
    fn seconds(&self, wall: f64) -> [f64; 6] {
        let timed = [
            self.data,
            self.forward_backward,
            self.all_reduce,
            self.optimizer,
            self.checkpoint,
        ]
        .map(|d| d.as_secs_f64());
        let other = (wall - timed.iter().sum::<f64>()).max(0.0);
        [timed[0], timed[1], timed[2], timed[3], timed[4], other]
    }

    /// The results of a train split that took `wall` seconds: each part's seconds and share,
    /// `tokens_per_s` when tokens were counted, and the peak resident memory where the system tells.
    pub(crate) fn results(&self, wall: f64) -> Vec<(String, f64)> {
        let seconds = self.seconds(wall);
        let share = |s: f64| if wall > 0.0 { s / wall } else { 0.0 };
        let mut out: Vec<(String, f64)> = vec![("wall".into(), wall)];
        out.extend(PARTS.iter().zip(seconds).map(|(name, s)| (name.to_string(), s)));
        out.extend(
            PARTS
                .iter()
                .zip(seconds)
                .map(|(name, s)| (format!("{name}_share"), share(s))),
        );
        if self.tokens > 0 {
            out.push((
                "tokens_per_s".into(),
                self.tokens as f64 / wall.max(f64::MIN_POSITIVE),
            ));
        }
        if let Some(mib) = peak_rss_mib() {
            out.push(("peak_rss_mib".into(), mib));
        }
        out
    }

    /// The breakdown as text: each part that took time, as a share of `wall`.
    pub(crate) fn text(&self, wall: f64) -> String {
        breakdown(&self.seconds(wall), wall)
    }
}

/// `data 3.1% forward+backward 80.2% …`: the parts of `seconds` (in [`PARTS`] order) that are
/// at least 0.05% of `wall`.
pub(crate) fn breakdown(seconds: &[f64], wall: f64) -> String {
    LABELS
        .iter()
        .zip(seconds)
        .filter(|(_, s)| wall > 0.0 && **s / wall >= 0.0005)
        .map(|(label, s)| format!("{label} {:.1}%", 100.0 * s / wall))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The most memory this process has held resident, in MiB (Linux's `VmHWM`); `None` elsewhere.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_and_the_rest_add_up_to_the_wall_time() {
        let times = Times {
            data: Duration::from_millis(100),
            forward_backward: Duration::from_millis(600),
            optimizer: Duration::from_millis(200),
            tokens: 5000,
            ..Times::default()
        };
        let results: std::collections::HashMap<String, f64> = times.results(1.0).into_iter().collect();
        let total: f64 = PARTS.iter().map(|p| results[*p]).sum();
        assert!((total - 1.0).abs() < 1e-9, "{results:?}");
        let shares: f64 = PARTS.iter().map(|p| results[&format!("{p}_share")]).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        assert!((results["other"] - 0.1).abs() < 1e-9);
        assert!((results["data_wait_share"] - 0.1).abs() < 1e-9);
        assert_eq!(results["tokens_per_s"], 5000.0);
        for name in results.keys() {
            assert!(
                crate::results::is_wall_clock(name),
                "{name} is a wall-clock result"
            );
        }
        assert_eq!(
            times.text(1.0),
            "data 10.0% forward+backward 60.0% optimizer 20.0% other 10.0%"
        );
    }

    #[test]
    fn the_peak_resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let mib = peak_rss_mib().unwrap();
            assert!(mib > 1.0 && mib < 1e6, "{mib}");
        }
    }
}
