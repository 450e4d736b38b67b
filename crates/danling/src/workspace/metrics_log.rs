//! `metrics.jsonl`: one JSON line per logged scalar, for any tool that reads lines of JSON.
//!
//! ```text
//! {"step":120,"epoch":3,"split":"val","name":"accuracy","value":0.9125,"time":1764801234.567}
//! ```
//!
//! `step` is the optimizer steps taken, `epoch` the epochs completed (the epoch a point of a step line
//! belongs to is `epoch + 1`), `time` the Unix time in seconds. A value that is not finite is `null`.
//!
//! The file is appended one whole write per batch of lines, so a killed process leaves whole lines
//! (a torn last line, after a machine crash, is cut off when the file is opened again). Every
//! checkpoint records the file's length at the moment it was taken; a resume cuts the file back to
//! it, so the points after the checkpoint, which the resumed run logs again, are never there twice.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::IoError;

/// One logged scalar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// The split (`train`, `val`, …).
    pub split: String,
    /// The metric (`loss`, `accuracy`, `lr`, …).
    pub name: String,
    /// The value; `None` when it was not finite.
    pub value: Option<f64>,
    /// Unix time in seconds.
    pub time: f64,
}

impl Point {
    /// A point logged now.
    pub fn now(step: u64, epoch: u64, split: &str, name: &str, value: f64) -> Self {
        Self {
            step,
            epoch,
            split: split.to_owned(),
            name: name.to_owned(),
            value: value.is_finite().then_some(value),
            time: unix_now(),
        }
    }
}

/// The current Unix time in seconds, to the millisecond.
pub fn unix_now() -> f64 {
    let ms = chrono::Utc::now().timestamp_millis();
    ms as f64 / 1e3
}

/// Where an attempt takes `metrics.jsonl` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A fresh start: nothing of an earlier attempt.
    Nothing,
    /// A resume from a checkpoint that recorded the file's length: the first `bytes` bytes.
    Bytes(u64),
    /// A resume from a checkpoint whose recorded length does not describe this file (one written
    /// before lengths were recorded, or in another directory): the points logged up to the
    /// checkpoint, which took `step` optimizer steps and completed `epoch` epochs. A point at the
    /// checkpoint's step counts only if its epoch is not past `epoch`: a checkpoint written at an
    /// epoch's last step, before the epoch was evaluated, leaves out the epoch's record, which the
    /// resumed run logs.
    UpTo {
        /// The checkpoint's optimizer steps.
        step: u64,
        /// The checkpoint's completed epochs.
        epoch: u64,
    },
    /// Everything there (a run that continues another run's checkpoint in a new directory).
    All,
}

/// `metrics.jsonl`, open for appending.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    len: u64,
}

impl MetricsLog {
    /// Opens (or creates) `path` and cuts it back as `keep` says.
    pub fn open(path: &Path, keep: Keep) -> Result<Self, IoError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(IoError::at("open", path))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(IoError::at("read", path))?;
        // Whole lines only: a torn last line (a crash during a write) is dropped.
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let len = match keep {
            Keep::Nothing => 0,
            Keep::All => whole,
            Keep::Bytes(bytes) => {
                let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
                if bytes > whole {
                    tracing::warn!(
                        "{} is shorter ({whole} bytes) than the checkpoint recorded ({bytes}): points logged \
                         before the checkpoint are missing from it",
                        path.display()
                    );
                }
                // At a line's end: a length that is not is not the file this checkpoint saw.
                match bytes.min(whole) {
                    0 => 0,
                    n if text[n - 1] == b'\n' => n,
                    n => text[..n].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
                }
            }
            Keep::UpTo { step, epoch } => {
                // Lines follow (step, epoch) order: the first one past the checkpoint ends it.
                let mut end = 0;
                for line in text[..whole].split_inclusive(|&b| b == b'\n') {
                    match serde_json::from_slice::<Point>(line) {
                        Ok(point) if (point.step, point.epoch) > (step, epoch) => break,
                        _ => end += line.len(),
                    }
                }
                end
            }
        };
        if len as u64 != text.len() as u64 {
            file.set_len(len as u64).map_err(IoError::at("truncate", path))?;
            file.sync_data().map_err(IoError::at("sync", path))?;
        }
        file.seek(SeekFrom::Start(len as u64))
            .map_err(IoError::at("seek", path))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            len: len as u64,
        })
    }

    /// Appends `points`, one line each, in one write.
    pub fn append(&mut self, points: &[Point]) -> Result<(), IoError> {
        if points.is_empty() {
            return Ok(());
        }
        let mut text = Vec::with_capacity(points.len() * 96);
        for point in points {
            // Numbers and strings: always serialisable.
            serde_json::to_writer(&mut text, point).unwrap_or_default();
            text.push(b'\n');
        }
        self.file
            .write_all(&text)
            .map_err(IoError::at("append to", &self.path))?;
        self.len += text.len() as u64;
        Ok(())
    }

    /// The file's length: what a checkpoint taken now records.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is logged yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes the file to disk, so that a checkpoint never records points a crash could lose.
    pub fn sync(&self) -> Result<(), IoError> {
        self.file.sync_data().map_err(IoError::at("sync", &self.path))
    }
}

