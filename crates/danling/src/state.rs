//! The mutable progress of a run, kept apart from the immutable config: what every checkpoint
//! records, below both the checkpoint files and the runner that fills it.
//!
//! Only what cannot be derived is held. The checkpoint's `state` document still carries the two
//! derived values that readers of a checkpoint look for: the data `cursor` (the batches of the split
//! in progress already trained, 0 between epochs) and the `early_stop_counter` (evaluations since the
//! best, derived from the results). Both are ignored when a checkpoint is read back: the cursor is
//! part of the epoch in progress, and the counter is recomputed from the results.

use serde::{Deserialize, Serialize};

use crate::metrics::{AverageMeter, MetricStates};
use crate::results::Record;

/// Where a run stands. Saved in every checkpoint so that a run resumes from any point.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "Stored")]
pub struct State {
    /// Completed epochs.
    pub epoch: u64,
    /// Optimizer steps taken (skipped updates are not steps).
    pub step: u64,
    /// Micro-batches trained on.
    pub iter: u64,
    /// Updates skipped because the loss or a gradient was not finite.
    pub skipped: u64,
    /// The epoch in progress, when the checkpoint was written inside one.
    pub progress: Option<EpochProgress>,
    /// The dynamic loss scale of an f16 run.
    pub scaler: Option<LossScaler>,
    /// The state of each callback of the run that keeps one, by the callback's name.
    pub callbacks: indexmap::IndexMap<String, serde_json::Value>,
    /// The length of the run's `metrics.jsonl` when the checkpoint was taken: a resume cuts the file
    /// back to it. `None` in a checkpoint of a process that writes no files.
    pub metrics_log: Option<u64>,
}

/// Dynamic loss scaling for f16 training, as PyTorch's `GradScaler` does it: the loss is multiplied
/// by `scale` before backward, so that small gradients do not flush to zero in f16, and the
/// gradients are divided by it after. A step whose gradients overflowed is skipped and the scale
/// halved; after `GROWTH_INTERVAL` steps in a row without overflow it doubles.
///
/// The scale starts (and stops growing) at 2^15, not PyTorch's 2^16: here the backward pass is f16
/// from the loss on, and the scale itself must be an f16 number (the largest is 65504).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The current scale.
    pub scale: f64,
    /// Steps without overflow since the scale last changed (PyTorch's `_growth_tracker`).
    pub growth_tracker: u64,
    /// Steps skipped because the scaled gradients overflowed, over the whole run.
    pub overflows: u64,
}

impl LossScaler {
    /// The first scale, and the largest.
    pub const MAX_SCALE: f64 = 32768.0;
    /// Steps without overflow before the scale doubles.
    pub const GROWTH_INTERVAL: u64 = 2000;
    /// The smallest scale: below it, an overflow is not the scale's doing.
    pub const MIN_SCALE: f64 = 1.0 / 65536.0;

    /// A scaler at its first scale.
    pub fn new() -> Self {
        Self {
            scale: Self::MAX_SCALE,
            growth_tracker: 0,
            overflows: 0,
        }
    }

    /// Updates the scale after a step: halved on overflow, doubled after `GROWTH_INTERVAL` steps
    /// without one.
    pub fn update(&mut self, overflowed: bool) {
        if overflowed {
            self.overflows += 1;
            self.growth_tracker = 0;
            self.scale = (self.scale * 0.5).max(Self::MIN_SCALE);
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == Self::GROWTH_INTERVAL {
                self.growth_tracker = 0;
                self.scale = (self.scale * 2.0).min(Self::MAX_SCALE);
            }
        }
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

/// How the run that wrote a checkpoint was laid out across processes: runtime facts, not hashed,
/// that a resume compares with its own. The global batch of one micro-step is
/// `batch_size × world_size`, and of an optimizer step that times `accum_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The processes that trained the run.
    pub world_size: usize,
    /// The samples per batch on each process.
    pub batch_size: usize,
    /// The device that trained the run (absent in checkpoints before 0.2): where `auto` chose one,
    /// the one it chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<crate::config::Device>,
}

/// What an epoch in progress has accumulated, so that resuming it gives the same results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// The train split in progress (its position among the runner's splits).
    pub split: usize,
    /// Batches of that split already trained on. Stored as the state's `cursor`.
    #[serde(skip)]
    pub cursor: u64,
    /// Results of the train splits already finished this epoch.
    #[serde(with = "crate::nonfinite::record")]
    pub record: Record,
    /// The loss so far on the split in progress.
    pub loss: AverageMeter,
    /// The metrics so far on the split in progress: each metric's state.
    pub metrics: MetricStates,
    /// Skipped updates before this split started.
    pub skipped_before: u64,
    /// The loss and metrics so far of the other ranks (1, 2, …) of a multi-process run, so that each
    /// rank resumes its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<RankProgress>,
    /// Scalars the callbacks asked for so far in this epoch, for its record.
    #[serde(
        default,
        with = "crate::nonfinite::record",
        skip_serializing_if = "Record::is_empty"
    )]
    pub scalars: Record,
}

/// One rank's loss and metrics so far on the split in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankProgress {
    /// The loss so far.
    pub loss: AverageMeter,
    /// The metrics so far: each metric's state.
    pub metrics: MetricStates,
}

impl State {
    /// Optimizer steps attempted: taken, skipped as non-finite, or skipped because the f16
    /// gradients overflowed. What a step budget counts.
    pub fn attempts(&self) -> u64 {
        self.step + self.skipped + self.scaler.map_or(0, |scaler| scaler.overflows)
    }

