//! A full disk loses nothing: when a checkpoint or results write fails, the run stops with exit code 1
//! and one line naming the file and the OS error, the files written before stay as they were, no
//! temporary file is left, and `resume: true` then finishes the run as if nothing had happened.
//!
//! The failure is a file-size limit (`RLIMIT_FSIZE`, set by the shell's `ulimit -f`, with `SIGXFSZ`
//! ignored so that the write fails with EFBIG instead of killing the process), placed between the
//! sizes of two of the files a straight run of the same config writes.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bin, danling, model_tensors, run_dir, scratch, stable, stable_results, stderr, stdout};
use danling::checkpoint::read_checkpoint;
use serde_json::Value;

/// Bytes per unit of the shell's `ulimit -f` (512 in dash and POSIX mode, 1024 in bash).
fn ulimit_unit() -> u64 {
    let output = Command::new("sh")
        .args(["-c", "ulimit -f 1; exec cat /proc/self/limits"])
        .output()
        .expect("sh runs");
    let limits = String::from_utf8(output.stdout).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max file size"))
        .expect("/proc/self/limits has the file size");
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Runs danling in `dir` with files limited to `limit` bytes (a multiple of [`ulimit_unit`]): a write
/// past it fails with EFBIG.
fn danling_limited(dir: &Path, limit: u64, args: &[&str]) -> Output {
    let blocks = limit / ulimit_unit();
    // An ignored signal stays ignored across exec.
    let script = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\"");
    Command::new("sh")
        .args(["-c", &script, bin()])
        .args(args)
        .current_dir(dir)
        .env_remove("DANLING_LOG")
        .output()
        .expect("sh runs")
}

/// The narrowest margin, in bytes, between the limit and the sizes it must separate: a run's files
/// differ from the straight run's by a few bytes (timings and parameter ids are written as text).
const MARGIN: u64 = 64;

/// The limit, a multiple of `unit`, that lets a file of `fits` bytes through and stops one of
/// `fails` bytes, as far from both as the unit allows; with its margin.
fn limit_between(fits: u64, fails: u64, unit: u64) -> Option<(u64, u64)> {
    (fits.div_ceil(unit)..fails.div_ceil(unit))
        .map(|blocks| blocks * unit)
        .map(|limit| (limit, (limit - fits).min(fails - limit)))
        .max_by_key(|&(_, margin)| margin)
}

/// One file the straight run wrote, in the order it wrote them.
#[derive(Debug, Clone)]
struct Written {
    /// `epoch-N` or `step-N` (a checkpoint, written as `latest` first), or `results-N` (the results
    /// files after epoch N).
    name: String,
    bytes: u64,
}

/// Picks the write to fail among those `candidate` accepts: the one whose limit has the widest
/// margin (at least [`MARGIN`]) over every write before it. Returns its position in `writes` and the
/// limit.
fn pick(writes: &[Written], candidate: impl Fn(usize) -> bool) -> Option<(usize, u64)> {
    let unit = ulimit_unit();
    (1..writes.len())
        .filter(|&at| candidate(at))
        .filter_map(|at| {
            let fits = writes[..at].iter().map(|w| w.bytes).max()?;
            let (limit, margin) = limit_between(fits, writes[at].bytes, unit)?;
            Some((at, limit, margin))
        })
        .filter(|&(.., margin)| margin >= MARGIN)
        .max_by_key(|&(.., margin)| margin)
        .map(|(at, limit, _)| (at, limit))
}

