//! The `mnist` app driven as a user drives it, on MNIST-shaped IDX files made from the bundled UCI
//! digits (1000 train, 797 test images): it trains to a stated test accuracy, evaluates and infers
//! from a checkpoint, resumes bit-exactly from a mid-epoch checkpoint (BatchNorm's running
//! statistics included), runs a 2-trial sweep, and shows its runs in `runs` and `report`; preempted
//! by SIGUSR1 and run again with the same command line, it ends as a run that never stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../common/app.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    evaluates_as_recorded, inferred, json, knows_key, listed, model_tensors, resumes_exactly, run, run_dirs,
    stable_results, text, train,
};
use danling::workspace::metrics_log::{Point, read_points};
use danling_example_mnist::data::{Split, digits_as_mnist, write_idx};

const BIN: &str = env!("CARGO_BIN_EXE_mnist");
const TRAIN: usize = 1000;

/// Writes the four IDX files of the train and test splits under `dir/mnist`.
fn idx_files(dir: &Path) -> PathBuf {
    let data = dir.join("mnist");
    std::fs::create_dir(&data).unwrap();
    let (images, labels) = digits_as_mnist().unwrap();
    write_idx(&data, &images[..TRAIN], &labels[..TRAIN], Split::Train.prefix()).unwrap();
    write_idx(&data, &images[TRAIN..], &labels[TRAIN..], Split::Test.prefix()).unwrap();
    data
}

#[test]
fn mnist_trains_evaluates_infers_resumes_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = idx_files(dir);
    // 32 batches an epoch: the step-20 checkpoint is in the middle of the first.
    let model = "--model.channels [16,32] --model.hidden 64 --optim.lr 0.002 --score_name accuracy \
                 --progress false";
    let with = |more: &str| -> Vec<String> {
        let words = format!("--data.path {} {model} {more}", data.display());
        words.split_whitespace().map(str::to_owned).collect()
    };
    let args = with("--epochs 3 --save_steps 20");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = train(BIN, dir, &args);
    let best = json(&trained.join("best.json"));
    let accuracy = best["test"]["accuracy"].as_f64().unwrap();
    println!("test accuracy {accuracy:.3}");
    assert!(accuracy >= 0.85, "test accuracy {accuracy}");

    // Evaluate the best checkpoint: the numbers the run recorded for it.
    evaluates_as_recorded(BIN, dir, &trained, "test", &["loss", "accuracy", "f1"]);

    // Infer: one row per test image, ten probabilities that sum to one, argmax mostly the target.
    let rows = inferred(BIN, dir, &trained, "test");
    assert_eq!(rows.len(), 1797 - TRAIN);
    let mut right = 0;
    for row in &rows {
        assert_eq!(row.len(), 12, "index, target, prob_0..prob_9");
        assert!((row[2..].iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let argmax = (0..10)
            .max_by(|&a, &b| row[2 + a].total_cmp(&row[2 + b]))
            .unwrap();
        right += usize::from(argmax as f64 == row[1]);
    }
    assert!(
        right as f64 / rows.len() as f64 >= 0.85,
        "{right} of {} right",
        rows.len()
    );

    resumes_exactly(BIN, dir, &args, &trained, 20);

    // A search of the CNN's learning rate, three trials, ASHA at epochs 1 and 2: the best of the
    // three goes on to the second epoch, the others end pruned.
    let sweep_root = dir.join("sweep");
    let sweep = with(&format!(
        "optim.lr=loguniform(5e-4,5e-3) --trials 3 --prune asha --reduction 3 --project_root {} --epochs 2",
        sweep_root.display()
    ));
    let sweep: Vec<&str> = sweep.iter().map(String::as_str).collect();
    run(BIN, dir, &[&["sweep"], &sweep[..]].concat(), 0);
    let names = run_dirs(&sweep_root);
    assert_eq!(names.len(), 3, "{names:?}");
    let record = std::fs::read_dir(&sweep_root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with(".sweep.json"))
        .expect("the sweep's record");
    let record = json(&record);
    let states: Vec<&str> = record["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "finished").count(),
        1,
        "{record:#}"
    );
    assert_eq!(states.iter().filter(|s| **s == "pruned").count(), 2, "{record:#}");
    listed(BIN, dir, &sweep_root, &names);
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.contains("<h2>Sweeps</h2>") && report.contains("by rung"));
    knows_key(BIN, dir, "model.channels");
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let out = run(BIN, dir, &["train"], 2);
    let message = text(&out.stderr);
    assert!(
        message.starts_with("mnist: error:") && message.contains("data.path"),
        "{message}"
    );
    // A truncated images file is named, and nothing is trained.
    let data = idx_files(dir);
    let images = data.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(BIN, dir, &["train", "--data.path", data.to_str().unwrap()], 2);
    let message = text(&out.stderr);
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!dir.join("experiments").exists(), "a run directory was made");
}

