//! MLflow tracking against a real `mlflow server` on loopback, with its SQLite store: the round
//! trip (params, tags, every point of `metrics.jsonl`, the status, `best` as an artifact), a server
//! that is down (the run goes on, warns once, and `danling mlflow sync` sends the rest), and a run
//! killed while a batch was on its way, then resumed (the same MLflow run, no point twice).
//!
//! The server is `$DANLING_MLFLOW` or `mlflow` on the PATH (`pip install mlflow`). Without one the
//! test says so and passes, unless `DANLING_REQUIRE_MLFLOW=1` (CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{danling, run_dir, scratch, stderr, stdout};
use serde_json::{Value, json};

/// A `mlflow server` in a folder of its own, stopped (with its workers) when dropped.
struct Server {
    child: Child,
    uri: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(mlflow: &Path, port: u16) -> Self {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite:///{}", dir.path().join("mlflow.db").display());
        let child = Command::new(mlflow)
            .args(["server", "--backend-store-uri", &store, "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--workers", "1"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let uri = format!("http://127.0.0.1:{port}");
        let server = Self {
            child,
            uri,
            _dir: dir,
        };
        let started = Instant::now();
        while get(&server.uri, "/health").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "mlflow server never answered: {}",
                std::fs::read_to_string(server._dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn api(&self, endpoint: &str) -> Value {
        let text = get(&self.uri, &format!("/api/2.0/mlflow/{endpoint}")).expect(endpoint);
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{endpoint}: {text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

/// A plain HTTP GET (through curl, which every CI image here has); `None` when nothing answers 2xx.
fn get(uri: &str, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "10", &format!("{uri}{path}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A proxy to `upstream` that holds every answer back for `delay`: a batch the server stored is
/// then, for that long, one whose answer the run has not yet had.
fn slow_proxy(upstream: u16, delay: Duration) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut client_in, mut server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while let Ok(n @ 1..) = server_in.read(&mut buffer) {
                    std::thread::sleep(delay);
                    if client_out.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mlflow() -> Option<PathBuf> {
    let named = std::env::var_os("DANLING_MLFLOW").map(PathBuf::from);
    let found = named.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("mlflow"))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var_os("DANLING_REQUIRE_MLFLOW").is_none(),
            "DANLING_REQUIRE_MLFLOW is set, and there is no mlflow (set DANLING_MLFLOW)"
        );
        eprintln!("no mlflow on this machine: the MLflow tests are skipped (pip install mlflow)");
    }
    found
}

/// `metrics.jsonl` by MLflow key (`split/name`): (step, value) in order, `null` values left out;
/// wall-clock values left out unless `all`.
fn spooled(run: &Path, all: bool) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut by_key: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let p: Value = serde_json::from_str(line).unwrap();
        let name = p["name"].as_str().unwrap();
        if !all && danling::results::is_wall_clock(name) {
            continue;
        }
        if let Some(value) = p["value"].as_f64() {
            by_key
                .entry(format!("{}/{name}", p["split"].as_str().unwrap()))
                .or_default()
                .push((p["step"].as_i64().unwrap(), value));
        }
    }
    by_key
}

fn link(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("mlflow.json")).unwrap()).unwrap()
}

/// What MLflow holds for `key` of `run_id`: (step, value), by step then time.
fn history(server: &Server, run_id: &str, key: &str) -> Vec<(i64, f64)> {
    let key = key.replace('/', "%2F");
    let answer = server.api(&format!(
        "metrics/get-history?run_id={run_id}&metric_key={key}&max_results=25000"
    ));
    let mut points: Vec<(i64, i64, f64)> = answer["metrics"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    (
                        m["step"].as_i64().unwrap_or(0),
                        m["timestamp"].as_i64().unwrap(),
                        m["value"].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    points.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    points.into_iter().map(|(s, _, v)| (s, v)).collect()
}

/// Every point of the run's `metrics.jsonl` is in its MLflow run once, and nothing else is;
/// every value of `results.json` is among them.
fn assert_round_trip(server: &Server, run: &Path, all: bool) {
    let run_id = link(run)["run_id"].as_str().unwrap().to_owned();
    let spooled = spooled(run, all);
    assert!(spooled.len() > 5, "{spooled:?}");
    for (key, points) in &spooled {
        let mut expected = points.clone();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let held = history(server, &run_id, key);
        if held != expected {
            let missing: Vec<_> = expected.iter().filter(|p| !held.contains(p)).collect();
            let twice: Vec<_> = held
                .iter()
                .enumerate()
                .filter(|(i, p)| held[..*i].contains(p))
                .map(|(_, p)| p)
                .collect();
            panic!(
                "{key}: MLflow holds {} points, metrics.jsonl {}; missing {missing:?}, twice {twice:?}; mlflow.json {}",
                held.len(),
                expected.len(),
                link(run)
            );
        }
    }
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    for (_, record) in results["results"].as_object().unwrap() {
        for (split, metrics) in record.as_object().unwrap() {
            for (name, value) in metrics.as_object().unwrap() {
                let key = format!("{split}/{name}");
                if let (Some(value), Some(points)) = (value.as_f64(), spooled.get(&key)) {
                    assert!(points.iter().any(|(_, v)| *v == value), "{key} {value}");
                }
            }
        }
    }
}

#[test]
fn runs_reach_a_real_mlflow_server_once_each_point_even_when_it_was_down_or_the_run_was_killed() {
    let Some(mlflow) = mlflow() else {
        return;
    };
    let port = free_port();
    let uri = format!("http://127.0.0.1:{port}");
    let section = |experiment: &str| format!("{{uri: \"{uri}\", experiment: {experiment}, artifacts: true}}");

    // The server is down: the run trains to the end, warns once, and keeps the points.
    let dir = scratch();
    let args = [
        "train",
        "--data.name",
        "digits",
        "--epochs",
        "3",
        "--progress",
        "false",
    ];
    let down = danling(dir.path(), &[&args[..], &["--mlflow", &section("down")]].concat());
    assert!(down.status.success(), "{}", stderr(&down));
    let run = run_dir(dir.path()).unwrap();
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert_eq!(log.matches("did not answer").count(), 1, "{log}");
    assert!(log.contains("mlflow sync"), "{log}");
    assert!(!run.join("mlflow.json").exists());

    let server = Server::start(&mlflow, port);
    let synced = danling(dir.path(), &["mlflow", "sync", run.to_str().unwrap()]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    let points: usize = spooled(&run, true).values().map(Vec::len).sum();
    assert!(
        stdout(&synced).contains(&format!("{points} point(s) sent, status FINISHED")),
        "{}",
        stdout(&synced)
    );
    assert_round_trip(&server, &run, true);
    // Again: nothing left to send, nothing sent twice.
    let again = danling(dir.path(), &["mlflow", "sync", run.to_str().unwrap()]);
    assert!(stdout(&again).contains(" 0 point(s) sent"), "{}", stdout(&again));
    assert_round_trip(&server, &run, true);
    // Killed while a batch was on its way: `mlflow.json` says so, and the next connection asks the
    // server whether it stored the batch. Here it did, and nothing is sent again.
    let lines: Vec<Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let total = lines.len();
    assert_eq!(link(&run)["sent"], total);
    let last = &lines[total - 1];
    let in_flight = |timestamp: i64| {
        let mut state = link(&run);
        state["sent"] = json!(total - 6);
        state["sending"] = json!({"upto": total, "last": {
            "key": format!("{}/{}", last["split"].as_str().unwrap(), last["name"].as_str().unwrap()),
            "value": last["value"],
            "timestamp": timestamp,
            "step": last["step"],
        }});
        std::fs::write(run.join("mlflow.json"), state.to_string()).unwrap();
    };
    let stamp = (last["time"].as_f64().unwrap() * 1e3).round() as i64;
    in_flight(stamp);
    let stored = danling(dir.path(), &["mlflow", "sync", run.to_str().unwrap()]);
    assert!(
        stdout(&stored).contains(" 0 point(s) sent"),
        "{}",
        stdout(&stored)
    );
    assert_eq!(link(&run)["sent"], total);
    assert!(link(&run).get("sending").is_none(), "{}", link(&run));
    assert_round_trip(&server, &run, true);
    // Here it did not (no point has that time): the lines go again, and MLflow keeps one of each
    // point it already had from the same lines.
    in_flight(stamp + 1);
    let lost = danling(dir.path(), &["mlflow", "sync", run.to_str().unwrap()]);
    let again_points = lines[total - 6..]
        .iter()
        .filter(|p| p["value"].is_number())
        .count();
    assert!(
        stdout(&lost).contains(&format!(" {again_points} point(s) sent")),
        "{}",
        stdout(&lost)
    );
    assert_eq!(link(&run)["sent"], total);
    assert_round_trip(&server, &run, true);
    // The run, its params, tags, status and best checkpoint.
    let run_id = link(&run)["run_id"].as_str().unwrap().to_owned();
    let got = server.api(&format!("runs/get?run_id={run_id}"));
    let info = &got["run"]["info"];
    assert_eq!(info["status"], "FINISHED", "{got}");
    let pairs = |list: &Value| -> BTreeMap<String, String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["key"].as_str().unwrap().to_owned(),
                    p["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let params = pairs(&got["run"]["data"]["params"]);
    assert_eq!(
        params.get("optim.lr").map(String::as_str),
        Some("0.001"),
        "{params:?}"
    );
    assert_eq!(params.get("data.name").map(String::as_str), Some("digits"));
    let tags = pairs(&got["run"]["data"]["tags"]);
    let id = run
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("DanLing-Run-")
        .to_owned();
    assert_eq!(tags.get("danling.id"), Some(&id), "{tags:?}");
    assert_eq!(tags.get("danling.status").map(String::as_str), Some("finished"));
    let artifacts = server.api(&format!("artifacts/list?run_id={run_id}"));
    assert!(artifacts.to_string().contains("best.safetensors"), "{artifacts}");

    // A server that answers errors (no MLflow under this path): the run goes on, warned once.
    let wrong = danling(
        dir.path(),
        &[
            &args[..],
            &[
                "--seed",
                "2",
                "--mlflow",
                &format!("{{uri: \"{uri}/nothing-here\"}}"),
            ],
        ]
        .concat(),
    );
    assert!(wrong.status.success(), "{}", stderr(&wrong));
    let wrong_run = dir.path().join(stdout(&wrong).lines().last().unwrap());
    let log = std::fs::read_to_string(wrong_run.join("run.log")).unwrap();
    assert_eq!(log.matches("answered").count(), 1, "{log}");

    // Killed mid-run while a batch was on its way (its answer held back, so most likely after the
    // server stored it), then resumed: the same MLflow run, each point once.
    let slow = format!(
        "{{uri: \"http://127.0.0.1:{}\", experiment: resumed, artifacts: true}}",
        slow_proxy(port, Duration::from_millis(400))
    );
    let dir = scratch();
    let long = [
        "train",
        "--data.name",
        "synthetic",
        "--data.n_train",
        "2048",
        "--model.hidden",
        "[256, 256]",
        "--epochs",
        "3",
        "--log_interval",
        "1",
        "--save_steps",
        "9",
        "--progress",
        "false",
        "--resume",
        "auto",
    ];
    let mut child = Command::new(common::bin())
        .args(long)
        .args(["--mlflow", &slow])
        .current_dir(dir.path())
        .env_remove("DANLING_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no batch on its way"
        );
        if let Some(run) = run_dir(dir.path())
            && std::fs::read_to_string(run.join("mlflow.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|l| l["sending"]["upto"].as_u64().unwrap_or(0) >= 40)
        {
            break run;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let first = link(&run)["run_id"].clone();
    let resumed = danling(dir.path(), &[&long[..], &["--mlflow", &slow]].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(link(&run)["run_id"], first, "the same MLflow run goes on");
    // Wall-clock values logged again after the kill differ from those sent before it.
    assert_round_trip(&server, &run, false);
    let got = server.api(&format!("runs/get?run_id={}", first.as_str().unwrap()));
    assert_eq!(got["run"]["info"]["status"], "FINISHED");
}
