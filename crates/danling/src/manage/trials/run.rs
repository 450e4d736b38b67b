//! Running a sweep's trials: a job whenever a slot is free (a trial left unfinished, a
//! promotion, a new draw), each a child `train` process of the program, observed when it ends;
//! the record rewritten at every change.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::asha::{self, Climber};
use super::super::record::TrialState;
use super::super::scan::{Run, Status, read_run};
use super::{Sweep, label, oriented};
use crate::results::Scoring;

impl Sweep {
    /// Trains the trials that are not finished, `jobs` at once, each as `program train ...` with
    /// `threads` threads (`RAYON_NUM_THREADS`): trials the sweep left unfinished first, then
    /// promotions, then new draws. A stop signal is passed on to every running trial, and no more
    /// start; the record is written at every change.
    pub fn run(&mut self, program: &Path, jobs: usize, threads: usize) -> Result<Outcome, String> {
        let mut running: Vec<Running> = Vec::new();
        let mut outcome = Outcome {
            finished: 0,
            failed: 0,
            pruned: 0,
            stopped: false,
        };
        let mut forwarded = false;
        std::fs::create_dir_all(&self.project_root).map_err(|e| {
            format!(
                "cannot create the project root {}: {e}",
                self.project_root.display()
            )
        })?;
        // Trials an earlier run of the sweep left unfinished (or failed) go first, in order.
        let mut unfinished: Vec<usize> = (0..self.record.trials.len())
            .filter(|&i| {
                matches!(
                    self.record.trials[i].state,
                    TrialState::Running | TrialState::Failed
                )
            })
            .rev()
            .collect();
        self.record.write(&self.record_path)?;
        loop {
            if let Some(signal) = crate::signals::requested() {
                outcome.stopped = true;
                if !forwarded {
                    forwarded = true;
                    let name = match signal {
                        crate::signals::Stop::Interrupt => "-INT",
                        crate::signals::Stop::Terminate => "-TERM",
                        crate::signals::Stop::Preempt => "-USR1",
                    };
                    for job in &running {
                        let _ = Command::new("kill")
                            .args([name, &job.child.id().to_string()])
                            .status();
                    }
                    tracing::info!("stopping {} running trial(s); no more start", running.len());
                }
            }
            while !outcome.stopped && running.len() < jobs {
                let busy: Vec<usize> = running.iter().map(|r| r.trial).collect();
                let Some(trial) = self.next_job(&mut unfinished, &busy)? else {
                    break;
                };
                if let Some(job) = self.start(trial, program, threads)? {
                    running.push(job);
                }
                self.record.write(&self.record_path)?;
            }
            if running.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            let mut k = 0;
            while k < running.len() {
                let Some(status) = running[k].child.try_wait().ok().flatten() else {
                    k += 1;
                    continue;
                };
                let job = running.swap_remove(k);
                let stderr = job
                    .child
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                let seconds = job.started.elapsed().as_secs_f64();
                match status.code() {
                    Some(0) => self.observe(job.trial, Some(seconds)),
                    Some(130 | 143 | crate::signals::PREEMPTED_EXIT_CODE_I32) => tracing::warn!(
                        "{}: stopped; the same sweep again resumes it",
                        self.name(job.trial)
                    ),
                    code => {
                        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                        let reason = format!(
                            "exit {}: {last}",
                            code.map_or("by a signal".to_owned(), |c| c.to_string())
                        );
                        tracing::error!("{}: failed ({reason})", self.name(job.trial));
                        let trial = &mut self.record.trials[job.trial];
                        trial.state = TrialState::Failed;
                        trial.reason = Some(reason);
                    }
                }
                if !outcome.stopped {
                    self.mark_pruned(Some(job.trial));
                }
                self.record.write(&self.record_path)?;
            }
        }
        if !outcome.stopped {
            // Every rank as it ends: more trials have reached each rung since each paused.
            self.mark_pruned(None);
        }
        self.record.write(&self.record_path)?;
        for trial in &self.record.trials {
            match trial.state {
                TrialState::Finished => outcome.finished += 1,
                TrialState::Failed => outcome.failed += 1,
                TrialState::Pruned => outcome.pruned += 1,
                TrialState::Running => {}
            }
        }
        Ok(outcome)
    }

