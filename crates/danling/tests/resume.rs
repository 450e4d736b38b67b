//! Exact resume: a run stopped at any step and resumed from its checkpoint ends with bit-identical
//! weights and identical results (but for the wall-clock `time` and `samples_per_s`), with dropout,
//! shuffling, a cosine schedule and gradient accumulation all on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use burn::data::dataset::InMemDataset;
use burn::tensor::Device;
use common::{Classify, Net, comparable, config, data, runner, serial, weights};
use danling::log::Console;
use danling::runner::Runner;
use danling::runner::callback::{Checkpoint as CallbackCheckpoint, Evaluation, RunEnd, RunStart, Step};
use danling::runner::{Callback, CallbackError, Control};
use danling::{Config, Identity, Override};

#[test]
fn resuming_from_any_step_matches_the_uninterrupted_run() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[]));
    let trained = straight.train().unwrap();
    let dir: PathBuf = trained.dir.clone().unwrap();
    // 37 samples in batches of 5 is 8 batches, 4 optimizer steps per epoch, 12 in all.
    assert_eq!(trained.state.step, 12);
    let expected_weights = weights(&straight);
    let expected_results = comparable(&trained.results);

    let again = runner(config(root.path(), &[("name", "again")])).train().unwrap();
    assert_eq!(
        comparable(&again.results),
        expected_results,
        "two straight runs are identical"
    );

    // Mid-epoch (1, 2, 6, 9), at the end of an epoch's training (4, 8) and after the last step (12).
    for k in [1u64, 2, 4, 6, 8, 9, 12] {
        let checkpoint = dir.join(format!("checkpoints/step-{k}.safetensors"));
        assert!(checkpoint.is_file(), "step-{k} exists");
        let copy = root.path().join(format!("resume-from-{k}.safetensors"));
        std::fs::copy(&checkpoint, &copy).unwrap();
        let mut resumed = runner(config(root.path(), &[("checkpoint", copy.to_str().unwrap())]));
        let finished = resumed.train().unwrap();
        assert_eq!(
            finished.dir.as_deref(),
            Some(dir.as_path()),
            "the run goes on in its own dir"
        );
        assert_eq!(finished.state.step, 12, "from step {k}");
        assert_eq!(
            weights(&resumed),
            expected_weights,
            "bit-identical weights from step {k}"
        );
        assert_eq!(
            comparable(&finished.results),
            expected_results,
            "identical results from step {k}"
        );
    }
}

/// With 8 batches in groups of 3, an epoch's last group is short (2 batches); a checkpoint written
/// after it resumes past it, not into it.
#[test]
fn resuming_after_a_short_last_group_does_not_train_it_twice() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[("accum_steps", "3")]));
    let trained = straight.train().unwrap();
    assert_eq!(trained.state.step, 9);
    let dir = trained.dir.clone().unwrap();
    for k in 1..=9 {
        let copy = root.path().join(format!("short-{k}.safetensors"));
        std::fs::copy(dir.join(format!("checkpoints/step-{k}.safetensors")), &copy).unwrap();
        let checkpoint = ("checkpoint", copy.to_str().unwrap());
        let mut resumed = runner(config(root.path(), &[("accum_steps", "3"), checkpoint]));
        let finished = resumed.train().unwrap();
        assert_eq!(finished.state, trained.state, "from step {k}");
        assert_eq!(weights(&resumed), weights(&straight), "from step {k}");
        assert_eq!(
            comparable(&finished.results),
            comparable(&trained.results),
            "from step {k}"
        );
    }
}

#[test]
fn resume_true_continues_from_latest_and_a_finished_run_trains_nothing() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut first = runner(config(root.path(), &[("epochs", "2")]));
    let trained = first.train().unwrap();
    let dir = trained.dir.unwrap();
    let results_before = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let latest_before = std::fs::read(dir.join("checkpoints/latest.safetensors")).unwrap();

    let mut again = runner(config(root.path(), &[("epochs", "2"), ("resume", "true")]));
    let finished = again.train().unwrap();
    assert_eq!(finished.state, trained.state, "nothing was trained");
    assert_eq!(weights(&again), weights(&first));
    let results_after = std::fs::read_to_string(dir.join("results.json")).unwrap();
    let strip = |text: &str| {
        text.lines()
            .filter(|l| !l.contains("timestamp"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&results_after), strip(&results_before));
    assert_eq!(
        std::fs::read(dir.join("checkpoints/latest.safetensors")).unwrap(),
        latest_before
    );
    for file in [
        "runner.yaml",
        "run.log",
        "results.json",
        "latest.json",
        "best.json",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("=====")).count(),
        2,
        "the log was appended to"
    );
}