/// The highest N of the `epoch-N` checkpoints of a run dir (0 without any).
fn epochs_kept(run: &Path) -> u64 {
    std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("epoch-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// A straight run that never fails: its directory (kept alive by the `TempDir`) and run directory.
fn straight(args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let output = danling(dir.path(), args);
    assert!(output.status.success(), "{}", stderr(&output));
    let run = dir.path().join(stdout(&output).lines().last().unwrap());
    (dir, run)
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn checkpoint(run: &Path, name: &str) -> PathBuf {
    run.join("checkpoints").join(format!("{name}.safetensors"))
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `results.json` as the run rendered it after epoch `epoch`: the final document with the later
/// epochs left out.
fn results_through(run: &Path, epoch: u64) -> Value {
    let mut doc = read_json(&run.join("results.json"));
    doc["results"]
        .as_object_mut()
        .unwrap()
        .retain(|index, _| index.parse::<u64>().unwrap() <= epoch);
    doc
}

/// The size of that document as the run wrote it (pretty JSON and a newline).
fn rendered_size(doc: &Value) -> u64 {
    serde_json::to_string_pretty(doc).unwrap().len() as u64 + 1
}

/// `latest.json` / `best.json` of `index`, as rendered from a `results.json` document, without the
/// wall-clock parts.
fn entry(results: &Value, index: u64) -> Value {
    let mut doc = serde_json::Map::new();
    for key in ["name", "id"] {
        doc.insert(key.to_owned(), results[key].clone());
    }
    doc.insert("index".to_owned(), Value::from(index));
    for (split, metrics) in results["results"][index.to_string()].as_object().unwrap() {
        doc.insert(split.clone(), metrics.clone());
    }
    stable(Value::Object(doc))
}

/// What a run that failed at one write must have left.
struct Expected<'a> {
    /// What the error line names: the file being written.
    names: &'a str,
    /// The straight run's checkpoint that `latest` must hold.
    latest: &'a str,
    /// The epochs the results files must hold.
    results_through: u64,
    /// Whether `best.safetensors` may be ahead of `best.json` (when the checkpoint was written and
    /// the results files were not).
    best_may_lead: bool,
    /// The failing write is an `epoch-N` checkpoint, planned from the straight run's sizes. Those
    /// hold the wall-clock timings of every epoch so far, whose digits vary from run to run, so the
    /// limit may land one epoch off the plan: then the epochs kept whole (every `epoch-N` left) say
    /// which write failed, and `latest` and the results must be of the last of them.
    epoch_follows_sizes: bool,
}

/// Runs `args` under `limit`, checks the failure and what it left against the straight run
/// `reference`, then resumes without the limit and checks that the run ends as the straight one did.
fn fail_then_resume(args: &[&str], limit: u64, reference: &Path, expected: &Expected) {
    let mut dir = scratch();
    let mut limit = limit;
    let started = std::time::Instant::now();
    let mut output = danling_limited(dir.path(), limit, args);
    // A limit planned from sizes that vary (see `epoch_follows_sizes`) may let every write through:
    // then a unit less, in a fresh directory.
    for _ in 0..3 {
        if !(expected.epoch_follows_sizes && output.status.success()) {
            break;
        }
        eprintln!("every write fitted under {limit} bytes: one unit less");
        limit -= ulimit_unit();
        dir = scratch();
        output = danling_limited(dir.path(), limit, args);
    }
    let failed_in = started.elapsed();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("danling: error: cannot "), "{err}");
    assert!(
        err.contains(expected.names),
        "{err} does not name {}",
        expected.names
    );
    assert!(err.contains("File too large"), "{err}");
    assert!(!err.contains(".tmp-"), "{err} names a temporary file");
    let run = run_dir(dir.path()).unwrap();

    for place in [run.clone(), run.join("checkpoints")] {
        let temporary: Vec<String> = std::fs::read_dir(&place)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp-"))
            .collect();
        assert!(
            temporary.is_empty(),
            "left behind in {}: {temporary:?}",
            place.display()
        );
    }

    let (planned_latest, planned_through) = (expected.latest.to_owned(), expected.results_through);
    let (latest_name, results_through_epoch) = if expected.epoch_follows_sizes {
        let kept = epochs_kept(&run);
        assert!(
            kept.abs_diff(planned_through) <= 2,
            "{kept} epochs kept, {planned_through} planned"
        );
        if kept != planned_through {
            eprintln!(
                "the limit landed at epoch {} rather than {}",
                kept + 1,
                planned_through + 1
            );
        }
        (format!("epoch-{kept}"), kept)
    } else {
        (planned_latest, planned_through)
    };
    let expected = &Expected {
        latest: &latest_name,
        results_through: results_through_epoch,
        ..*expected
    };

    // `latest` is the last checkpoint that was written whole.
    let latest = checkpoint(&run, "latest");
    let source = checkpoint(reference, expected.latest);
    assert_eq!(
        model_tensors(&latest),
        model_tensors(&source),
        "latest is {}",
        expected.latest
    );
    // The length of metrics.jsonl differs between two runs: its lines hold the time and the
    // wall-clock values.
    let state = |path: &Path| danling::state::State {
        metrics_log: None,
        ..read_checkpoint(path).unwrap().state
    };
    assert_eq!(state(&latest), state(&source), "latest is {}", expected.latest);
    let epoch = read_checkpoint(&latest).unwrap().state.epoch;
    if let Ok(dir) = std::fs::read_dir(run.join("checkpoints")) {
        for entry in dir {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("epoch-")
                .and_then(|n| n.strip_suffix(".safetensors"))
            {
                assert!(n.parse::<u64>().unwrap() <= epoch, "{name} outlives latest");
            }
        }
    }

    // The results files as they were after epoch `results_through`.
    let through = expected.results_through;
    let results = results_through(reference, through);
    assert_eq!(
        stable(read_json(&run.join("results.json"))),
        stable(results.clone())
    );
    assert_eq!(
        stable(read_json(&run.join("latest.json"))),
        entry(&results, through)
    );
    let best = read_json(&run.join("best.json"));
    let best_index = best["index"].as_u64().unwrap();
    assert!(best_index <= through);
    assert_eq!(stable(best), entry(&results, best_index));
    // And `best` holds the weights that best.json describes (or, when only the results files failed,
    // those of the newer best that the checkpoint recorded).
    let best_epoch = read_checkpoint(&checkpoint(&run, "best")).unwrap().state.epoch;
    if expected.best_may_lead {
        assert!(
            best_epoch == best_index || best_epoch == epoch,
            "best is epoch {best_epoch}"
        );
    } else {
        assert_eq!(best_epoch, best_index);
    }
    assert_eq!(
        model_tensors(&checkpoint(&run, "best")),
        model_tensors(&checkpoint(reference, &format!("epoch-{best_epoch}")))
    );

    // With the space back, the run resumes and ends exactly as the straight run did.
    let resumed = danling(dir.path(), &[args, &["--resume", "true"]].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(dir.path().join(stdout(&resumed).lines().last().unwrap()), run);
    for name in ["latest", "best"] {
        assert_eq!(
            model_tensors(&checkpoint(&run, name)),
            model_tensors(&checkpoint(reference, name)),
            "{name}"
        );
    }
    assert_eq!(stable_results(&run), stable_results(reference));
    eprintln!(
        "latest left at {}, with a {limit}-byte limit, in {:.2} s: {}",
        expected.latest,
        failed_in.as_secs_f64(),
        err.trim_end()
    );
}

/// An MLP whose checkpoints (1.7 MB) are written past the page cache, its last hidden layer `width`
/// wide, trained on a small synthetic set (8 batches an epoch), with every epoch's checkpoint kept
/// (as `epoch-N`, which gives the straight run's sizes), and `extra`.
fn large(width: usize, extra: &[&str]) -> Vec<String> {
    let hidden = format!("[512, {width}]");
    let mut args = vec![
        "train",
        "--data.name",
        "synthetic",
        "--data.n_train",
        "256",
        "--data.n_val",
        "64",
        "--model.hidden",
        &hidden,
        "--save_interval",
        "1",
        "--log",
        "false",
        "--progress",
        "false",
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(str::to_owned).collect()
}

/// The end-of-epoch checkpoint is written in the background while the next epoch trains: when it
/// fails, the error comes at the next save (or at the end of `train`), and `latest`, `best` and the
/// results files are those of the epoch before.
#[test]
fn a_failed_background_checkpoint_keeps_the_epoch_before() {
    let epochs = 8;
    // Each epoch's checkpoint is larger than the one before (it holds the results so far) by about
    // 500 bytes, nearly the shell's unit of 512, so whether a limit fits between two of them depends
    // on where their sizes fall: another width of the last hidden layer moves them (by some 60 bytes
    // a unit) until one fits. The results files are far smaller than any checkpoint.
    let (args, _keep, reference, writes, cases) = (256..272)
        .find_map(|width| {
            let args = large(width, &["--epochs", "8"]);
            let (keep, reference) = straight(&strs(&args));
            let writes: Vec<Written> = (1..=epochs)
                .map(|n| Written {
                    name: format!("epoch-{n}"),
                    bytes: size(&checkpoint(&reference, &format!("epoch-{n}"))),
                })
                .collect();
            // Once failing an epoch followed by another (whose save reports it), once the last
            // (reported at the end of `train`).
            let middle = pick(&writes, |at| at + 1 < writes.len())?;
            let last = pick(&writes, |at| at + 1 == writes.len())?;
            Some((args, keep, reference, writes, [middle, last]))
        })
        .expect("some width lets a limit fall between two checkpoints");
    for (at, limit) in cases {
        fail_then_resume(
            &strs(&args),
            limit,
            &reference,
            &Expected {
                names: "checkpoints/latest.safetensors",
                latest: &writes[at - 1].name,
                results_through: at as u64,
                best_may_lead: false,
                epoch_follows_sizes: true,
            },
        );
    }
}

/// Step checkpoints (`save_steps`) are written on the training thread: when one fails, the run stops
/// there, with `latest` the checkpoint before it and the results files of the last finished epoch.
#[test]
fn a_failed_step_checkpoint_keeps_the_one_before() {
    let args = large(256, &["--epochs", "4", "--save_steps", "3"]);
    let args = strs(&args);
    let (_keep, reference) = straight(&args);
    // 8 steps an epoch: step checkpoints every 3 steps, which grow through the epoch (they hold its
    // metric inputs so far), and the epoch's checkpoint after its last step.
    let mut writes = Vec::new();
    for step in 1..=32u64 {
        let mut add = |name: String| {
            let bytes = size(&checkpoint(&reference, &name));
            writes.push(Written { name, bytes });
        };
        if step % 3 == 0 {
            add(format!("step-{step}"));
        }
        if step % 8 == 0 {
            add(format!("epoch-{}", step / 8));
        }
    }
    let (at, limit) = pick(&writes, |at| {
        writes[at].name.starts_with("step-") && writes[..at].iter().any(|w| w.name.starts_with("epoch-"))
    })
    .expect("a limit falls between two step checkpoints");
    let epochs_before = writes[..at]
        .iter()
        .filter(|w| w.name.starts_with("epoch-"))
        .count();
    fail_then_resume(
        &args,
        limit,
        &reference,
        &Expected {
            names: "checkpoints/latest.safetensors",
            latest: &writes[at - 1].name,
            results_through: epochs_before as u64,
            best_may_lead: false,
            epoch_follows_sizes: false,
        },
    );
}

/// When the results files fail and the epoch's checkpoint does not, `latest` holds the new epoch and
/// the results files the one before: resuming reads the checkpoint, which holds the results, and
/// writes the results files again.
#[test]
fn failed_results_files_keep_the_epoch_before() {
    // A model so small that results.json, which holds every epoch in pretty JSON, outgrows the
    // checkpoint, which holds them compactly.
    let epochs = 40u64;
    let args = [
        "train",
        "--data.name",
        "synthetic",
        "--data.n_train",
        "64",
        "--data.n_val",
        "32",
        "--data.features",
        "2",
        "--model.hidden",
        "[]",
        "--epochs",
        "40",
        "--save_interval",
        "1",
        "--log",
        "false",
        // metrics.jsonl, a line per value, outgrows results.json: the limit could not fall
        // between two results files with it.
        "--metrics_log",
        "false",
        "--progress",
        "false",
    ];
    let (_keep, reference) = straight(&args);
    let final_results = results_through(&reference, epochs);
    assert_eq!(
        rendered_size(&final_results),
        size(&reference.join("results.json")),
        "results.json renders as the test expects"
    );
    let mut writes = Vec::new();
    for n in 1..=epochs {
        let name = format!("epoch-{n}");
        let bytes = size(&checkpoint(&reference, &name));
        writes.push(Written { name, bytes });
        let bytes = rendered_size(&results_through(&reference, n));
        writes.push(Written {
            name: format!("results-{n}"),
            bytes,
        });
    }
    let (at, limit) = pick(&writes, |at| writes[at].name.starts_with("results-"))
        .expect("a limit falls between the results files of two epochs");
    let epoch: u64 = writes[at].name["results-".len()..].parse().unwrap();
    fail_then_resume(
        &args,
        limit,
        &reference,
        &Expected {
            names: "results.json",
            latest: &format!("epoch-{epoch}"),
            results_through: epoch - 1,
            best_may_lead: true,
            epoch_follows_sizes: false,
        },
    );
}