/// Writes `dir/digits/{train,test}/<digit>/N.png` from the bundled digits: `TRAIN_IMAGES` train and
/// `TEST_IMAGES` test images.
fn image_folders(dir: &Path) -> PathBuf {
    const TRAIN_IMAGES: usize = 400;
    const TEST_IMAGES: usize = 100;
    let root = dir.join("digits");
    let (images, labels) = digits_as_mnist().unwrap();
    for (i, (pixels, label)) in images
        .iter()
        .zip(&labels)
        .take(TRAIN_IMAGES + TEST_IMAGES)
        .enumerate()
    {
        let split = if i < TRAIN_IMAGES { "train" } else { "test" };
        let folder = root.join(split).join(label.to_string());
        std::fs::create_dir_all(&folder).unwrap();
        let image = image::GrayImage::from_raw(28, 28, pixels.to_vec()).unwrap();
        image.save(folder.join(format!("{i:04}.png"))).unwrap();
    }
    root
}

#[test]
fn an_image_folder_with_shifts_trains_the_same_with_any_workers_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = image_folders(dir);
    // 13 batches an epoch: the step-5 checkpoint is in the middle of the first; BatchNorm's running
    // statistics and the random shifts must both come back exactly.
    let args = |workers: &str, root: &str| -> Vec<String> {
        format!(
            "--data.path {} --data.format imagefolder --data.shift 2 --data.batch_size 32 \
             --model.channels [4,8] --model.hidden 16 --epochs 2 --save_steps 5 --progress false \
             --data.workers {workers} --project_root {root}",
            data.display()
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    };
    let on_thread = args("0", "on-thread");
    let on_thread: Vec<&str> = on_thread.iter().map(String::as_str).collect();
    let threaded = args("3", "threaded");
    let threaded: Vec<&str> = threaded.iter().map(String::as_str).collect();
    let a = train(BIN, dir, &on_thread);
    let b = train(BIN, dir, &threaded);
    assert_eq!(a.file_name(), b.file_name(), "data.workers is an ignored key");
    assert_eq!(stable_results(&a), stable_results(&b));
    let latest = "checkpoints/latest.safetensors";
    assert!(model_tensors(&a.join(latest)) == model_tensors(&b.join(latest)));
    assert!(json(&a.join("latest.json"))["train"]["data_wait"].is_number());

    // Resumed from the middle of the first epoch with 3 workers: the run that never stopped.
    resumes_exactly(BIN, dir, &threaded, &a, 5);

    // A class folder that is not a digit is refused before training, naming it.
    std::fs::create_dir_all(data.join("train/ten")).unwrap();
    let out = run(BIN, dir, &[&["train"], &on_thread[..]].concat(), 2);
    let message = text(&out.stderr);
    assert!(message.contains("ten") && message.contains("0 to 9"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// `metrics.jsonl`'s points without their times, wall-clock values left out.
fn points(run: &Path) -> Vec<Point> {
    let (points, _) = read_points(&run.join("metrics.jsonl"), 0).unwrap();
    let stable = points
        .into_iter()
        .filter(|p| !danling::results::is_wall_clock(&p.name));
    stable.map(|p| Point { time: 0.0, ..p }).collect()
}

#[test]
fn a_preempted_run_run_again_with_the_same_command_line_ends_as_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = idx_files(dir);
    // 32 batches an epoch, a checkpoint every 7 steps: the signal lands between two of them.
    let args = |root: &str| -> Vec<String> {
        format!(
            "--data.path {} --model.channels [4,8] --model.hidden 16 --epochs 2 --save_steps 7 \
             --log_interval 1 --resume auto --progress false --project_root {root}",
            data.display()
        )
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    };
    let straight = args("straight");
    let straight: Vec<&str> = straight.iter().map(String::as_str).collect();
    let reference = train(BIN, dir, &straight);
    let total = points(&reference).len();

    let preempted = args("preempted");
    let preempted: Vec<&str> = preempted.iter().map(String::as_str).collect();
    let root = dir.join("preempted");
    let mut child = Command::new(BIN)
        .arg("train")
        .args(&preempted)
        .current_dir(dir)
        .env_remove("SLURM_JOB_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let logged = || {
        std::fs::read_dir(&root)
            .ok()
            .and_then(|mut entries| entries.find_map(|e| e.ok().filter(|e| e.path().is_dir())))
            .and_then(|run| std::fs::read_to_string(run.path().join("metrics.jsonl")).ok())
            .map_or(0, |text| text.lines().count())
    };
    let started = Instant::now();
    while logged() < total / 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was preempted"
        );
        assert!(started.elapsed() < Duration::from_secs(300), "nothing logged");
        std::thread::sleep(Duration::from_millis(2));
    }
    Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(75), "a preempted run exits 75");
    let names = run_dirs(&root);
    assert_eq!(names.len(), 1, "{names:?}");
    let run = root.join(&names[0]);
    assert_eq!(json(&run.join("status.json"))["status"], "preempted");
    assert!(points(&run).len() < total, "preempted before the end");

    // The same command line resumes it in place and finishes it.
    let finished = train(BIN, dir, &preempted);
    assert_eq!(finished.file_name(), run.file_name());
    assert_eq!(json(&run.join("status.json"))["status"], "finished");
    let latest = "checkpoints/latest.safetensors";
    assert!(
        model_tensors(&run.join(latest)) == model_tensors(&reference.join(latest)),
        "weights and BatchNorm statistics as the straight run's"
    );
    assert_eq!(stable_results(&run), stable_results(&reference));
    assert_eq!(points(&run), points(&reference));
}
