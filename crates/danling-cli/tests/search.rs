//! Search sweeps through the `danling` binary: draws that the seed decides, ASHA's pauses and
//! promotions resuming exactly, a stopped search going on where it stopped, and bad input refused
//! before any trial starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{model_tensors, scratch, stable_results, stderr};
use serde_json::Value;

const CONFIG: &str = "epochs: 4
data: {name: synthetic, n_train: 200, n_val: 100, features: 8, classes: 3, batch_size: 50}
model: {type: mlp, hidden: [16]}
progress: false
";

fn danling(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(args)
        .current_dir(dir)
        .env("COLUMNS", "250")
        .env_remove("DANLING_LOG")
        .output()
        .unwrap()
}

fn project(config: &str) -> tempfile::TempDir {
    let dir = scratch();
    std::fs::write(dir.path().join("s.yaml"), config).unwrap();
    dir
}

/// The one sweep record under `{dir}/experiments`.
fn record(dir: &Path) -> Value {
    let records: Vec<PathBuf> = std::fs::read_dir(dir.join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".sweep.json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    serde_json::from_str(&std::fs::read_to_string(&records[0]).unwrap()).unwrap()
}

/// What a record says of its trials, without where they live: values, state and rung scores.
fn trials(record: &Value) -> Vec<Value> {
    record["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::json!([t["params"], t["state"], t["rungs"], t["run_name"]]))
        .collect()
}

#[test]
fn the_same_seed_draws_the_same_trials_and_a_search_run_again_trains_nothing() {
    let args = [
        "sweep",
        "s.yaml",
        "optim.lr=loguniform(1e-3,0.3)",
        "model.dropout=choice(0.0,0.2)",
        "model.hidden=[8],[16]",
        "--trials",
        "6",
        "--seed",
        "5",
        "--epochs",
        "1",
    ];
    let (a, b) = (project(CONFIG), project(CONFIG));
    for dir in [&a, &b] {
        let out = danling(dir.path(), &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let record_a = record(a.path());
    // Two grid points, six draws each; the first ten by chance, the last two by TPE.
    assert_eq!(record_a["trials"].as_array().unwrap().len(), 12);
    assert_eq!(record_a["sampler"], "tpe");
    assert_eq!(trials(&record_a), trials(&record(b.path())));
    for trial in record_a["trials"].as_array().unwrap() {
        let lr = trial["params"]["optim.lr"].as_f64().unwrap();
        assert!((1e-3..=0.3).contains(&lr), "{lr}");
        assert_eq!(trial["state"], "finished");
        assert!(trial["run_name"].as_str().unwrap().starts_with("Run-"));
    }
    // Grid points alternate, so each is tried from the start.
    let hidden: Vec<&Value> = record_a["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["params"]["model.hidden"])
        .collect();
    assert_eq!(hidden[0], &serde_json::json!([8]));
    assert_eq!(hidden[1], &serde_json::json!([16]));

    // Again: every trial is finished, and nothing trains.
    let again = danling(a.path(), &args);
    assert!(again.status.success(), "{}", stderr(&again));
    let log = stderr(&again);
    assert!(log.contains("12 finished before"), "{log}");
    assert!(!log.contains("started") && !log.contains("resuming"), "{log}");

    // Another seed draws other trials; the random sampler draws the same first ten as TPE.
    let c = project(CONFIG);
    let mut other = args.to_vec();
    other[8] = "6";
    other.extend(["--sampler", "random", "--dry-run"]);
    let dry = danling(c.path(), &other);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(common::stdout(&dry).contains("12 more, drawn by random"));
    let mut other_seed = args.to_vec();
    other_seed[8] = "6";
    let out = danling(c.path(), &other_seed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(
        record(c.path())["trials"][0]["params"],
        record_a["trials"][0]["params"]
    );

    // Another search under the same group is refused, not mixed into its record.
    let group = record_a["group"].as_str().unwrap();
    let mut mixed = other_seed.clone();
    mixed.extend(["--group", group]);
    let refused = danling(a.path(), &mixed);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains(".sweep.json"), "{}", stderr(&refused));
    assert_eq!(trials(&record(a.path())), trials(&record_a));
}

const ASHA: [&str; 17] = [
    "sweep",
    "s.yaml",
    "optim.lr=loguniform(1e-3,0.5)",
    "--trials",
    "6",
    "--prune",
    "asha",
    "--min-epochs",
    "1",
    "--reduction",
    "2",
    "--seed",
    "3",
    "--sampler",
    "random",
    "--jobs",
    "1",
];

#[test]
fn asha_promotes_the_best_and_a_trial_promoted_to_the_end_is_the_run_without_pauses() {
    // Epochs long enough for Ctrl-C to land while the search goes on.
    let config = CONFIG.replace("n_train: 200", "n_train: 3000");
    let config = config.as_str();
    let dir = project(config);
    let out = danling(dir.path(), &ASHA);
    assert!(out.status.success(), "{}", stderr(&out));
    let sweep = record(dir.path());
    assert_eq!(sweep["ladder"]["rungs"], serde_json::json!([1, 2, 4]));
    let all = sweep["trials"].as_array().unwrap();
    assert_eq!(all.len(), 6);
    let finished: Vec<&Value> = all.iter().filter(|t| t["state"] == "finished").collect();
    let pruned: Vec<&Value> = all.iter().filter(|t| t["state"] == "pruned").collect();
    assert!(!finished.is_empty() && !pruned.is_empty(), "{sweep:#}");
    assert_eq!(finished.len() + pruned.len(), 6);
    // Rung by rung: everyone reaches the first, fewer the next, the finished the last.
    for trial in all {
        let at: Vec<u64> = trial["rungs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["at"].as_u64().unwrap())
            .collect();
        assert_eq!(at, [1, 2, 4][..at.len()], "{trial}");
    }
    // A pruned trial says so in its status.json and in `runs`, with its rung.
    let listed: Vec<Value> =
        serde_json::from_slice(&danling(dir.path(), &["runs", "--format", "json"]).stdout).unwrap();
    assert_eq!(listed.len(), 6);
    for trial in &pruned {
        let status: Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(trial["dir"].as_str().unwrap()).join("status.json"))
                .or_else(|_| {
                    std::fs::read_to_string(
                        dir.path()
                            .join(trial["dir"].as_str().unwrap())
                            .join("status.json"),
                    )
                })
                .unwrap(),
        )
        .unwrap();
        assert_eq!(status["status"], "pruned");
        let reason = status["reason"].as_str().unwrap();
        assert!(reason.starts_with("at rung "), "{reason}");
        let row = listed
            .iter()
            .find(|r| {
                r["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(trial["run_name"].as_str().unwrap())
            })
            .unwrap();
        assert_eq!(row["status"], "pruned", "{row}");
    }

    // The report draws the sweep from its record: the ladder, each key's importance, the trials.
    let page = danling(dir.path(), &["report", "experiments", "--output", "r.html"]);
    assert!(page.status.success(), "{}", stderr(&page));
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(
        html.contains("<h2>Sweeps</h2>") && html.contains("loss by rung"),
        "no ladder"
    );
    assert!(
        html.contains("data-key=\"optim.lr\" data-importance=\""),
        "no importance"
    );
    for trial in all {
        assert!(html.contains(trial["run_name"].as_str().unwrap()));
    }
    assert_eq!(html.matches("<td>pruned</td>").count(), pruned.len());

    // The trial that paused at every rung ends bit for bit as the same config trained at once.
    assert!(!finished.is_empty());
    trained_at_once_is_the_same(dir.path(), &sweep, config, &["--seed", "3"]);

    // The same search stopped by Ctrl-C and run again ends with the same trials, rungs and scores.
    let stopped = project(config);
    let mut child = Command::new(common::bin())
        .args(ASHA)
        .current_dir(stopped.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = stopped.path().join("experiments");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let promoted = || {
        std::fs::read_dir(&path).ok().is_some_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                e.path().to_string_lossy().ends_with(".sweep.json")
                    && std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"target\": 1"))
            })
        })
    };
    while !promoted() {
        assert!(std::time::Instant::now() < deadline, "no trial was ever promoted");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let again = danling(stopped.path(), &ASHA);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("finished before"), "{}", stderr(&again));
    assert_eq!(trials(&record(stopped.path())), trials(&sweep));
}

