//! The parallel loader changes who fetches the items, never which: a run with a random-crop
//! augmentation is the same, bit for bit, with 0, 1 or 4 workers and any prefetch, and after a resume
//! from the middle of an epoch with workers; the loader's threads end with the run, however it ends;
//! a train split's result says where its time went.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError, InMemDataset};
use burn::tensor::Device;
use common::{Classify, Net, config, serial};
use danling::data::ItemContext;
use danling::log::Console;
use danling::metrics::MetricKind;
use danling::runner::{Runner, StepOutput, Task};
use danling::{Config, Identity, RunnerError};
use serde_json::Value;

/// Eight values and a class; the model sees four of them.
type Wide = ([f32; 8], i64);

/// The classifier of `common` on a random crop of four of each row's eight values (and a random
/// sign flip and noise), drawn from the item's own RNG on a train split; the centre crop on others,
/// and everywhere without `augment`.
#[derive(Clone, Copy)]
struct Cropped {
    augment: bool,
}

const AUGMENT: Cropped = Cropped { augment: true };

impl Task for Cropped {
    type Model = Net;
    type Item = Wide;
    type Batch = <Classify as Task>::Batch;

    fn transform(&self, (mut x, y): Wide, at: &ItemContext) -> Wide {
        let start = if at.train && self.augment {
            let mut rng = at.rng();
            let start = rng.below(5) as usize;
            if rng.uniform() < 0.5 {
                x.iter_mut().for_each(|v| *v = -*v);
            }
            x.iter_mut().for_each(|v| *v += 0.05 * rng.normal() as f32);
            start
        } else {
            2
        };
        let mut out = [0.0; 8];
        out[..4].copy_from_slice(&x[start..start + 4]);
        (out, y)
    }

    fn collate(&self, items: Vec<Wide>, device: &Device) -> Self::Batch {
        let items = items
            .into_iter()
            .map(|(x, y)| ([x[0], x[1], x[2], x[3]], y))
            .collect();
        Classify.collate(items, device)
    }

    fn forward(&self, model: &Net, batch: &Self::Batch) -> StepOutput {
        Classify.forward(model, batch)
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(3)
    }
}

fn wide(n: usize, offset: usize) -> Vec<Wide> {
    common::data(n, offset)
        .into_iter()
        .map(|(x, y)| ([x[0], x[1], x[2], x[3], x[0], x[1], x[2], x[3]], y))
        .collect()
}

fn cropped(config: Config, task: Cropped) -> Runner<Cropped> {
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    Runner::with_identity(config, identity, task, Net::new(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(wide(37, 0)))
        .eval_split("val", InMemDataset::new(wide(12, 100)))
}

fn settings(root: &Path, workers: &str, prefetch: &str, extra: &[(&str, &str)]) -> Config {
    let mut pairs = vec![
        ("data.batch_size", "5"),
        ("data.workers", workers),
        ("data.prefetch", prefetch),
        ("save_steps", "2"),
        ("log_interval", "3"),
    ];
    pairs.extend_from_slice(extra);
    config(root, &pairs)
}

/// The results files without their wall-clock values, and the final weights.
fn outcome(runner: &Runner<Cropped>, dir: &Path) -> (Vec<Vec<f32>>, Value) {
    let model = runner.model();
    let weights = [model.hidden.weight.val(), model.output.weight.val()]
        .into_iter()
        .map(|t| t.into_data().try_to_vec::<f32>().unwrap())
        .collect();
    let mut results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    for record in results["results"].as_object_mut().unwrap().values_mut() {
        for split in record.as_object_mut().unwrap().values_mut() {
            split
                .as_object_mut()
                .unwrap()
                .retain(|name, _| !danling::results::is_wall_clock(name));
        }
    }
    (weights, results["results"].take())
}

/// The names of this process's loader threads that are alive (Linux; none elsewhere).
fn loader_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("danling-data"))
        .collect()
}