#[test]
fn keep_latest_k_keeps_the_newest_history_and_never_latest_or_best() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let trained = runner(config(
        root.path(),
        &[("keep_latest_k", "2"), ("save_interval", "1")],
    ))
    .train()
    .unwrap();
    let dir = trained.dir.unwrap().join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "best.safetensors",
            "epoch-2.safetensors",
            "epoch-3.safetensors",
            "latest.safetensors",
            "step-11.safetensors",
            "step-12.safetensors"
        ]
    );
}

#[test]
fn the_checkpoint_file_holds_model_optimizer_scheduler_and_metadata() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let trained = runner(config(root.path(), &[("epochs", "1")])).train().unwrap();
    let path = trained.dir.unwrap().join("checkpoints/latest.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(
        names,
        [
            "model.hidden.bias",
            "model.hidden.weight",
            "model.output.bias",
            "model.output.weight",
            "optimizer.record",
            "scheduler.state"
        ]
    );
    // PyTorch layout: a linear layer's weight is [out, in].
    let hidden = file.tensor("model.hidden.weight").unwrap();
    assert_eq!(
        (hidden.shape(), hidden.dtype()),
        (&[16, 4][..], safetensors::Dtype::F32)
    );
    assert_eq!(file.tensor("model.output.weight").unwrap().shape(), [3, 16]);
    assert_eq!(
        file.tensor("optimizer.record").unwrap().dtype(),
        safetensors::Dtype::U8
    );
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["format"], "danling.checkpoint");
    assert_eq!(metadata["version"], "1");
    for key in ["config", "state", "results", "identity", "param_ids"] {
        let value: serde_json::Value = serde_json::from_str(&metadata[key]).unwrap();
        assert!(value.is_object(), "{key}");
    }
    let state: serde_json::Value = serde_json::from_str(&metadata["state"]).unwrap();
    assert_eq!(state["epoch"], 1);
    assert_eq!(state["step"], 4);
}

#[test]
fn from_checkpoint_continues_the_run_of_a_file() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[]));
    let trained = straight.train().unwrap();
    let step = trained
        .dir
        .clone()
        .unwrap()
        .join("checkpoints/step-5.safetensors");
    let mut resumed = Runner::from_checkpoint(&step, Classify, Net::new(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data(37, 0)))
        .eval_split("val", InMemDataset::new(data(12, 100)));
    let finished = resumed.train().unwrap();
    assert_eq!(weights(&resumed), weights(&straight));
    assert_eq!(comparable(&finished.results), comparable(&trained.results));
}

#[test]
fn a_corrupt_latest_falls_back_to_the_newest_intact_checkpoint() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut straight = runner(config(root.path(), &[]));
    let trained = straight.train().unwrap();
    let dir = trained.dir.unwrap();
    let checkpoints = dir.join("checkpoints");
    // Keep only latest (now truncated), a flipped step-12 and an intact step-7 (and add a step-12
    // whose `param_ids` are damaged).
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !["latest.safetensors", "step-12.safetensors", "step-7.safetensors"].contains(&name.as_str()) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let latest = checkpoints.join("latest.safetensors");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).unwrap();
    let step12 = checkpoints.join("step-12.safetensors");
    let mut bytes = std::fs::read(&step12).unwrap();
    // The same step again, intact but for its `param_ids`, which only loading it reads: passed
    // over too, not chosen and then failed on.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    header["__metadata__"]["param_ids"] = "{\"hidden.weight\": ".into();
    let header = serde_json::to_vec(&header).unwrap();
    let mut ids_damaged = (header.len() as u64).to_le_bytes().to_vec();
    ids_damaged.extend_from_slice(&header);
    ids_damaged.extend_from_slice(&bytes[8 + header_len..]);
    std::fs::write(checkpoints.join("step-12-ids.safetensors"), &ids_damaged).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&step12, &bytes).unwrap();

    let err = danling::checkpoint::read_checkpoint(&step12)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum") && err.contains("step-12"), "{err}");

    let mut resumed = runner(config(root.path(), &[("resume", "true")]));
    let finished = resumed.train().unwrap();
    assert_eq!(finished.state.step, 12);
    assert_eq!(
        weights(&resumed),
        weights(&straight),
        "resumed from step-7 and finished identically"
    );
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(
        log.contains("latest.safetensors")
            && log.contains("step-12.safetensors")
            && log.contains("step-12-ids.safetensors: param_ids"),
        "{log}"
    );
    assert!(
        log.contains("resuming from") && log.contains("step-7.safetensors"),
        "{log}"
    );
}

