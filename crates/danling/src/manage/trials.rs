//! A sweep: its axes (from the command line and the config's `sweep:` mapping) and its group, its
//! trials each resolved to its run directory (and whether it is finished), then trained by child
//! `train` processes of the program, N at once, with stop signals passed on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Config, Identity, Override, Sections};
use serde_json::Value;

use super::filter::{Filter, Op};
use super::runs::{Listing, Query, listing, select};
use super::scan::{Status, read_run, scan};
use super::sweep::{self as axes, shown, suffix};

/// A sweep, planned: its group, and its trials resolved to their run directories.
#[derive(Debug)]
pub struct Sweep {
    /// The `group` every trial shares: the config's, or `sweep-` and a hash of the base config and
    /// the axes.
    pub group: String,
    /// The trials, in the order of the axes' product.
    pub trials: Vec<Trial>,
    /// Where the trials' run directories are.
    pub project_root: PathBuf,
    /// The config file of every trial.
    config: Option<PathBuf>,
    /// The base overrides, as each trial's command line gives them.
    base: Vec<String>,
}

impl Sweep {
    /// Plans the sweep over the config `file` with `overrides`, for a program whose sections are
    /// `S`: the axes are the `KEY=V1,V2` `specs` and the config's `sweep:` mapping (a key in
    /// `specs` replaces the file's). An error says what is wrong with a spec or the config.
    pub fn plan<S: Sections>(
        file: Option<&Path>,
        overrides: &[Override],
        specs: &[String],
    ) -> Result<Self, String> {
        let cli = specs
            .iter()
            .map(|spec| axes::parse_axis(spec))
            .collect::<Result<Vec<_>, _>>()?;
        let base: Config<S> = Config::load(file, overrides).map_err(|e| e.to_string())?;
        let from_file = match &base.sweep {
            Some(sweep) => axes::file_axes(sweep)?,
            None => Vec::new(),
        };
        let axes = axes::merge(from_file, cli);
        if axes.is_empty() {
            return Err(
                "nothing to sweep: give KEY=V1,V2... or a `sweep:` mapping in the config file".to_owned(),
            );
        }
        let group = match &base.group {
            Some(group) => group.clone(),
            None => axes::default_group(&base.to_value(), &axes),
        };
        let trials = plan::<S>(file, overrides, axes::product(&axes), &group)?;
        Ok(Self {
            group,
            trials,
            project_root: base.project_root.clone(),
            config: file.map(Path::to_owned),
            base: overrides
                .iter()
                .map(|o| format!("--{}={}", o.path.join("."), o.value))
                .collect(),
        })
    }

    /// How many trials finished before this sweep started (they are skipped).
    pub fn finished(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Finished)
            .count()
    }

    /// Trains the trials that are not finished, `jobs` at once, each as `program train ...` with
    /// `threads` threads (`RAYON_NUM_THREADS`). A stop signal is passed on to every running trial,
    /// and no more start.
    pub fn run(&self, program: &Path, jobs: usize, threads: usize) -> Outcome {
        run(
            &self.trials,
            program,
            self.config.as_deref(),
            &self.base,
            jobs,
            threads,
        )
    }

    /// The listing of the group's runs, and the one of its best run (`group_by: group`).
    pub fn listings(&self) -> Result<(Listing, Listing), String> {
        let all = scan(&self.project_root).map_err(|e| e.to_string())?;
        let query = Query {
            // Built, not parsed: a group named `it's` is matched as it is.
            filter: Some(Filter::Compare {
                key: "group".to_owned(),
                op: Op::Eq,
                value: self.group.clone(),
            }),
            ..Query::default()
        };
        let runs = listing(&select(&all, &query), &[], None);
        let best = Query {
            group_by: Some("group".into()),
            ..query
        };
        Ok((runs, listing(&select(&all, &best), &[], Some("group"))))
    }
}

/// One trial: its overrides and where its run goes.
#[derive(Debug)]
pub struct Trial {
    /// Its swept values, `optim.lr=0.01 seed=2`.
    pub label: String,
    /// The overrides it adds to the sweep's: its values, its `run_name` and the `group`.
    pub overrides: Vec<(String, Value)>,
    /// Its run directory.
    pub dir: PathBuf,
    /// Whether it is new, finished or to be resumed.
    pub state: TrialState,
}

/// Where a trial stands before the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// No run directory yet.
    New,
    /// Its run finished: it is skipped.
    Finished,
    /// Its run directory exists unfinished: it is resumed.
    Resume,
}

impl TrialState {
    /// The state as the dry run lists it.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::New => "new",
            TrialState::Finished => "finished: skipped",
            TrialState::Resume => "resumes",
        }
    }
}