/// The trial of `sweep` (under `dir`) that paused at every rung ends with the results and weights
/// of its config trained at once, with `args` besides its values and name.
fn trained_at_once_is_the_same(dir: &Path, sweep: &Value, config: &str, args: &[&str]) {
    let rungs = sweep["ladder"]["rungs"].as_array().unwrap().len();
    let climber = sweep["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["state"] == "finished" && t["rungs"].as_array().unwrap().len() == rungs)
        .expect("a trial promoted to the last rung");
    let reference = project(config);
    let lr = format!("--optim.lr={}", climber["params"]["optim.lr"]);
    let name = format!("--run_name={}", climber["run_name"].as_str().unwrap());
    let trained = danling(
        reference.path(),
        &[&["train", "s.yaml", &lr, &name], args].concat(),
    );
    assert!(trained.status.success(), "{}", stderr(&trained));
    let reference_dir = common::run_dir(reference.path()).unwrap();
    let climber_dir = dir.join(climber["dir"].as_str().unwrap());
    assert_eq!(stable_results(&climber_dir), stable_results(&reference_dir));
    assert_eq!(
        model_tensors(&climber_dir.join("checkpoints/latest.safetensors")),
        model_tensors(&reference_dir.join("checkpoints/latest.safetensors"))
    );
}

#[test]
fn in_a_step_budget_rungs_are_steps_and_a_promoted_trial_is_exact_too() {
    let dir = project(CONFIG);
    let budget = ["--steps", "16", "--epochs", "null", "--seed", "1"];
    let search = [
        "sweep",
        "s.yaml",
        "optim.lr=loguniform(1e-3,0.5)",
        "--trials",
        "4",
        "--prune",
        "asha",
        "--min-steps",
        "4",
        "--reduction",
        "2",
        "--sampler",
        "random",
    ];
    let out = danling(dir.path(), &[&search[..], &budget].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let sweep = record(dir.path());
    assert_eq!(sweep["unit"], "step");
    assert_eq!(sweep["ladder"]["rungs"], serde_json::json!([4, 8, 16]));
    // Four steps an epoch: each pause is at a rung.
    for trial in sweep["trials"].as_array().unwrap() {
        for (rung, at) in trial["rungs"].as_array().unwrap().iter().zip([4, 8, 16]) {
            assert_eq!(rung["at"], at, "{trial}");
        }
    }
    trained_at_once_is_the_same(dir.path(), &sweep, CONFIG, &budget);
}

#[test]
fn bad_search_input_is_one_line_naming_it_and_exit_2_before_any_trial() {
    let dir = project(CONFIG);
    for (args, says) in [
        (&["optim.lr=uniform(0.1,0.1)", "--trials", "2"][..], "empty"),
        (&["optim.lr=loguniform(0,1)", "--trials", "2"], "above 0"),
        (
            &["optim.lr=normal(0,1)", "--trials", "2"],
            "unknown distribution `normal`",
        ),
        (&["optim.nope=uniform(0,1)", "--trials", "2"], "optim.nope"),
        (&["model.hidden=uniform(0,1)", "--trials", "2"], "model.hidden"),
        (&["optim.lr=loguniform(1e-3,1)"], "--trials"),
        (&["optim.lr=0.1,0.2", "--trials", "2"], "distributions"),
        (
            &[
                "optim.lr=loguniform(1e-3,1)",
                "--trials",
                "2",
                "--prune",
                "asha",
                "--min-epochs",
                "4",
            ],
            "--min-epochs 4",
        ),
        (
            &[
                "optim.lr=loguniform(1e-3,1)",
                "--trials",
                "2",
                "--min-epochs",
                "2",
            ],
            "--prune asha",
        ),
        (&["optim.lr=loguniform(1e-3,1)", "--trials", "0"], "--trials"),
        (
            &[
                "optim.lr=loguniform(1e-3,1)",
                "--trials",
                "2",
                "--prune",
                "hyperband",
            ],
            "--prune",
        ),
        (
            &[
                "optim.lr=loguniform(1e-3,1)",
                "--trials",
                "2",
                "--prune",
                "asha",
                "--min-steps",
                "2",
            ],
            "--min-steps",
        ),
    ] {
        let out = danling(dir.path(), &[&["sweep", "s.yaml"][..], args].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.path().join("experiments").exists(), "{args:?} trained");
    }
}
