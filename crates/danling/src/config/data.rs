//! The runner's keys of the shared `data` section: how splits are cut into batches, and the loader.

use serde::{Deserialize, Serialize};

/// The runner's keys of the `data` section. They change what is trained, so they are hashed and
/// recorded like every other key; a program sets them in the config, never beside it.
///
/// The `data` mapping is shared: these keys are the runner's, and every other key in it goes to the
/// user's sections (a `data` section of theirs describes the data set: its name, path, and so on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    /// Samples per batch on each process (the global batch is `batch_size × world_size`).
    pub batch_size: u64,
    /// Shuffles the train splits every epoch, in an order drawn from (seed, epoch, split).
    pub shuffle: bool,
    /// Threads that read, transform and gather items off the training thread (`null`: chosen from
    /// the core count, [`DataConfig::workers`]; 0: on the training thread). An ignored key: every
    /// value trains the same weights.
    pub workers: Option<u64>,
    /// Batches being fetched or ready ahead of the training thread (`null`: twice the workers). An
    /// ignored key.
    pub prefetch: Option<u64>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            shuffle: true,
            workers: None,
            prefetch: None,
        }
    }
}

impl DataConfig {
    /// The keys the runner owns in the `data` mapping.
    pub const KEYS: [&'static str; 4] = ["batch_size", "shuffle", "workers", "prefetch"];

    /// The loader threads: `workers`, or by default half the cores the process may use, from 1 to
    /// 4. The training thread's kernels take the other half; a second loader thread on two cores
    /// pays only when the items are expensive (decoded images), and more than 4 rarely pays before
    /// the model does not keep up.
    pub fn workers(&self) -> usize {
        match self.workers {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => {
                let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
                (cores / 2).clamp(1, 4)
            }
        }
    }

    /// Batches in flight ahead of the training thread: `prefetch`, or twice the workers (at least 1).
    pub fn prefetch(&self) -> usize {
        match self.prefetch {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => (2 * self.workers()).max(1),
        }
    }
}
