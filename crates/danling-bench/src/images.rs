//! (i) Data-bound training: burn's MNIST CNN (the `mnist` example, small widths) on an image folder
//! of 20,000 PNG digits that this case writes, with 0, 1 and 2 loader threads, against PyTorch's
//! `DataLoader` over torchvision's `ImageFolder` with `num_workers` 0, 1 and 2 on the same files
//! (`bench/imagefolder_torch.py`: the same model, optimizer, batch and epoch).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;
use serde_json::Value;

use crate::report::{Report, Verdict};
use crate::{Options, root};

/// Images per digit in the train and the val folder: 20,000 files in all.
const TRAIN_PER_CLASS: usize = 1800;
const VAL_PER_CLASS: usize = 200;
/// The model's widths and the loop's settings, the same on both sides.
const CHANNELS: [usize; 2] = [8, 16];
const HIDDEN: usize = 64;
const BATCH: usize = 64;
const WORKERS: [usize; 3] = [0, 1, 2];

/// Writes `dir/{train,val}/{0..9}/NNNNN.png`: the UCI digits (8×8, danling's vendored set) scaled
/// to 24×24 in a 28×28 frame, each copy shifted and with its own noise, so that no two files are
/// alike and each decodes as MNIST's would.
fn write_folder(dir: &Path) -> anyhow::Result<()> {
    let digits = danling::data::digits()?;
    let danling::data::Targets::Classes { labels, .. } = &digits.targets else {
        bail!("the digits have classes");
    };
    let mut rng = danling::rng::Rng::from_parts(&[2025, 7]);
    let by_class: Vec<Vec<usize>> = (0..10)
        .map(|c| (0..digits.n).filter(|&i| labels[i] == c).collect())
        .collect();
    for (split, per_class) in [("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)] {
        for (class, rows) in by_class.iter().enumerate() {
            let folder = dir.join(split).join(class.to_string());
            std::fs::create_dir_all(&folder)?;
            for n in 0..per_class {
                let row = digits.row(rows[n % rows.len()]);
                let (dx, dy) = (rng.below(5) as u32, rng.below(5) as u32);
                let image = image::GrayImage::from_fn(28, 28, |x, y| {
                    let (sx, sy) = (x.wrapping_sub(dx) / 3, y.wrapping_sub(dy) / 3);
                    let ink = if sx < 8 && sy < 8 {
                        row[(sy * 8 + sx) as usize] * 15.0
                    } else {
                        0.0
                    };
                    let noise = rng.below(24) as f32;
                    image::Luma([(ink + noise).clamp(0.0, 255.0) as u8])
                });
                image.save(folder.join(format!("{n:05}.png")))?;
            }
        }
    }
    Ok(())
}

/// The `mnist` example binary built beside this one.
fn mnist() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("mnist");
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p danling-example-mnist` (bench/run does)",
            path.display()
        );
    }
    Ok(path)
}

/// One epoch of `mnist train` on the folder with `workers` loader threads: its train split's
/// result (samples/s and the time breakdown).
fn danling_run(folder: &Path, workers: usize) -> anyhow::Result<Value> {
    let project = tempfile::tempdir()?;
    let channels = format!("[{}, {}]", CHANNELS[0], CHANNELS[1]);
    let out = Command::new(mnist()?)
        .args(["train", "--data.format", "imagefolder", "--data.path"])
        .arg(folder)
        .args([
            "--epochs",
            "1",
            "--optim.type",
            "adamw",
            "--optim.lr",
            "0.001",
            "--optim.weight_decay",
            "0",
        ])
        .args([
            "--model.channels",
            &channels,
            "--model.hidden",
            &HIDDEN.to_string(),
        ])
        .args(["--data.batch_size", &BATCH.to_string()])
        .args([
            "--data.workers",
            &workers.to_string(),
            "--progress",
            "false",
            "--project_root",
        ])
        .arg(project.path())
        .output()?;
    if !out.status.success() {
        bail!("mnist train failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let run = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&run).join("latest.json"))?)?;
    Ok(results["train"].clone())
}

/// One epoch of the PyTorch script with `workers` DataLoader workers: its JSON line.
fn torch_run(python: &str, folder: &Path, workers: usize) -> anyhow::Result<Value> {
    let out = Command::new(python)
        .arg("bench/imagefolder_torch.py")
        .arg(folder)
        .args(["--workers", &workers.to_string(), "--threads", "2"])
        .args(["--channels", &CHANNELS[0].to_string(), &CHANNELS[1].to_string()])
        .args(["--hidden", &HIDDEN.to_string(), "--batch", &BATCH.to_string()])
        .current_dir(root())
        .output()?;
    crate::e2e::json_line(&out, "bench/imagefolder_torch.py")
}

/// Whether `python` can import torch and torchvision.
fn has_torchvision(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import torch, torchvision"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Case (i), one run of each side at each worker count.
pub fn data_bound(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    eprintln!("(i) writing 20,000 PNG digits");
    write_folder(dir.path())?;
    let torch = has_torchvision(&options.python);
    for workers in WORKERS {
        eprintln!("(i) {workers} workers");
        let ours = danling_run(dir.path(), workers)?;
        let rate = ours["samples_per_s"].as_f64().unwrap_or(f64::NAN);
        let wait = ours["data_wait_share"].as_f64().unwrap_or(f64::NAN);
        let theirs = if torch {
            Some(torch_run(&options.python, dir.path(), workers)?)
        } else {
            None
        };
        let case = format!("(i) data-bound CNN on 20,000 PNGs, {workers} workers: train samples/s");
        match &theirs {
            Some(theirs) => {
                let their_rate = theirs["train_samples_per_s"].as_f64().unwrap_or(f64::NAN);
                let their_wait = theirs["data_wait_share"].as_f64().unwrap_or(f64::NAN);
                report.row(
                    &case,
                    format!("{rate:.0} (data wait {:.1}%)", 100.0 * wait),
                    format!(
                        "PyTorch DataLoader {their_rate:.0} (data wait {:.1}%)",
                        100.0 * their_wait
                    ),
                    format!("{:.2}×", rate / their_rate),
                    if workers == 2 {
                        "≥ 1×, data wait < 5%"
                    } else {
                        "≥ 1×"
                    },
                    Verdict::from(rate >= their_rate && (workers < 2 || wait < 0.05)),
                );
                report.detail(format!(
                    "(i) {workers} workers: danling train split {ours}; PyTorch {theirs}"
                ));
            }
            None => {
                report.row(
                    &case,
                    format!("{rate:.0} (data wait {:.1}%)", 100.0 * wait),
                    format!(
                        "not run: `{}` cannot import torch and torchvision",
                        options.python
                    ),
                    "–".into(),
                    "≥ 1×",
                    Verdict::NotRun,
                );
                report.detail(format!("(i) {workers} workers: danling train split {ours}"));
            }
        }
    }
    Ok(())
}
