//! A library program gets the graceful stop without asking for it: `train` installs the SIGTERM and
//! SIGINT handlers itself, and the loader's threads end with the stopped run. (Its own test binary: a stop request is process-wide, and would stop
//! every run after it.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataset::InMemDataset;
use burn::tensor::Device;
use common::{Classify, Net, config, data};
use danling::log::Console;
use danling::metrics::MetricKind;
use danling::runner::{Runner, StepOutput, Task};
use danling::signals::Stop;
use danling::{Identity, RunnerError};

/// The classifier of `common`, whose process receives SIGTERM during its micro-batch number `at`.
struct SignalledAt {
    at: u64,
    seen: AtomicU64,
}

impl Task for SignalledAt {
    type Model = Net;
    type Item = ([f32; 4], i64);
    type Batch = <Classify as Task>::Batch;

    fn collate(&self, items: Vec<Self::Item>, device: &Device) -> Self::Batch {
        Classify.collate(items, device)
    }

    fn forward(&self, model: &Net, batch: &Self::Batch) -> StepOutput {
        Classify.forward(model, batch)
    }

    fn train_step(&self, model: &Net, batch: &Self::Batch) -> StepOutput {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            // Without the runner's handler, SIGTERM's default action ends this test binary.
            signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        }
        Classify.train_step(model, batch)
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(3)
    }
}

#[test]
fn sigterm_stops_a_library_run_gracefully_without_any_set_up() {
    let root = tempfile::tempdir().unwrap();
    // 37 samples in batches of 5, 2 micro-batches a step: the signal comes in the 3rd step.
    let mut config = config(root.path(), &[("save_steps", "100"), ("data.workers", "3")]);
    config.data.batch_size = 5;
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let task = SignalledAt {
        at: 5,
        seen: AtomicU64::new(0),
    };
    let mut runner = Runner::with_identity(config, identity, task, Net::new(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data(37, 0)))
        .eval_split("val", InMemDataset::new(data(12, 100)));
    let error = runner.train().unwrap_err();
    assert!(
        matches!(
            error,
            RunnerError::Interrupted {
                signal: Stop::Terminate,
                step: 3
            }
        ),
        "{error}"
    );
    let dir = runner.identity().dir.clone();
    assert!(
        dir.join("checkpoints/latest.safetensors").is_file(),
        "latest is written"
    );
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "stopped", "{status}");
    // The loader's threads (`data.workers: 3`) ended with the run.
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        let loaders = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("danling-data"))
            .count();
        assert_eq!(loaders, 0, "loader threads left after the stop");
    }
    assert_eq!(Stop::Terminate.exit_code(), 143);
}