/// The points of `metrics.jsonl` at `path` from line `from` on (0-based), with the number of whole
/// lines in the file. Lines that do not parse are skipped (and counted).
pub fn read_points(path: &Path, from: usize) -> Result<(Vec<Point>, usize), IoError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(error) => return Err(IoError::at("read", path)(error)),
    };
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut points = Vec::new();
    let mut lines = 0;
    for line in text[..whole].split_inclusive(|&b| b == b'\n') {
        if lines >= from
            && let Ok(point) = serde_json::from_slice::<Point>(line)
        {
            points.push(point);
        }
        lines += 1;
    }
    Ok((points, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, name: &str) -> Point {
        Point::now(step, 0, "train", name, step as f64)
    }

    fn steps(path: &Path) -> Vec<u64> {
        read_points(path, 0).unwrap().0.iter().map(|p| p.step).collect()
    }

    #[test]
    fn a_resume_cuts_the_file_back_to_the_checkpoints_length_or_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, Keep::Nothing).unwrap();
        log.append(&[point(1, "loss"), point(2, "loss")]).unwrap();
        let at_checkpoint = log.len();
        log.append(&[point(3, "loss"), point(4, "loss")]).unwrap();
        drop(log);
        assert_eq!(steps(&path), [1, 2, 3, 4]);

        let mut log = MetricsLog::open(&path, Keep::Bytes(at_checkpoint)).unwrap();
        assert_eq!(log.len(), at_checkpoint);
        log.append(&[point(3, "loss")]).unwrap();
        drop(log);
        assert_eq!(steps(&path), [1, 2, 3]);

        MetricsLog::open(&path, Keep::UpTo { step: 1, epoch: 0 }).unwrap();
        assert_eq!(steps(&path), [1]);
        MetricsLog::open(&path, Keep::All).unwrap();
        assert_eq!(steps(&path), [1]);
        MetricsLog::open(&path, Keep::Nothing).unwrap();
        assert_eq!(steps(&path), Vec::<u64>::new());
    }

    #[test]
    fn a_checkpoint_at_an_epochs_last_step_leaves_out_the_epochs_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, Keep::Nothing).unwrap();
        // Epoch 1 ends at step 4: its step line (epochs completed: 0), then its record (1).
        log.append(&[
            Point::now(4, 0, "train", "step_loss", 1.0),
            Point::now(4, 1, "val", "loss", 2.0),
            Point::now(6, 1, "train", "step_loss", 3.0),
        ])
        .unwrap();
        drop(log);
        let names = |path: &Path| -> Vec<String> {
            read_points(path, 0)
                .unwrap()
                .0
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        // The checkpoint written after the epoch's record keeps it.
        MetricsLog::open(&path, Keep::UpTo { step: 4, epoch: 1 }).unwrap();
        assert_eq!(names(&path), ["step_loss", "loss"]);
        // The step checkpoint written before it does not.
        MetricsLog::open(&path, Keep::UpTo { step: 4, epoch: 0 }).unwrap();
        assert_eq!(names(&path), ["step_loss"]);
    }

    #[test]
    fn a_torn_last_line_and_a_length_past_the_end_keep_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, Keep::Nothing).unwrap();
        log.append(&[point(1, "loss"), point(2, "loss")]).unwrap();
        let whole = log.len();
        drop(log);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"step\":3,\"ep");
        std::fs::write(&path, &text).unwrap();
        let log = MetricsLog::open(&path, Keep::Bytes(whole + 100)).unwrap();
        assert_eq!(log.len(), whole);
        assert_eq!(std::fs::read(&path).unwrap().len() as u64, whole);
        // A recorded length inside a line keeps the lines before it.
        drop(log);
        let log = MetricsLog::open(&path, Keep::Bytes(whole - 3)).unwrap();
        assert_eq!(steps(&path), [1]);
        assert!(!log.is_empty());
    }

    #[test]
    fn values_that_are_not_finite_are_null_and_lines_read_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, Keep::Nothing).unwrap();
        log.append(&[Point::now(1, 0, "train", "loss", f64::NAN), point(2, "lr")])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().contains("\"value\":null"), "{text}");
        let (points, lines) = read_points(&path, 1).unwrap();
        assert_eq!((points.len(), lines), (1, 2));
        assert_eq!(points[0].name, "lr");
    }
}
