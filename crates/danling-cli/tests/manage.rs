//! `danling runs` on project roots made the way users make them: real trainings, then damage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{danling, scratch, stderr, stdout};
use serde_json::Value;

const CONFIG: &str = "epochs: 2
data: {name: synthetic, n_train: 200, n_val: 100, features: 8, classes: 3, batch_size: 50}
model: {type: mlp, hidden: [16]}
score_name: accuracy
progress: false
";

/// A project root with three finished runs (two learning rates, two groups), each printed dir.
fn project(dir: &Path) -> Vec<PathBuf> {
    std::fs::write(dir.join("c.yaml"), CONFIG).unwrap();
    let mut runs = Vec::new();
    for (lr, group) in [("0.1", "a"), ("0.01", "a"), ("0.001", "b")] {
        let out = danling(
            dir,
            &[
                "train",
                "c.yaml",
                "--optim.lr",
                lr,
                "--group",
                group,
                "--run_name",
                &format!("lr{lr}"),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        runs.push(dir.join(stdout(&out).lines().last().unwrap()));
    }
    runs
}

fn runs(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("runs")
        .args(args)
        .current_dir(dir)
        .env("COLUMNS", "250")
        .output()
        .unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Vec<Value> {
    let out = runs(dir, &[args, &["--format", "json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// Whether a listed `dir` (relative to the project's parent, as given) is run directory `d`.
fn same_dir(d: &Path, dir: &Value) -> bool {
    d.ends_with(dir.as_str().unwrap())
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn runs_lists_filters_sorts_groups_and_shows_what_changed() {
    let dir = scratch();
    let dirs = project(dir.path());
    let all = json(dir.path(), &[]);
    assert_eq!(all.len(), 3);
    for row in &all {
        assert_eq!(row["status"], "finished");
        assert_eq!(row["reason"], "budget");
        assert_eq!(
            row["progress"],
            serde_json::json!({"unit": "epoch", "done": 2, "budget": 2})
        );
        assert_eq!(row["score"]["name"], "accuracy");
        assert_eq!(row["score"]["split"], "val");
        assert!(row["best"]["value"].as_f64().is_some());
        assert!(row["seconds"].as_f64().unwrap() > 0.0);
        assert!(dirs.iter().any(|d| same_dir(d, &row["dir"])), "{row}");
    }

    // Filters: numbers as numbers, text, substrings, and / or / not.
    let kept = json(dir.path(), &["--filter", "optim.lr < 0.05"]);
    assert_eq!(names(&kept).len(), 2);
    assert!(names(&kept).iter().all(|n| !n.ends_with("lr0.1")));
    let kept = json(dir.path(), &["--filter", "group = b or name ~ 'lr0.1'"]);
    assert_eq!(kept.len(), 2);
    let kept = json(dir.path(), &["--filter", "not (status = finished)"]);
    assert!(kept.is_empty());
    let kept = json(dir.path(), &["--filter", "val.accuracy >= 0"]);
    assert_eq!(kept.len(), 3);

    // Sorting, both ways, by a best-result value and by a config key.
    let up = json(dir.path(), &["--sort", "optim.lr", "--columns", "optim.lr"]);
    let lrs: Vec<f64> = up.iter().map(|r| r["optim.lr"].as_f64().unwrap()).collect();
    assert_eq!(lrs, [0.001, 0.01, 0.1]);
    let down = json(dir.path(), &["--sort", "-optim.lr", "--columns", "optim.lr"]);
    let down_lrs: Vec<f64> = down.iter().map(|r| r["optim.lr"].as_f64().unwrap()).collect();
    assert_eq!(down_lrs, [0.1, 0.01, 0.001]);
    let by_accuracy = json(
        dir.path(),
        &["--sort", "-val.accuracy", "--columns", "val.accuracy"],
    );
    let accuracies: Vec<f64> = by_accuracy
        .iter()
        .map(|r| r["val.accuracy"].as_f64().unwrap())
        .collect();
    assert!(accuracies.windows(2).all(|w| w[0] >= w[1]), "{accuracies:?}");

    // What differs across the runs listed: the learning rate, the group and the run name, not the rest.
    let out = runs(dir.path(), &["--only-changed"]);
    let table = stdout(&out);
    let header = table.lines().next().unwrap();
    for key in ["optim.lr", "group", "run_name"] {
        assert!(header.contains(key), "{header}");
    }
    assert!(!header.contains("epochs"), "{header}");

    // The best run per group, and how many runs it stands for.
    let mut grouped = json(dir.path(), &["--group-by", "group"]);
    assert_eq!(grouped.len(), 2);
    grouped.sort_by_key(|g| g["group"].as_str().unwrap().to_owned());
    assert_eq!(grouped[0]["group"], "a");
    assert_eq!(grouped[0]["runs"], 2);
    assert_eq!(grouped[1]["runs"], 1);
    let a: Vec<f64> = all
        .iter()
        .filter(|r| {
            r["dir"].as_str().unwrap().contains("lr0.1-") || r["dir"].as_str().unwrap().contains("lr0.01-")
        })
        .map(|r| r["best"]["value"].as_f64().unwrap())
        .collect();
    let best_a = a.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(grouped[0]["best"]["value"].as_f64().unwrap(), best_a);

    // CSV for scripts, markdown for notes.
    let csv = stdout(&runs(dir.path(), &["--format", "csv"]));
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .starts_with("name,id,status,progress,best (val.accuracy),last")
    );
    assert_eq!(csv.lines().count(), 4);
    let md = stdout(&runs(dir.path(), &["--format", "md"]));
    assert!(md.lines().nth(1).unwrap().starts_with("|---|"));

    // A bad filter names where it is wrong.
    let out = runs(dir.path(), &["--filter", "optim.lr <"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "danling: error: --filter: expected a value at position 11\n"
    );
}

#[test]
fn the_table_fits_the_terminal() {
    let dir = scratch();
    project(dir.path());
    for width in [60, 100] {
        let out = Command::new(common::bin())
            .args(["runs", "--only-changed"])
            .current_dir(dir.path())
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap();
        let table = stdout(&out);
        assert_eq!(table.lines().count(), 4, "{table}");
        for line in table.lines() {
            assert!(line.chars().count() <= width, "{width}: {line}");
        }
    }
}

#[test]
fn damaged_and_killed_runs_are_listed_with_the_reason() {
    let dir = scratch();
    let dirs = project(dir.path());
    // A torn runner.yaml, a results.json of garbage, a status.json of a process that died, a run
    // another process is training, and a directory that is no run at all.
    let torn = &dirs[0];
    let text = std::fs::read_to_string(torn.join("runner.yaml")).unwrap();
    std::fs::write(torn.join("runner.yaml"), &text[..text.len() / 3]).unwrap();
    std::fs::write(dirs[1].join("results.json"), b"\x00\xffnot json").unwrap();
    let status_path = dirs[2].join("status.json");
    let mut status: Value = serde_json::from_str(&std::fs::read_to_string(&status_path).unwrap()).unwrap();
    status["status"] = "running".into();
    std::fs::write(&status_path, status.to_string()).unwrap();
    std::fs::create_dir(dir.path().join("experiments/not-a-run")).unwrap();

    let rows = json(dir.path(), &[]);
    assert_eq!(rows.len(), 3);
    let by_dir = |d: &Path| rows.iter().find(|r| same_dir(d, &r["dir"])).unwrap().clone();
    let torn_row = by_dir(torn);
    assert_eq!(torn_row["status"], "damaged");
    assert!(
        torn_row["reason"].as_str().unwrap().contains("runner.yaml"),
        "{torn_row}"
    );
    let garbage = by_dir(&dirs[1]);
    assert_eq!(garbage["status"], "damaged");
    assert!(
        garbage["reason"].as_str().unwrap().contains("results.json"),
        "{garbage}"
    );
    let killed = by_dir(&dirs[2]);
    assert_eq!(killed["status"], "killed", "{killed}");
    assert!(
        killed["reason"]
            .as_str()
            .unwrap()
            .contains("without writing its status"),
        "{killed}"
    );

    // While a live process holds the lock, the run is running.
    let mut holder = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(dirs[2].join("run.lock"), format!("{}\n", holder.id())).unwrap();
    let running = json(dir.path(), &[]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let row = running.iter().find(|r| same_dir(&dirs[2], &r["dir"])).unwrap();
    assert_eq!(row["status"], "running");

    // The table says it too, and the listing exits 0.
    let out = runs(dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("damaged (runner.yaml"), "{}", stdout(&out));

    // A missing project root is an input error.
    let out = runs(dir.path(), &["nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

/// The newest modification time of the files in `dir` and its subdirectories, as seconds since
/// the epoch.
fn newest_write(dir: &Path) -> f64 {
    let mut newest = 0.0_f64;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let at = if meta.is_dir() {
            newest_write(&entry.path())
        } else {
            meta.modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        };
        newest = newest.max(at);
    }
    newest
}

#[test]
fn a_training_killed_with_sigkill_is_listed_as_killed_with_the_time_it_trained() {
    use std::time::{Duration, Instant};
    let dir = scratch();
    let spawned = Instant::now();
    let mut child = Command::new(common::bin())
        .args([
            "train",
            "--data.name",
            "synthetic",
            "--data.n_train",
            "2560",
            "--epochs",
            "200",
            "--model.hidden",
            "[256, 256]",
            "--log_interval",
            "2",
            "--save_steps",
            "5",
            "--progress",
            "false",
        ])
        .current_dir(dir.path())
        .env_remove("DANLING_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once an epoch is recorded, and a little more, kill it where it stands.
    let run = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the training ended by itself"
        );
        assert!(spawned.elapsed() < Duration::from_secs(120), "no epoch in 120 s");
        if let Some(run) = common::run_dir(dir.path())
            && run.join("results.json").exists()
        {
            break run;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let lived = spawned.elapsed().as_secs_f64();
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(
        status["status"], "running",
        "the process never wrote how it ended"
    );
    assert!(run.join("run.lock").exists(), "the lock file is left behind");

    let rows = json(dir.path(), &[]);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["status"], "killed", "{row}");
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("PID {}", child.id())) && reason.contains("last write"),
        "{reason}"
    );
    // Its time: from the attempt's start, recorded to the millisecond just before it wrote
    // status.json, to the last file it wrote.
    let attempt = chrono::DateTime::parse_from_rfc3339(status["attempt_started"].as_str().unwrap()).unwrap();
    let attempt = attempt.timestamp_millis() as f64 / 1e3;
    let written = std::fs::metadata(run.join("status.json"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // File times come from the kernel's coarse clock, up to a tick (1 to 10 ms) behind the clock
    // the start was read from.
    assert!(
        written - attempt >= -0.02,
        "status.json written at {written}, before its start {attempt}"
    );
    let expected = newest_write(&run) - attempt;
    let seconds = row["seconds"].as_f64().unwrap();
    assert!((seconds - expected).abs() < 0.01, "{seconds} against {expected}");
    // It trained at least 300 ms past its first epoch, and no longer than it lived.
    assert!(seconds > 0.3 && seconds < lived, "{seconds} s of {lived} s");

    // The table, a filter and the report say it too.
    let out = runs(dir.path(), &["--filter", "status = killed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(" killed "), "{}", stdout(&out));
    let html = report(dir.path(), &[]);
    assert!(
        html.contains("class=\"status-killed\""),
        "no killed status in the report"
    );

    // Resumed, and stopped by SIGTERM: the run's time is both attempts', the killed one's included.
    let resumed_at = Instant::now();
    let mut resumed = Command::new(common::bin())
        .args([
            "train",
            "--data.name",
            "synthetic",
            "--data.n_train",
            "2560",
            "--epochs",
            "200",
            "--model.hidden",
            "[256, 256]",
            "--log_interval",
            "2",
            "--save_steps",
            "5",
            "--progress",
            "false",
            "--resume",
            "true",
        ])
        .current_dir(dir.path())
        .env_remove("DANLING_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = resumed.id();
    loop {
        assert!(
            resumed.try_wait().unwrap().is_none(),
            "the resumed training ended by itself"
        );
        assert!(
            resumed_at.elapsed() < Duration::from_secs(120),
            "the resume never started"
        );
        let now: Value = std::fs::read_to_string(run.join("status.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        if now["pid"] == pid {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = resumed.wait().unwrap();
    let second = resumed_at.elapsed().as_secs_f64();
    assert_eq!(exit.code(), Some(143));
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["status"], "stopped", "{status}");
    let total = status["seconds"].as_f64().unwrap();
    assert!(
        total > seconds + 0.3 && total < seconds + second,
        "{total} s after {seconds} s killed and a resumed attempt of at most {second} s"
    );
}

#[test]
fn a_run_that_early_stopping_ended_says_so() {
    let dir = scratch();
    std::fs::write(dir.path().join("c.yaml"), CONFIG).unwrap();
    // Early stopping: scored on the loss, higher being better, the falling loss never improves.
    let out = danling(
        dir.path(),
        &[
            "train",
            "c.yaml",
            "--epochs",
            "6",
            "--patience",
            "1",
            "--score_name",
            "loss",
            "--score_mode",
            "max",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(dir.path(), &[]);
    assert_eq!(rows[0]["status"], "finished");
    assert_eq!(rows[0]["reason"], "early stopping");
}

#[test]
fn compare_shows_what_differs_and_plots_a_metric() {
    let dir = scratch();
    let dirs = project(dir.path());
    let id = |d: &Path| {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        name.rsplit('-')
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("-")
    };
    // One run by its directory, one by a prefix of its id.
    let prefix: String = id(&dirs[1]).chars().take(22).collect();
    let out = Command::new(common::bin())
        .args([
            "compare",
            dirs[0].to_str().unwrap(),
            &prefix,
            "--metric",
            "val.loss",
        ])
        .current_dir(dir.path())
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("config keys that differ"), "{text}");
    let lr = text
        .lines()
        .find(|l| l.starts_with("optim.lr"))
        .expect("optim.lr differs");
    assert!(lr.contains("0.1") && lr.contains("0.01"), "{lr}");
    assert!(!text.lines().any(|l| l.starts_with("epochs ")), "{text}");
    assert!(text.contains("(no git)"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("best val.accuracy")), "{text}");
    assert!(text.contains("val.loss over the index"), "{text}");
    assert!(
        text.contains('1') && text.contains('2') && text.contains('└'),
        "{text}"
    );
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "{line}");
    }

    // A name that matches nothing, or more than one run, is an input error that says so.
    let out = Command::new(common::bin())
        .args(["compare", "nothing-here", &prefix])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no run `nothing-here`"), "{}", stderr(&out));
    let out = Command::new(common::bin())
        .args(["compare", "DanLing", &prefix])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("names 3 runs"), "{}", stderr(&out));

    // Outside git every id starts `xxxxxxxx-`: a prefix of the run part names a run too.
    let run_part = |d: &Path| id(d).split_once('-').unwrap().1.to_owned();
    let (first, second) = (run_part(&dirs[0]), run_part(&dirs[1]));
    assert!(id(&dirs[0]).starts_with("xxxxxxxx-"), "{}", id(&dirs[0]));
    let out = Command::new(common::bin())
        .args(["compare", &first[..8], &second[..6]])
        .current_dir(dir.path())
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let ids = text.lines().find(|l| l.starts_with("id ")).unwrap();
    assert!(
        ids.contains(&id(&dirs[0])) && ids.contains(&id(&dirs[1])),
        "{text}"
    );
    // What every id shares names them all: one line that says so and lists them, exit 2.
    let out = Command::new(common::bin())
        .args(["compare", "xxxxxxxx", &first[..8]])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("`xxxxxxxx` names 3 runs"), "{err}");
    assert!(dirs.iter().all(|d| err.contains(&id(d))), "{err}");
}

/// Makes `dirs[0]` hostile: its name, a config value and a metric name carry markup.
fn make_hostile(run: &Path) {
    let runner = std::fs::read_to_string(run.join("runner.yaml")).unwrap();
    let mut doc: Value = serde_saphyr::from_str(&runner).unwrap();
    doc["identity"]["name"] = "<script>alert(1)</script>".into();
    doc["config"]["run_name"] = "\"quoted\" & <b>bold</b>".into();
    std::fs::write(run.join("runner.yaml"), serde_json::to_string(&doc).unwrap()).unwrap();
    let results = std::fs::read_to_string(run.join("results.json")).unwrap();
    std::fs::write(
        run.join("results.json"),
        results.replace("\"mcc\"", "\"<img src=x onerror=alert(2)>\""),
    )
    .unwrap();
}

fn report(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(common::bin())
        .arg("report")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join(stdout(&out).trim());
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_report_is_one_self_contained_page_with_everything_escaped() {
    let dir = scratch();
    let dirs = project(dir.path());
    make_hostile(&dirs[0]);
    // And a damaged run beside them: its row says so, and the page is written all the same.
    let damaged = dir.path().join("experiments/DanLing-Run-torn");
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("runner.yaml"), "config: {epochs: 2\nidentity: [").unwrap();
    let html = report(dir.path(), &["experiments", "--output", "report.html"]);
    assert!(
        html.contains("status-damaged") && html.contains("damaged: runner.yaml is not YAML"),
        "the damaged run"
    );
    assert_eq!(html.matches("<tr id=\"run-").count(), 4);
    std::fs::remove_dir_all(&damaged).unwrap();
    let html = report(dir.path(), &["experiments", "--output", "report.html"]);

    // One row per run, a chart per split and metric, the configs, the best per group.
    assert_eq!(html.matches("<tr id=\"run-").count(), 3);
    let charts = html.matches("<figure class=\"chart\"").count();
    assert!(charts >= 10, "{charts} charts");
    assert!(html.contains("data-split=\"val\" data-metric=\"accuracy\""));
    assert!(
        html.contains("data-split=\"train\" data-metric=\"lr\"") && html.contains("train lr (log scale)")
    );
    assert_eq!(html.matches("<details id=\"config-").count(), 3);
    assert!(html.contains("<table id=\"groups\">"));
    for chart in html.split("<figure class=\"chart\"").skip(1) {
        let svg = &chart[..chart.find("</figure>").unwrap()];
        // A line per run that has the metric (the hostile run renamed one of its metrics).
        let lines = svg.matches("<polyline").count();
        let expected = if svg.contains("mcc") {
            2
        } else if svg.contains("onerror") {
            1
        } else {
            3
        };
        assert_eq!(lines, expected, "{}", &svg[..200.min(svg.len())]);
        assert!(
            svg.contains("class=\"xt\"") && svg.contains("class=\"yt\""),
            "axes with ticks"
        );
    }
    assert!(html.contains("<ul class=\"legend\""));
    // Where each run's training time went: a stacked bar per run.
    let time = &html[html.find("<figure class=\"time\"").expect("the time bars")..];
    let time = &time[..time.find("</figure>").unwrap()];
    assert_eq!(time.matches("text-anchor=\"end\"").count(), 3, "a bar per run");
    assert!(time.contains("<title>forward+backward: "), "{time}");

    // Nothing from outside the file, and one script: the page's own.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("@import"));
    assert_eq!(html.matches("<script").count(), 1, "only the page's script");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        html.contains("quoted\\&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"),
        "the config value, escaped"
    );
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>bold"));
}

/// A project root of `runs` runs of `epochs` epochs each, written directly (a real run's
/// runner.yaml under new ids, with generated results).
fn large_project(dir: &Path, runs: usize, epochs: usize) -> PathBuf {
    let seed = project(dir).remove(0);
    let runner = std::fs::read_to_string(seed.join("runner.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&runner).unwrap();
    let id = doc["identity"]["id"].as_str().unwrap().to_owned();
    let root = dir.join("large");
    for n in 0..runs {
        let new_id = format!("{}{n:04}", &id[..id.len() - 4]);
        let run = root.join(format!("Run-{new_id}"));
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("runner.yaml"), runner.replace(&id, &new_id)).unwrap();
        let results: Vec<String> = (1..=epochs)
            .map(|e| {
                let loss = 1.0 / (e as f64 + n as f64 / 10.0);
                format!(
                    "\"{e}\": {{\"train\": {{\"loss\": {loss}, \"accuracy\": {}, \"lr\": {}}}, \"val\": {{\"loss\": {}, \
                     \"accuracy\": {}, \"f1\": {}}}}}",
                    1.0 - loss / 2.0,
                    0.001 / e as f64,
                    loss * 1.1,
                    1.0 - loss / 3.0,
                    1.0 - loss / 4.0
                )
            })
            .collect();
        std::fs::write(
            run.join("results.json"),
            format!(
                "{{\"name\": \"Run\", \"id\": \"{new_id}\", \"results\": {{{}}}}}",
                results.join(", ")
            ),
        )
        .unwrap();
    }
    root
}

#[test]
fn a_report_of_100_runs_of_100_epochs_stays_small() {
    let dir = scratch();
    let root = large_project(dir.path(), 100, 100);
    let start = std::time::Instant::now();
    let html = report(dir.path(), &[root.to_str().unwrap(), "--output", "big.html"]);
    eprintln!(
        "100 runs × 100 epochs: {} bytes in {:.2} s",
        html.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(html.matches("<tr id=\"run-").count(), 100);
    assert!(html.len() < 5_000_000, "{} bytes", html.len());
}

/// Headless Chromium loads the report: its script ran (the table is marked sorted by the best
/// score) and a screenshot is written. Runs where `chromium` is installed, and must where
/// `DANLING_REQUIRE_CHROMIUM` is set (CI).
#[test]
fn chromium_runs_the_page_script_and_takes_a_screenshot() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("DANLING_REQUIRE_CHROMIUM").is_none(),
            "DANLING_REQUIRE_CHROMIUM is set and chromium is not installed"
        );
        eprintln!("chromium is not installed: skipped");
        return;
    };
    let dir = scratch();
    let dirs = project(dir.path());
    make_hostile(&dirs[0]);
    report(dir.path(), &["--output", "report.html"]);
    let page = format!("file://{}", dir.path().join("report.html").display());
    let headless = |extra: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(extra)
            .arg(&page)
            .output()
            .unwrap()
    };
    let dom = headless(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", stderr(&dom));
    let dom = stdout(&dom);
    assert!(
        dom.contains("data-sorted=\"best desc\""),
        "the page's script did not run: {}",
        &dom[..dom.len().min(2000)]
    );
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!dom.contains("<img"));
    let png = dir.path().join("report.png");
    let shot = headless(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1400,2400",
    ]);
    assert!(shot.status.success(), "{}", stderr(&shot));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

const SWEEP: &str = "epochs: 2
data: {name: synthetic, n_train: 200, n_val: 100, features: 8, classes: 3, batch_size: 50}
model: {type: mlp, hidden: [16]}
progress: false
sweep:
  optim.lr: [0.1, 0.01]
";

fn sweep(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("sweep")
        .args(args)
        .current_dir(dir)
        .env("COLUMNS", "250")
        .output()
        .unwrap()
}

#[test]
fn a_sweep_trains_the_product_once_and_resumes_what_did_not_finish() {
    let dir = scratch();
    std::fs::write(dir.path().join("s.yaml"), SWEEP).unwrap();
    // The file's axis times the command line's, with brackets for list values.
    let args = ["s.yaml", "model.hidden=[8],[16,8]", "--jobs", "2"];
    let dry = sweep(dir.path(), &[&args[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", stderr(&dry));
    let plan = stdout(&dry);
    assert_eq!(plan.matches("(new)").count(), 4, "{plan}");
    assert!(plan.contains("optim.lr=0.01 model.hidden=[16,8]"), "{plan}");
    assert!(
        !dir.path().join("experiments").exists(),
        "a dry run trains nothing"
    );

    let out = sweep(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 at once"), "{}", stderr(&out));
    let rows = json(dir.path(), &[]);
    assert_eq!(rows.len(), 4);
    let group = rows[0]["group"].clone();
    let mut names: Vec<String> = names(&rows);
    names.sort();
    assert_eq!(
        names,
        [
            "DanLing-Run-lr=0.01_hidden=[16,8]",
            "DanLing-Run-lr=0.01_hidden=[8]",
            "DanLing-Run-lr=0.1_hidden=[16,8]",
            "DanLing-Run-lr=0.1_hidden=[8]",
        ]
    );
    for row in &rows {
        assert_eq!(row["status"], "finished");
        assert_eq!(row["group"], group);
    }
    assert!(group.as_str().unwrap().starts_with("sweep-"));
    // It ends with the group's runs.
    assert_eq!(
        stdout(&out).matches("finished (budget)").count(),
        5,
        "{}",
        stdout(&out)
    );

    // The same sweep again trains nothing; a trial that did not finish is resumed.
    let again = sweep(dir.path(), &[&args[..], &["--dry-run"]].concat());
    assert_eq!(stdout(&again).matches("(finished: skipped)").count(), 4);
    let stopped = rows[0]["dir"].as_str().unwrap();
    let status = dir.path().join(stopped).join("status.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap();
    doc["status"] = "stopped".into();
    std::fs::write(&status, doc.to_string()).unwrap();
    let out = sweep(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("3 finished before") && log.contains("resuming"),
        "{log}"
    );
    assert_eq!(json(dir.path(), &[]).len(), 4);

    // A group whose name has a quote lists its own run alone (and its best), not the other four.
    let quoted = sweep(dir.path(), &["s.yaml", "optim.lr=0.05", "--group", "it's"]);
    assert!(quoted.status.success(), "{}", stderr(&quoted));
    assert_eq!(
        stdout(&quoted).matches("finished (budget)").count(),
        2,
        "{}",
        stdout(&quoted)
    );
    assert_eq!(json(dir.path(), &[]).len(), 5);

    // A key on the command line replaces the file's.
    let one = sweep(dir.path(), &["s.yaml", "optim.lr=0.07", "--dry-run"]);
    assert!(stdout(&one).starts_with("1 trials in group"), "{}", stdout(&one));
    assert!(stdout(&one).contains("optim.lr=0.07"));

    // A sweep that cannot be read is an input error.
    let bad = sweep(dir.path(), &["s.yaml", "seed=range(3)"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("range(3)"), "{}", stderr(&bad));
}

#[test]
fn sigint_stops_every_trial_and_the_next_sweep_resumes_them() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("s.yaml"),
        SWEEP
            .replace("epochs: 2", "epochs: 400")
            .replace("n_train: 200", "n_train: 2000"),
    )
    .unwrap();
    let mut child = Command::new(common::bin())
        .args(["sweep", "s.yaml", "--jobs", "2"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once both trials are training, Ctrl-C the sweep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let training = || {
        std::fs::read_dir(dir.path().join("experiments"))
            .map(|runs| {
                runs.filter_map(Result::ok)
                    .filter(|r| r.path().join("latest.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    while training() < 2 {
        assert!(std::time::Instant::now() < deadline, "the trials never got going");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let rows = json(dir.path(), &[]);
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row["status"], "stopped", "{row}");
    }
    let plan = stdout(&sweep(dir.path(), &["s.yaml", "--dry-run"]));
    assert_eq!(plan.matches("(resumes)").count(), 2, "{plan}");
}