    /// The batches of the split in progress already trained on (0 between epochs).
    pub fn cursor(&self) -> u64 {
        self.progress.as_ref().map_or(0, |p| p.cursor)
    }

    /// The `state` document of a checkpoint: these fields, with the derived `cursor` and
    /// `early_stop_counter` beside them.
    pub fn document(&self, early_stop_counter: u64) -> impl Serialize + '_ {
        Document {
            epoch: self.epoch,
            step: self.step,
            iter: self.iter,
            cursor: self.cursor(),
            skipped: self.skipped,
            early_stop_counter,
            progress: self.progress.as_ref(),
            scaler: self.scaler.as_ref(),
            callbacks: &self.callbacks,
            metrics_log: self.metrics_log,
        }
    }
}

/// The `state` document as written (the field order of earlier versions).
#[derive(Serialize)]
struct Document<'a> {
    epoch: u64,
    step: u64,
    iter: u64,
    cursor: u64,
    skipped: u64,
    early_stop_counter: u64,
    progress: Option<&'a EpochProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scaler: Option<&'a LossScaler>,
    #[serde(skip_serializing_if = "indexmap::IndexMap::is_empty")]
    callbacks: &'a indexmap::IndexMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_log: Option<u64>,
}

/// The `state` document as read: the derived fields are optional, and the counter is not kept.
#[derive(Deserialize)]
struct Stored {
    epoch: u64,
    step: u64,
    iter: u64,
    #[serde(default)]
    cursor: u64,
    skipped: u64,
    #[serde(default)]
    progress: Option<EpochProgress>,
    #[serde(default)]
    scaler: Option<LossScaler>,
    #[serde(default)]
    callbacks: indexmap::IndexMap<String, serde_json::Value>,
    #[serde(default)]
    metrics_log: Option<u64>,
}

impl From<Stored> for State {
    fn from(stored: Stored) -> Self {
        let progress = stored.progress.map(|progress| EpochProgress {
            cursor: stored.cursor,
            ..progress
        });
        Self {
            epoch: stored.epoch,
            step: stored.step,
            iter: stored.iter,
            skipped: stored.skipped,
            progress,
            scaler: stored.scaler,
            callbacks: stored.callbacks,
            metrics_log: stored.metrics_log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_progress() -> State {
        State {
            epoch: 2,
            step: 17,
            iter: 51,
            skipped: 1,
            progress: Some(EpochProgress {
                split: 0,
                cursor: 9,
                record: Record::new(),
                loss: AverageMeter::default(),
                metrics: crate::metrics::MetricSet::from(crate::metrics::binary_metrics()).snapshot(),
                skipped_before: 1,
                ranks: Vec::new(),
                scalars: Record::new(),
            }),
            scaler: Some(LossScaler {
                scale: 4096.0,
                growth_tracker: 7,
                overflows: 3,
            }),
            callbacks: [("counter".to_owned(), serde_json::json!({"seen": 17}))]
                .into_iter()
                .collect(),
            metrics_log: Some(1234),
        }
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_and_doubles_after_the_growth_interval() {
        let mut scaler = LossScaler::new();
        assert_eq!(scaler.scale, 32768.0, "the largest power of two f16 holds");
        scaler.update(true);
        assert_eq!(
            (scaler.scale, scaler.growth_tracker, scaler.overflows),
            (16384.0, 0, 1)
        );
        for _ in 0..LossScaler::GROWTH_INTERVAL - 1 {
            scaler.update(false);
        }
        assert_eq!(scaler.scale, 16384.0);
        scaler.update(false);
        assert_eq!((scaler.scale, scaler.growth_tracker), (32768.0, 0));
        for _ in 0..LossScaler::GROWTH_INTERVAL {
            scaler.update(false);
        }
        assert_eq!(scaler.scale, 32768.0, "never above f16's largest power of two");
        for _ in 0..100 {
            scaler.update(true);
        }
        assert_eq!(scaler.scale, LossScaler::MIN_SCALE);
    }

    #[test]
    fn a_state_without_a_scaler_writes_none() {
        let state = State {
            scaler: None,
            ..in_progress()
        };
        let value = serde_json::to_value(state.document(0)).unwrap();
        assert!(value.get("scaler").is_none());
        assert_eq!(serde_json::from_value::<State>(value).unwrap().scaler, None);
    }

    #[test]
    fn the_document_carries_the_derived_cursor_and_counter_and_reads_back_without_them() {
        let state = in_progress();
        let text = serde_json::to_string(&state.document(3)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["cursor"], 9);
        assert_eq!(value["early_stop_counter"], 3);
        assert!(value["progress"].get("cursor").is_none());
        let back: State = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);

        let between = State {
            progress: None,
            ..state
        };
        let value = serde_json::to_value(between.document(0)).unwrap();
        assert_eq!(value["cursor"], 0);
        assert_eq!(serde_json::from_value::<State>(value).unwrap(), between);
    }

    #[test]
    fn a_document_of_an_earlier_version_loads() {
        // As 0.1 wrote it: the counter stored, the cursor beside the progress.
        let old =
            r#"{"epoch":0,"step":4,"iter":8,"cursor":8,"skipped":0,"early_stop_counter":0,"progress":null}"#;
        let state: State = serde_json::from_str(old).unwrap();
        assert_eq!((state.step, state.iter, state.cursor()), (4, 8, 0));
    }
}
