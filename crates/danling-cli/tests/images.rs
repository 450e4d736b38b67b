//! The built-in task on an image folder from the config alone, its images decoded on the loader's
//! threads: the same run with any number of workers, the validation split from `val/` or from
//! `val_fraction`, the time breakdown in the log and the results, and a damaged image as one line
//! that names the file, exit 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{danling, model_tensors, run_dir, scratch, stable, stderr};
use serde_json::Value;

/// `per_class` 10×12 grey PNGs in each of three class folders under `dir`: a bright bar whose place
/// depends on the class, and noise.
fn write_folder(dir: &Path, per_class: u32, seed: u32) {
    for class in 0..3u32 {
        let folder = dir.join(format!("class-{class}"));
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..per_class {
            let image = image::GrayImage::from_fn(12, 10, |x, y| {
                let noise = (x * 7 + y * 13 + i * 31 + seed) % 40;
                let bar = if x / 4 == class { 180 } else { 20 };
                image::Luma([(bar + noise) as u8])
            });
            image.save(folder.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

fn train(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--data.name",
        "imagefolder",
        "--data.path",
        "images",
        "--data.size",
        "[8, 8]",
        "--data.channels",
        "1",
        "--data.batch_size",
        "8",
        "--epochs",
        "2",
        "--save_steps",
        "3",
    ];
    args.extend_from_slice(extra);
    danling(dir, &args)
}

fn results(run: &Path) -> Value {
    let text = std::fs::read_to_string(run.join("results.json")).unwrap();
    stable(serde_json::from_str(&text).unwrap())
}

#[test]
fn the_builtin_task_trains_on_an_image_folder_the_same_with_any_workers() {
    let dir = scratch();
    write_folder(&dir.path().join("images"), 20, 0);
    let mut runs = Vec::new();
    for workers in ["0", "2"] {
        let out = train(dir.path(), &["--data.workers", workers]);
        assert!(out.status.success(), "{}", stderr(&out));
        let run = run_dir(dir.path()).unwrap();
        let log = std::fs::read_to_string(run.join("run.log")).unwrap();
        assert!(log.contains("(time: data "), "the epoch line's breakdown: {log}");
        assert!(log.contains("training time: data "), "the closing line's: {log}");
        runs.push((
            results(&run),
            model_tensors(&run.join("checkpoints/latest.safetensors")),
        ));
        // The same config (workers is an ignored key): the next run continues in this directory.
        std::fs::remove_dir_all(dir.path().join("experiments")).unwrap();
    }
    assert!(
        runs[0] == runs[1],
        "0 and 2 workers train the same weights and results"
    );

    // The breakdown is a column of `danling runs`, like any result.
    let out = train(dir.path(), &["--data.workers", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = danling(
        dir.path(),
        &["runs", "--columns", "train.data_wait,train.data_wait_share"],
    );
    let table = common::stdout(&out);
    let (header, row) = (table.lines().next().unwrap(), table.lines().nth(1).unwrap());
    assert!(
        header.contains("train.data_wait") && header.contains("train.data_wait_share"),
        "{table}"
    );
    let share: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!((0.0..1.0).contains(&share), "{table}");
    let latest = &runs[0].0["results"]["2"];
    assert!(latest["val"]["accuracy"].as_f64().unwrap() > 0.5, "{latest}");

    // A `val` folder beside `train` is the validation split.
    let split = dir.path().join("split");
    write_folder(&split.join("images/train"), 12, 1);
    write_folder(&split.join("images/val"), 4, 2);
    let out = train(&split, &["--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = run_dir(&split).unwrap();
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(log.contains("epoch 1/1 train:"), "{log}");
    let results = results(&run);
    assert!(results["results"]["1"]["val"]["loss"].is_number(), "{results}");
}

#[test]
fn a_damaged_image_is_one_line_naming_the_file_and_exit_2() {
    let dir = scratch();
    write_folder(&dir.path().join("images"), 6, 0);
    let damaged = dir.path().join("images/class-1/003.png");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 3]).unwrap();
    for workers in ["0", "3"] {
        let out = train(
            dir.path(),
            &["--data.workers", workers, "--data.val_fraction", "0.5"],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{workers} workers: {err}");
        let last = err.lines().last().unwrap();
        assert!(last.starts_with("danling: error: "), "{last}");
        assert!(
            last.contains("class-1/003.png") && last.contains("cannot decode"),
            "{last}"
        );
        assert!(last.contains("item "), "names the item: {last}");
        std::fs::remove_dir_all(dir.path().join("experiments")).unwrap();
    }

    // And the config's own mistakes, before anything is read.
    let out = danling(
        dir.path(),
        &["train", "--data.name", "imagefolder", "--data.path", "images"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("data.size"), "{}", stderr(&out));
    let out = train(dir.path(), &["--data.workers", "100000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("data.workers"), "{}", stderr(&out));
}
