//! The `chargpt` app driven as a user drives it: it trains on the bundled sonnets to well below the
//! unigram perplexity, evaluates and infers from a checkpoint, resumes bit-exactly from a mid-epoch
//! checkpoint, runs a 2-trial sweep, and shows its runs in `runs` and `report`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../common/app.rs"]
mod common;

use std::path::Path;

use common::{
    evaluates_as_recorded, inferred, json, knows_key, listed, resumes_exactly, run, run_dirs, text, train,
};
use danling_example_chargpt::data::Corpus;

const BIN: &str = env!("CARGO_BIN_EXE_chargpt");

fn sonnets() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/sonnets.txt")
        .to_string_lossy()
        .into_owned()
}

/// The perplexity of the validation text under the train text's character frequencies (add-one).
fn unigram_perplexity(corpus: &Corpus) -> f64 {
    let mut counts = vec![1.0; corpus.vocab.len()];
    corpus.train.iter().for_each(|&id| counts[id as usize] += 1.0);
    let total: f64 = counts.iter().sum();
    let nll: f64 = corpus.val[1..]
        .iter()
        .map(|&id| -(counts[id as usize] / total).ln())
        .sum();
    (nll / (corpus.val.len() - 1) as f64).exp()
}

#[test]
fn chargpt_trains_evaluates_infers_resumes_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, data) = (dir.path(), sonnets());
    // A tiny model; an epoch is 533 steps, so every step checkpoint is mid-epoch.
    let model = "--model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32 \
                 --optim.lr 0.005 --log_interval 30 --progress false";
    let with = |more: &str| -> Vec<String> {
        let words = format!("--data.path {data} {model} {more}");
        words.split_whitespace().map(str::to_owned).collect()
    };
    let args = with("--steps 100 --save_steps 50");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = train(BIN, dir, &args);

    // Quality: well below the unigram perplexity; the loss is the log of the perplexity.
    let corpus = Corpus::read(Path::new(&data), 0.1).unwrap();
    let baseline = unigram_perplexity(&corpus);
    let latest = json(&trained.join("latest.json"));
    let (perplexity, loss) = (
        latest["val"]["perplexity"].as_f64().unwrap(),
        latest["val"]["loss"].as_f64().unwrap(),
    );
    println!("val perplexity {perplexity:.2} against the unigram's {baseline:.2}");
    assert!(perplexity < 0.7 * baseline, "{perplexity} against {baseline}");
    assert!(
        (loss.exp() - perplexity).abs() < 1e-3 * perplexity,
        "{loss} vs {perplexity}"
    );

    // Evaluate the best checkpoint: the numbers the run recorded for it.
    evaluates_as_recorded(BIN, dir, &trained, "val", &["loss", "perplexity", "accuracy"]);

    // Infer: one row per position of the validation windows, with a distribution over characters.
    let rows = inferred(BIN, dir, &trained, "val");
    let windows = (corpus.val.len() - 1) / 32;
    assert_eq!(rows.len(), windows * 32);
    for row in rows.iter().step_by(97) {
        assert_eq!(row.len(), 2 + corpus.vocab.len(), "index, target, prob_*");
        assert!((row[2..].iter().sum::<f64>() - 1.0).abs() < 1e-4, "{row:?}");
    }

    // Resumed from step 50, in the middle of the first epoch.
    resumes_exactly(BIN, dir, &args, &trained, 50);

    // A sweep of two trials, then the listing and the report.
    let sweep_root = dir.join("sweep");
    let mut sweep = vec![
        "sweep",
        "optim.lr=0.005,0.002",
        "--project_root",
        sweep_root.to_str().unwrap(),
    ];
    sweep.extend(
        args.iter()
            .copied()
            .filter(|a| *a != "--save_steps" && *a != "50"),
    );
    sweep.extend(["--steps", "20"]);
    run(BIN, dir, &sweep, 0);
    let names = run_dirs(&sweep_root);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.contains("lr=0.005")) && names.iter().any(|n| n.contains("lr=0.002")));
    listed(BIN, dir, &sweep_root, &names);
    knows_key(BIN, dir, "model.n_embd");
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let out = run(BIN, dir, &["train", "--steps", "1"], 2);
    let message = text(&out.stderr);
    assert!(
        message.starts_with("chargpt: error:") && message.contains("data.path"),
        "{message}"
    );
    std::fs::write(dir.join("bad.txt"), b"caf\xe9").unwrap();
    let out = run(BIN, dir, &["train", "--data.path", "bad.txt"], 2);
    let message = text(&out.stderr);
    assert!(
        message.contains("bad.txt") && message.contains("UTF-8"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[test]
fn token_files_on_disk_train_as_the_text_does_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tokens = dir.join("tokens");
    let out = run(
        env!("CARGO_BIN_EXE_chargpt-tokens"),
        dir,
        &[&sonnets(), tokens.to_str().unwrap()],
        0,
    );
    assert!(text(&out.stdout).contains("train and"), "{}", text(&out.stdout));
    let model = "--model.n_layer 1 --model.n_head 2 --model.n_embd 16 --model.block_size 16 --steps 30 \
                 --progress false";
    let args = |path: &str, workers: &str, root: &str| -> Vec<String> {
        format!("--data.path {path} {model} --data.workers {workers} --project_root {root}")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let from_text = args(&sonnets(), "0", "text-runs");
    let from_text: Vec<&str> = from_text.iter().map(String::as_str).collect();
    let from_files = args(tokens.to_str().unwrap(), "2", "file-runs");
    let from_files: Vec<&str> = from_files.iter().map(String::as_str).collect();
    let a = train(BIN, dir, &from_text);
    let b = train(BIN, dir, &from_files);
    // The same windows, read from the text in memory or from the token files window by window.
    let results = |run: &Path| common::stable_results(run)["results.json"]["results"].clone();
    assert_eq!(results(&a), results(&b));
    let latest = json(&b.join("latest.json"));
    let rate = latest["train"]["tokens_per_s"].as_f64().unwrap();
    assert!(rate > 0.0, "{latest}");

    // A val.bin cut off inside a token, and an id past the vocabulary: one line naming the file.
    let val = tokens.join("val.bin");
    let mut bytes = std::fs::read(&val).unwrap();
    bytes.pop();
    std::fs::write(&val, &bytes).unwrap();
    let again = args(tokens.to_str().unwrap(), "2", "bad-runs");
    let again: Vec<&str> = std::iter::once("train")
        .chain(again.iter().map(String::as_str))
        .collect();
    let out = run(BIN, dir, &again, 2);
    let message = text(&out.stderr);
    assert!(
        message.contains("val.bin") && message.contains("truncated"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    bytes.pop();
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    std::fs::write(&val, &bytes).unwrap();
    let out = run(BIN, dir, &again, 2);
    let message = text(&out.stderr);
    assert!(
        message.contains("val.bin") && message.contains("token 65535"),
        "{message}"
    );
}