/// A program's callback: counts steps (its state), records a scalar every 3 steps and one at each
/// evaluation, and stops the run at a step of its choosing.
struct Counter {
    seen: u64,
    evaluations: u64,
    stop_at: Option<u64>,
    events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Counter {
    fn new(stop_at: Option<u64>) -> Self {
        Self {
            seen: 0,
            evaluations: 0,
            stop_at,
            events: Default::default(),
        }
    }
}

impl Callback<Net> for Counter {
    fn name(&self) -> String {
        "counter".into()
    }
    fn on_run_start(&mut self, run: &RunStart<'_, Net>, _: &mut Control) {
        self.events.lock().unwrap().push(format!("start {}", run.step));
    }
    fn on_step(&mut self, step: &Step<'_, Net>, control: &mut Control) {
        self.seen += 1;
        self.events.lock().unwrap().push(format!("step {}", step.step));
        if step.step.is_multiple_of(3) {
            control.record("train", "counted", self.seen as f64);
            control.record("train", "step_loss", step.loss());
        }
        if self.stop_at == Some(step.step) {
            control.stop(format!("reached step {}", step.step));
        }
    }
    fn on_evaluation(&mut self, evaluation: &Evaluation<'_, Net>, control: &mut Control) {
        self.evaluations += 1;
        assert!(evaluation.record.contains_key("val"));
        control.record("val", "evaluations", self.evaluations as f64);
        self.events
            .lock()
            .unwrap()
            .push(format!("evaluation {}", evaluation.index));
    }
    fn on_checkpoint(&mut self, checkpoint: &CallbackCheckpoint<'_>) {
        assert!(
            checkpoint.path.is_file(),
            "{} is on disk",
            checkpoint.path.display()
        );
        let name = checkpoint
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        self.events.lock().unwrap().push(format!("checkpoint {name}"));
    }
    fn on_run_end(&mut self, end: &RunEnd<'_>) {
        self.events
            .lock()
            .unwrap()
            .push(format!("end {} {}", end.outcome, end.step));
    }
    fn state(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"seen": self.seen, "evaluations": self.evaluations}))
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), CallbackError> {
        self.seen = state["seen"]
            .as_u64()
            .ok_or_else(|| CallbackError("no seen".into()))?;
        self.evaluations = state["evaluations"].as_u64().unwrap_or(0);
        Ok(())
    }
}

#[test]
fn a_callbacks_state_scalars_and_stop_resume_exactly() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let straight_counter = Counter::new(None);
    let events = std::sync::Arc::clone(&straight_counter.events);
    let mut straight = runner(config(root.path(), &[])).callback(straight_counter);
    let trained = straight.train().unwrap();
    assert_eq!(trained.state.step, 12);
    assert_eq!(trained.stopped, None);
    let expected = comparable(&trained.results);
    let record = trained.results.get(3).unwrap();
    assert_eq!(
        record["train"]["counted"], 12.0,
        "the count of the epoch's last multiple of 3"
    );
    assert!(record["train"]["step_loss"].is_finite());
    assert_eq!(record["val"]["evaluations"], 3.0);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.first().map(String::as_str), Some("start 0"));
    assert_eq!(events.last().map(String::as_str), Some("end finished 12"));
    assert_eq!(events.iter().filter(|e| e.starts_with("step ")).count(), 12);
    assert_eq!(events.iter().filter(|e| e.starts_with("evaluation ")).count(), 3);
    assert!(
        events.contains(&"checkpoint step-5.safetensors".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"checkpoint latest.safetensors".to_owned()),
        "{events:?}"
    );
    let dir = trained.dir.clone().unwrap();

    // Resumed from every step, the callback's state comes back: the same scalars, the same run.
    for k in 1..=12u64 {
        let copy = root.path().join(format!("callback-from-{k}.safetensors"));
        std::fs::copy(dir.join(format!("checkpoints/step-{k}.safetensors")), &copy).unwrap();
        let mut resumed = runner(config(root.path(), &[("checkpoint", copy.to_str().unwrap())]))
            .callback(Counter::new(None));
        let finished = resumed.train().unwrap();
        assert_eq!(comparable(&finished.results), expected, "from step {k}");
        assert_eq!(weights(&resumed), weights(&straight), "from step {k}");
    }

    // Stopped by the callback mid-epoch: `latest` holds step 7, `status.json` says why, and a resume
    // finishes the same run.
    let stopping = config(root.path(), &[("name", "stopped")]);
    let mut stopped = runner(stopping.clone()).callback(Counter::new(Some(7)));
    let trained = stopped.train().unwrap();
    assert_eq!(trained.stopped.as_deref(), Some("reached step 7"));
    assert_eq!(trained.state.step, 7);
    let run = trained.dir.clone().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "stopped");
    assert_eq!(status["reason"], "reached step 7");
    let mut resume = stopping;
    resume.resume = danling::config::Resume::On;
    let mut resumed = runner(resume).callback(Counter::new(None));
    let finished = resumed.train().unwrap();
    assert_eq!(finished.state.step, 12);
    assert_eq!(weights(&resumed), weights(&straight));
    let mut finished = comparable(&finished.results);
    let mut expected = expected;
    // The name differs, and with it nothing else.
    for value in [&mut finished, &mut expected] {
        value.as_object_mut().unwrap().remove("name");
    }
    assert_eq!(finished, expected);
}