    /// `[3/20] lr=0.01 wd=0.1`: how the log names a trial.
    fn name(&self, trial: usize) -> String {
        let t = &self.record.trials[trial];
        format!("[{}/{}] {}", t.number + 1, self.total, label(&t.params))
    }

    /// The next trial to train, not one of `busy`: one an earlier run of the sweep left
    /// `unfinished` (popped from its end), a promotion, or a new draw.
    fn next_job(&mut self, unfinished: &mut Vec<usize>, busy: &[usize]) -> Result<Option<usize>, String> {
        let free = |i: &usize| !busy.contains(i);
        if let Some(i) = unfinished.pop() {
            let trial = &mut self.record.trials[i];
            trial.state = TrialState::Running;
            trial.reason = None;
            return Ok(Some(i));
        }
        if let Some(ladder) = &self.record.ladder {
            let climbers = self.climbers();
            if let Some((i, rung)) = asha::promotion(ladder, &climbers).filter(|(i, _)| free(i)) {
                let trial = &mut self.record.trials[i];
                trial.state = TrialState::Running;
                trial.target = rung;
                trial.reason = None;
                tracing::info!(
                    "{}: promoted to rung {} ({} {})",
                    self.name(i),
                    rung + 1,
                    self.record.unit,
                    ladder.rungs[rung]
                );
                return Ok(Some(i));
            }
        }
        let drawn = self.record.trials.len() as u64;
        if drawn < self.total {
            let trial = self.draw(drawn)?;
            self.record.trials.push(trial);
            return Ok(Some(drawn as usize));
        }
        Ok(None)
    }

    /// The trials as ASHA sees them.
    fn climbers(&self) -> Vec<Climber> {
        self.record
            .trials
            .iter()
            .map(|t| Climber {
                scores: t
                    .rungs
                    .iter()
                    .map(|r| oriented(self.record.mode, r.score))
                    .collect(),
                paused: t.state == TrialState::Pruned,
            })
            .collect()
    }

    /// Where trial `i` pauses, if before the end of its budget.
    fn pause_at(&self, i: usize) -> Option<u64> {
        let ladder = self.record.ladder.as_ref()?;
        let target = self.record.trials[i].target;
        (target < ladder.top()).then(|| ladder.rungs[target])
    }