/// The trials of a sweep over `config` (with the base `overrides`), each resolved to its run dir.
fn plan<S: Sections>(
    config: Option<&Path>,
    overrides: &[Override],
    trials: Vec<Vec<(String, Value)>>,
    group: &str,
) -> Result<Vec<Trial>, String> {
    let base: Config<S> = Config::load(config, overrides).map_err(|e| e.to_string())?;
    trials
        .into_iter()
        .map(|trial| {
            let mut all: Vec<Override> = overrides.to_vec();
            let mut extra: Vec<(String, Value)> = trial.clone();
            let run_name = format!("{}-{}", base.run_name, suffix(&trial));
            extra.push(("run_name".into(), Value::String(run_name)));
            extra.push(("group".into(), Value::String(group.to_owned())));
            for (key, value) in &extra {
                all.push(Override {
                    path: key.split('.').map(str::to_owned).collect(),
                    value: value.clone(),
                });
            }
            let config: Config<S> = Config::load(config, &all).map_err(|e| e.to_string())?;
            let identity = Identity::new(&config).map_err(|e| e.to_string())?;
            let run = read_run(&identity.dir);
            let state = if !identity.dir.join(crate::workspace::files::RUNNER).exists() {
                TrialState::New
            } else if run.status == Status::Finished {
                TrialState::Finished
            } else {
                TrialState::Resume
            };
            Ok(Trial {
                label: trial
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shown(v)))
                    .collect::<Vec<_>>()
                    .join(" "),
                overrides: extra,
                dir: identity.dir,
                state,
            })
        })
        .collect()
}

/// How running the trials went.
#[derive(Debug)]
pub struct Outcome {
    /// Trials finished, those skipped included.
    pub finished: usize,
    /// Trials that failed.
    pub failed: usize,
    /// Whether a stop signal ended the sweep.
    pub stopped: bool,
}

/// Runs the trials that are not finished, `jobs` at once, each as `program train` with `threads`
/// threads; a stop signal is passed on to every running trial, and no more start.
fn run(
    trials: &[Trial],
    program: &Path,
    config: Option<&Path>,
    base: &[String],
    jobs: usize,
    threads: usize,
) -> Outcome {
    let total = trials.len();
    let mut pending: Vec<(usize, &Trial)> = trials
        .iter()
        .enumerate()
        .filter(|(_, t)| t.state != TrialState::Finished)
        .collect();
    pending.reverse();
    let mut running: Vec<(usize, &Trial, Child, Instant)> = Vec::new();
    let mut outcome = Outcome {
        finished: trials.iter().filter(|t| t.state == TrialState::Finished).count(),
        failed: 0,
        stopped: false,
    };
    let mut forwarded = false;
    loop {
        if let Some(signal) = crate::signals::requested() {
            outcome.stopped = true;
            if !forwarded {
                forwarded = true;
                let name = match signal {
                    crate::signals::Stop::Interrupt => "-INT",
                    crate::signals::Stop::Terminate => "-TERM",
                };
                for (_, _, child, _) in &running {
                    let _ = Command::new("kill")
                        .args([name, &child.id().to_string()])
                        .status();
                }
                tracing::info!("stopping {} running trial(s); no more start", running.len());
            }
        }
        while !outcome.stopped && running.len() < jobs {
            let Some((i, trial)) = pending.pop() else { break };
            let mut command = Command::new(program);
            command.arg("train");
            if let Some(config) = config {
                command.arg(config);
            }
            command.args(base);
            for (key, value) in &trial.overrides {
                command.arg(format!("--{key}={}", value));
            }
            if trial.state == TrialState::Resume {
                command.arg("--resume=true");
            }
            command
                .arg("--progress=false")
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            match command.spawn() {
                Ok(child) => {
                    tracing::info!(
                        "[{}/{total}] {}: {}",
                        i + 1,
                        trial.label,
                        if trial.state == TrialState::Resume {
                            "resuming"
                        } else {
                            "started"
                        }
                    );
                    running.push((i, trial, child, Instant::now()));
                }
                Err(error) => {
                    tracing::error!(
                        "[{}/{total}] {}: cannot start {} train: {error}",
                        i + 1,
                        trial.label,
                        program.display()
                    );
                    outcome.failed += 1;
                }
            }
        }
        if running.is_empty() && (pending.is_empty() || outcome.stopped) {
            return outcome;
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut k = 0;
        while k < running.len() {
            let done = running[k].2.try_wait().ok().flatten();
            let Some(status) = done else {
                k += 1;
                continue;
            };
            let (i, trial, child, start) = running.swap_remove(k);
            let stderr = child
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            let seconds = start.elapsed().as_secs_f64();
            match status.code() {
                Some(0) => {
                    outcome.finished += 1;
                    tracing::info!(
                        "[{}/{total}] {}: finished in {seconds:.1} s, {}",
                        i + 1,
                        trial.label,
                        trial.dir.display()
                    );
                }
                Some(130 | 143) => {
                    tracing::warn!(
                        "[{}/{total}] {}: stopped; the same sweep again resumes it",
                        i + 1,
                        trial.label
                    );
                }
                code => {
                    outcome.failed += 1;
                    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                    tracing::error!(
                        "[{}/{total}] {}: failed (exit {}): {last}",
                        i + 1,
                        trial.label,
                        code.map_or("by a signal".to_owned(), |c| c.to_string())
                    );
                }
            }
        }
    }
}