/// SGD with Nesterov momentum, built by the program: the config declares it (`optim.type: custom`
/// and its description in `optim.custom`, hashed), and a mid-epoch resume rebuilds it and restores
/// its momentum exactly.
fn nesterov() -> burn::optim::ModuleOptimizer {
    use burn::optim::SgdConfig;
    use burn::optim::momentum::MomentumConfig;
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
        }))
        .init()
}

#[test]
fn a_programs_optimizer_is_declared_in_the_config_and_resumes_exactly() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let custom = [
        ("optim.type", "custom"),
        ("optim.custom", "{sgd: {momentum: 0.9, nesterov: true}}"),
    ];
    let mut straight = runner(config(root.path(), &custom)).optimizer(nesterov);
    let trained = straight.train().unwrap();
    assert_eq!(trained.state.step, 12);
    let dir = trained.dir.clone().unwrap();
    // Momentum changes the run: it is not the default AdamW's, nor plain SGD's.
    let mut adamw = runner(config(root.path(), &[("name", "adamw")]));
    adamw.train().unwrap();
    assert_ne!(weights(&adamw), weights(&straight));
    for k in [3u64, 6, 9] {
        let copy = root.path().join(format!("nesterov-from-{k}.safetensors"));
        std::fs::copy(dir.join(format!("checkpoints/step-{k}.safetensors")), &copy).unwrap();
        let mut from = custom.to_vec();
        from.push(("checkpoint", copy.to_str().unwrap()));
        let mut resumed = runner(config(root.path(), &from)).optimizer(nesterov);
        let finished = resumed.train().unwrap();
        assert_eq!(weights(&resumed), weights(&straight), "from step {k}");
        assert_eq!(
            comparable(&finished.results),
            comparable(&trained.results),
            "from step {k}"
        );
    }
    // The description is hashed: another one is another run.
    let other = config(
        root.path(),
        &[
            ("optim.type", "custom"),
            ("optim.custom", "{sgd: {momentum: 0.8, nesterov: true}}"),
        ],
    );
    let id = |config: Config| {
        Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "")
            .unwrap()
            .id
    };
    assert_ne!(id(other), id(config(root.path(), &custom)));

    // The config and the program must agree.
    let missing = runner(config(root.path(), &[("name", "missing"), custom[0], custom[1]]))
        .train()
        .unwrap_err()
        .to_string();
    assert!(missing.contains("Runner::optimizer"), "{missing}");
    let undeclared = runner(config(root.path(), &[("name", "undeclared")]))
        .optimizer(nesterov)
        .train()
        .unwrap_err()
        .to_string();
    assert!(undeclared.contains("optim.type: custom"), "{undeclared}");
    let error =
        Config::<danling::NoSections>::load(None, &[Override::parse("optim.type", "custom").unwrap()])
            .unwrap_err()
            .to_string();
    assert!(error.contains("optim.custom"), "{error}");
}