    /// Starts trial `i`, or records it at once when its run directory already got where it goes
    /// (a sweep stopped before it could record that).
    fn start(&mut self, i: usize, program: &Path, threads: usize) -> Result<Option<Running>, String> {
        let trial = &self.record.trials[i];
        let run = trial
            .dir
            .join(crate::workspace::files::RUNNER)
            .exists()
            .then(|| read_run(&trial.dir));
        if let Some(run) = &run {
            let done = run.progress.map_or(0, |(done, _, _)| done);
            let arrived = self.pause_at(i).is_some_and(|at| done >= at);
            if run.status == Status::Finished || (arrived && run.status != Status::Running) {
                self.observe(i, None);
                return Ok(None);
            }
        }
        let mut command = Command::new(program);
        command.arg("train");
        if let Some(config) = &self.config {
            command.arg(config);
        }
        command.args(&self.base);
        let pairs: Vec<(String, Value)> = trial.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, value) in self.overrides(&pairs, &trial.run_name) {
            command.arg(format!("--{key}={value}"));
        }
        if run.is_some() {
            command.arg("--resume=true");
        }
        if let Some(at) = self.pause_at(i) {
            command.arg(format!("--pause-at={at}"));
        }
        command
            .arg("--progress=false")
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let name = self.name(i);
        match command.spawn() {
            Ok(child) => {
                let to = match self.pause_at(i) {
                    Some(at) => format!(" to {} {at}", self.record.unit),
                    None => String::new(),
                };
                tracing::info!(
                    "{name}: {}{to}",
                    if run.is_some() { "resuming" } else { "started" }
                );
                Ok(Some(Running {
                    trial: i,
                    child,
                    started: Instant::now(),
                }))
            }
            Err(error) => {
                let trial = &mut self.record.trials[i];
                trial.state = TrialState::Failed;
                trial.reason = Some(format!("cannot start {} train: {error}", program.display()));
                tracing::error!("{name}: cannot start {} train: {error}", program.display());
                Ok(None)
            }
        }
    }

    /// Records how trial `i` stands now that its process ended well (after `seconds`, when it
    /// ran): finished, or paused at its rung with its score there.
    fn observe(&mut self, i: usize, seconds: Option<f64>) {
        let name = self.name(i);
        let run = read_run(&self.record.trials[i].dir);
        let pause_at = self.pause_at(i);
        let took = seconds.map_or(String::new(), |s| format!(" in {s:.1} s"));
        // What the sweep had trained before this trial's newest stretch, which this adds to.
        let spent = self.record.spent();
        let trial = &mut self.record.trials[i];
        let paused = run.status == Status::Stopped
            && run
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(crate::runner::PAUSED));
        match (run.status, pause_at) {
            (Status::Finished, _) => {
                let done = run.progress.map_or(0, |(done, _, _)| done);
                let score = best_until(&run, u64::MAX);
                trial.reached(done, score, spent);
                trial.state = TrialState::Finished;
                tracing::info!(
                    "{name}: finished{took}, {} {}",
                    self.record.score,
                    shown_score(score)
                );
            }
            (_, Some(at)) if paused || run.progress.is_some_and(|(done, _, _)| done >= at) => {
                // In a step budget the pause is at the end of the epoch that reached the rung.
                let at = run.progress.map_or(at, |(done, _, _)| done.max(at));
                let score = best_until(&run, at);
                trial.reached(at, score, spent);
                trial.state = TrialState::Pruned;
                tracing::info!(
                    "{name}: paused at {} {at}{took}, {} {}",
                    self.record.unit,
                    self.record.score,
                    shown_score(score)
                );
            }
            (status, pause) => {
                let reason = format!(
                    "ended {} ({}) before its {}",
                    status.as_str(),
                    run.reason.clone().unwrap_or_default(),
                    if pause.is_some() { "rung" } else { "budget" }
                );
                tracing::error!("{name}: {reason}");
                trial.state = TrialState::Failed;
                trial.reason = Some(reason);
            }
        }
    }

    /// Marks paused trials `pruned` in their `status.json`, with the rung and their rank there:
    /// trial `only`, or every one.
    fn mark_pruned(&mut self, only: Option<usize>) {
        let Some(ladder) = self.record.ladder.clone() else {
            return;
        };
        let climbers = self.climbers();
        for i in only.map_or(0..self.record.trials.len(), |i| i..i + 1) {
            let trial = &self.record.trials[i];
            if trial.state != TrialState::Pruned {
                continue;
            }
            let rung = trial.rungs.len() - 1;
            let (rank, of) = asha::rank(&climbers, i, rung);
            let reason = format!(
                "at rung {}/{} ({} {}): {} {} ranks {rank} of {of}, and the top 1/{} go on",
                rung + 1,
                ladder.rungs.len(),
                self.record.unit,
                ladder.rungs[rung],
                self.record.score,
                shown_score(trial.rungs[rung].score),
                ladder.reduction
            );
            if let Err(error) = crate::workspace::mark_pruned(&trial.dir, &reason) {
                tracing::warn!("{error}");
            }
            self.record.trials[i].reason = Some(reason);
        }
    }
}

/// A trial being trained.
struct Running {
    trial: usize,
    child: Child,
    started: Instant,
}

/// How running the trials went, over every trial of the sweep so far.
#[derive(Debug)]
pub struct Outcome {
    /// Trials finished, those skipped included.
    pub finished: usize,
    /// Trials that failed.
    pub failed: usize,
    /// Trials pruned at a rung.
    pub pruned: usize,
    /// Whether a stop signal ended the sweep.
    pub stopped: bool,
}

/// The run's best score among its results up to index `at` (NaN when it has none).
fn best_until(run: &Run, at: u64) -> f64 {
    let scoring = Scoring::new(run.score_split.clone(), run.score_name.clone(), Some(run.mode));
    run.results
        .iter()
        .filter(|(index, _)| *index <= at)
        .filter_map(|(index, _)| run.results.score(index, &scoring))
        .filter(|s| !s.is_nan())
        .reduce(|best, s| if run.mode.is_better(s, best) { s } else { best })
        .unwrap_or(f64::NAN)
}

fn shown_score(score: f64) -> String {
    if score.is_nan() {
        "none".to_owned()
    } else {
        format!("{score:.4}")
    }
}