#[test]
fn an_augmented_run_is_the_same_with_any_workers_and_after_a_resume_with_workers() {
    let _serial = serial();
    let train = |workers: &str, prefetch: &str| {
        let root = tempfile::tempdir().unwrap();
        let mut runner = cropped(settings(root.path(), workers, prefetch, &[]), AUGMENT);
        let dir = runner.train().unwrap().dir.unwrap();
        assert!(
            loader_threads().is_empty(),
            "threads left: {:?}",
            loader_threads()
        );
        (root, dir.clone(), outcome(&runner, &dir))
    };
    let (_root, dir, expected) = train("0", "1");
    for (workers, prefetch) in [("1", "1"), ("1", "3"), ("4", "2"), ("4", "16")] {
        let (_, _, got) = train(workers, prefetch);
        assert!(got == expected, "{workers} workers, prefetch {prefetch}");
    }

    // The augmentation is at work: without it the run is another.
    let root = tempfile::tempdir().unwrap();
    let mut plain = cropped(settings(root.path(), "0", "1", &[]), Cropped { augment: false });
    let plain_dir = plain.train().unwrap().dir.unwrap();
    assert!(
        outcome(&plain, &plain_dir) != expected,
        "the augmentation changes the run"
    );

    // Every step checkpoint (most inside an epoch), resumed with 4 workers, ends as the straight run.
    let mut checkpoints: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("step-"))
        .collect();
    checkpoints.sort();
    assert!(checkpoints.len() >= 3, "{checkpoints:?}");
    for checkpoint in &checkpoints {
        let fresh = tempfile::tempdir().unwrap();
        let from = checkpoint.to_str().unwrap();
        let mut resumed = cropped(settings(fresh.path(), "4", "3", &[("checkpoint", from)]), AUGMENT);
        let resumed_dir = resumed.train().unwrap().dir.unwrap();
        assert!(
            outcome(&resumed, &resumed_dir) == expected,
            "resumed from {checkpoint:?} with 4 workers"
        );
    }
}

#[test]
fn the_crop_is_drawn_per_item_and_epoch() {
    let at = ItemContext {
        seed: 1016,
        epoch: 0,
        split: 0,
        train: true,
        index: 3,
    };
    let row = wide(4, 0)[3];
    let crops: Vec<Wide> = (0..6)
        .map(|epoch| AUGMENT.transform(row, &ItemContext { epoch, ..at }))
        .collect();
    assert!(
        crops.iter().any(|c| c != &crops[0]),
        "the crop changes between epochs"
    );
    assert_eq!(
        AUGMENT.transform(row, &at),
        crops[0],
        "and is the same for the same epoch"
    );
    let eval = AUGMENT.transform(row, &ItemContext { train: false, ..at });
    assert_eq!(eval.0[..4], row.0[2..6], "the centre crop on evaluation");
}

/// Items that fail from index `from` on.
struct Failing {
    rows: InMemDataset<Wide>,
    from: usize,
}

impl Dataset<Wide> for Failing {
    fn get(&self, index: usize) -> Result<Wide, DatasetError> {
        if index >= self.from {
            let error = std::io::Error::other(format!("shard-{index}.bin is damaged"));
            return Err(DatasetError::new(error));
        }
        self.rows.get(index)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[test]
fn a_failing_item_ends_the_run_with_its_name_and_no_thread_left() {
    let _serial = serial();
    for workers in ["0", "3"] {
        let root = tempfile::tempdir().unwrap();
        let config = settings(root.path(), workers, "4", &[("data.shuffle", "false")]);
        let identity = Identity::with_experiment_id(&config, "x", "").unwrap();
        let mut runner = Runner::with_identity(config, identity, AUGMENT, Net::new(&Device::flex()))
            .unwrap()
            .console(Console::Off)
            .train_split(
                "train",
                Failing {
                    rows: InMemDataset::new(wide(37, 0)),
                    from: 23,
                },
            );
        let error = runner.train().unwrap_err();
        match &error {
            RunnerError::Data {
                split,
                index,
                message,
            } => {
                assert_eq!((split.as_str(), *index), ("train", 23), "{error}");
                assert!(message.contains("shard-23.bin is damaged"), "{error}");
            }
            other => panic!("{workers} workers: {other}"),
        }
        assert!(
            loader_threads().is_empty(),
            "threads left: {:?}",
            loader_threads()
        );
        // The steps before the bad item were checkpointed; nothing is lost.
        let dir = runner.identity().dir.clone();
        assert!(dir.join("checkpoints/step-2.safetensors").is_file());
    }
}

#[test]
fn a_train_split_says_where_its_time_went() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut runner = cropped(
        settings(root.path(), "2", "4", &[("tensorboard", "true")]),
        AUGMENT,
    );
    let trained = runner.train().unwrap();
    // TensorBoard has every part of the breakdown, beside the metrics.
    let board = trained.dir.as_ref().unwrap().join("tensorboard");
    let file = std::fs::read_dir(&board).unwrap().next().unwrap().unwrap().path();
    let tags: Vec<String> = danling::log::tensorboard::read_events(&file)
        .unwrap()
        .into_iter()
        .flat_map(|event| event.scalars.into_iter().map(|(tag, _)| tag))
        .collect();
    for tag in [
        "train/data_wait",
        "train/forward_backward_share",
        "train/peak_rss_mib",
    ] {
        assert!(
            tags.iter().any(|t| t == tag) || !cfg!(target_os = "linux"),
            "{tag} in {tags:?}"
        );
    }
    let (_, record) = trained.results.latest().unwrap();
    let train = &record["train"];
    let parts = danling::results::TIME_PARTS;
    let wall = train["wall"];
    let sum: f64 = parts.iter().map(|p| train[*p]).sum();
    assert!(
        wall > 0.0 && (sum - wall).abs() < 1e-6 * wall.max(1.0),
        "{train:?}"
    );
    let shares: f64 = parts.iter().map(|p| train[&format!("{p}_share")]).sum();
    assert!((shares - 1.0).abs() < 1e-6, "{train:?}");
    assert!(
        train["forward_backward"] > 0.0 && train["optimizer"] > 0.0,
        "{train:?}"
    );
    assert!(
        train["checkpoint"] > 0.0,
        "save_steps 2 wrote step checkpoints: {train:?}"
    );
    assert_eq!(train["all_reduce"], 0.0, "one process has nothing to reduce");
    if cfg!(target_os = "linux") {
        assert!(train["peak_rss_mib"] > 1.0, "{train:?}");
    }
    assert!(!train.contains_key("tokens_per_s"), "the task counts no tokens");
    assert!(
        !record["val"].contains_key("data_wait"),
        "evaluation has no breakdown"
    );
}

/// Items that take `delay` each to fetch, as a slow disk would.
struct Slow {
    rows: InMemDataset<Wide>,
    delay: std::time::Duration,
}

impl Dataset<Wide> for Slow {
    fn get(&self, index: usize) -> Result<Wide, DatasetError> {
        std::thread::sleep(self.delay);
        self.rows.get(index)
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[test]
fn a_data_bound_run_is_told_to_add_workers() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let config = settings(root.path(), "0", "1", &[("epochs", "1")]);
    let identity = Identity::with_experiment_id(&config, "x", "").unwrap();
    let slow = Slow {
        rows: InMemDataset::new(wide(37, 0)),
        delay: std::time::Duration::from_millis(40),
    };
    let mut runner = Runner::with_identity(config, identity, AUGMENT, Net::new(&Device::flex()))
        .unwrap()
        .console(Console::Off)
        .train_split("train", slow);
    let trained = runner.train().unwrap();
    let (_, record) = trained.results.latest().unwrap();
    assert!(record["train"]["data_wait_share"] > 0.9, "{:?}", record["train"]);
    let log = std::fs::read_to_string(trained.dir.unwrap().join("run.log")).unwrap();
    assert!(
        log.contains("waiting for data took") && log.contains("data.workers 0"),
        "{log}"
    );
}

#[test]
fn early_stopping_ends_the_loader_threads_too() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let pairs = [("epochs", "30"), ("patience", "1"), ("score_name", "loss")];
    let mut runner = cropped(settings(root.path(), "3", "2", &pairs), AUGMENT);
    let trained = runner.train().unwrap();
    assert!(trained.stopped_early, "epoch {}", trained.state.epoch);
    assert!(
        loader_threads().is_empty(),
        "threads left: {:?}",
        loader_threads()
    );
}
