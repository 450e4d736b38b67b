//! A sweep: its axes (from the command line and the config's `sweep:` mapping), its group and its
//! record; its trials, drawn by a sampler when it searches and paused at rungs when ASHA prunes,
//! each trained by a child `train` process of the program, N at once, with stop signals passed on.
//!
//! A grid's trials are its product, planned up front, and their run directories say how far each
//! got. A search draws its trials one at a time as job slots free up (a proposal of TPE depends on
//! the trials observed before it) and keeps them in its record ([`record`](super::record)), which
//! running the sweep again reads to go on where it stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::Value;

use super::asha::{self, Climber, Ladder};
use super::filter::{Filter, Op};
use super::record::{self, RungScore, SweepRecord, TrialRecord, TrialState};
use super::runs::{Listing, Query, listing, select};
use super::scan::{Run, Status, read_run, scan};
use super::space::Dist;
use super::sweep::{self as axes, Values, shown, suffix};
use super::tpe::{self, Observation};
use crate::results::{ScoreMode, Scoring};
use crate::rng::Rng;
use crate::{Budget, Config, Identity, Override, Sections};

/// How a sweep searches: the trials drawn per grid point, the sampler and the pruner.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// `--trials N`: draws per grid point of the sampled keys.
    pub trials: Option<u64>,
    /// `--sampler`: `tpe` (the default) or `random`.
    pub sampler: Option<String>,
    /// `--prune asha`.
    pub prune: Option<String>,
    /// `--min-epochs`: ASHA's first rung in an epoch budget (default 1).
    pub min_epochs: Option<u64>,
    /// `--min-steps`: ASHA's first rung in a step budget.
    pub min_steps: Option<u64>,
    /// `--reduction`: ASHA's η (default 3).
    pub reduction: Option<u64>,
}

/// Resolves a trial's overrides to its run directory, through the program's config type.
type Resolve = Box<dyn Fn(&[(String, Value)]) -> Result<PathBuf, String>>;

/// A sweep, planned: its group, its record and how to draw and run the rest of its trials.
pub struct Sweep {
    /// The `group` every trial shares: the config's, or `sweep-` and a hash of the base config,
    /// the axes and the search.
    pub group: String,
    /// The record: the sweep's space and its trials so far (for a grid, all of them).
    pub record: SweepRecord,
    /// Where the record is written: `{project_root}/{group}.sweep.json`.
    pub record_path: PathBuf,
    /// Where the trials' run directories are.
    pub project_root: PathBuf,
    /// The trials the sweep has in all: grid points × `--trials`.
    pub total: u64,
    /// The config file of every trial.
    config: Option<PathBuf>,
    /// The base overrides, as each trial's command line gives them.
    base: Vec<String>,
    /// The grid's points.
    grid: Vec<Vec<(String, Value)>>,
    /// The sampled keys and their distributions.
    sampled: Vec<(String, Dist)>,
    /// The base config's run name, which every trial's extends.
    run_name: String,
    resolve: Resolve,
}

impl std::fmt::Debug for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweep")
            .field("group", &self.group)
            .field("record_path", &self.record_path)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// The stream of the draws' generator, apart from every stream the runner draws from the seed.
const DRAWS: u64 = 0x5357_4545_50; // "SWEEP"

impl Sweep {
    /// Plans the sweep over the config `file` with `overrides`, for a program whose sections are
    /// `S`: the axes are the `KEY=...` `specs` and the config's `sweep:` mapping (a key in `specs`
    /// replaces the file's). Every error (a bad spec, a key the config does not have, a search
    /// without `--trials`, a record of another search) is found here, before any trial starts.
    pub fn plan<S: Sections>(
        file: Option<&Path>,
        overrides: &[Override],
        specs: &[String],
        search: &Search,
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
        let all = axes::merge(from_file, cli);
        if all.is_empty() {
            return Err(
                "nothing to sweep: give KEY=V1,V2... or a `sweep:` mapping in the config file".to_owned(),
            );
        }
        let sampled: Vec<(String, Dist)> = all
            .iter()
            .filter_map(|axis| match &axis.values {
                Values::Sampled(dist) => Some((axis.key.clone(), dist.clone())),
                Values::Grid(_) => None,
            })
            .collect();
        let per_point = match (search.trials, sampled.first()) {
            (Some(n), Some(_)) => n,
            (None, Some((key, dist))) => {
                return Err(format!(
                    "sweep `{key}={}` is a distribution: give --trials N, the trials drawn from it",
                    dist.spec()
                ));
            }
            (Some(_), None) => {
                return Err(
                    "--trials draws from distributions, and this sweep has none: give KEY=uniform(a,b), \
                     loguniform(a,b), int(a,b) or choice(a,b,...)"
                        .to_owned(),
                );
            }
            (None, None) => 1,
        };
        let searching = !sampled.is_empty();
        let sampler = match (searching, search.sampler.as_deref()) {
            (false, _) => "grid",
            (true, None | Some("tpe")) => "tpe",
            (true, Some("random")) => "random",
            (true, Some(other)) => return Err(format!("--sampler {other}: write tpe or random")),
        };
        let budget = base.budget();
        let (unit, budget_len) = match budget {
            Budget::Epochs(epochs) => ("epoch", epochs),
            Budget::Steps(steps) => ("step", steps),
        };
        let ladder = match search.prune.as_deref() {
            None => {
                if search.min_epochs.is_some() || search.min_steps.is_some() {
                    return Err("--min-epochs and --min-steps set ASHA's rungs: add --prune asha".to_owned());
                }
                None
            }
            Some("asha") => {
                let min = match (budget, search.min_epochs, search.min_steps) {
                    (Budget::Epochs(_), _, Some(_)) => {
                        return Err(
                            "--min-steps counts steps, and the budget is `epochs`: give --min-epochs".into(),
                        );
                    }
                    (Budget::Steps(_), Some(_), _) => {
                        return Err(
                            "--min-epochs counts epochs, and the budget is `steps`: give --min-steps".into(),
                        );
                    }
                    (Budget::Epochs(_), min, None) => min.unwrap_or(1),
                    (Budget::Steps(_), None, Some(min)) => min,
                    (Budget::Steps(_), None, None) => {
                        return Err(
                            "--prune asha in a `steps` budget needs --min-steps N, its first rung".into(),
                        );
                    }
                };
                Some(Ladder::new(min, budget_len, search.reduction.unwrap_or(3))?)
            }
            Some(other) => return Err(format!("--prune {other}: the pruner is asha")),
        };
        let described = format!(
            "{sampler} {}",
            ladder
                .as_ref()
                .map_or(String::new(), |l| format!("asha {:?} {}", l.rungs, l.reduction))
        );
        let group = match &base.group {
            Some(group) => group.clone(),
            None => axes::default_group(&base.to_value(), &all, if searching { &described } else { "" }),
        };
        let grid = axes::product(&all);
        // Every key and value is checked before anything trains: the grid's points each, and the
        // sampled keys at an example value.
        let examples: Vec<(String, Value)> = sampled.iter().map(|(k, d)| (k.clone(), d.example())).collect();
        let overrides_vec = overrides.to_vec();
        let file_owned = file.map(Path::to_owned);
        let resolve: Resolve = Box::new(move |extra: &[(String, Value)]| {
            let mut all = overrides_vec.clone();
            all.extend(extra.iter().map(|(key, value)| Override {
                path: key.split('.').map(str::to_owned).collect(),
                value: value.clone(),
            }));
            let config: Config<S> = Config::load(file_owned.as_deref(), &all).map_err(|e| e.to_string())?;
            Ok(Identity::new(&config).map_err(|e| e.to_string())?.dir)
        });
        for point in &grid {
            let mut trial = point.clone();
            trial.extend(examples.iter().cloned());
            resolve(&trial)?;
        }
        let scoring = Scoring::new(base.score_split.clone(), base.score_name.clone(), base.score_mode);
        let mut record = SweepRecord {
            version: record::VERSION,
            group: group.clone(),
            space: all.iter().map(|axis| (axis.key.clone(), axis.spec())).collect(),
            sampler: sampler.to_owned(),
            seed: base.seed,
            trials_per_point: per_point,
            ladder,
            unit: unit.to_owned(),
            score: match &scoring.split {
                Some(split) => format!("{split}.{}", scoring.name),
                None => scoring.name.clone(),
            },
            mode: scoring.mode,
            trials: Vec::new(),
        };
        let record_path = base.project_root.join(record::file_name(&group));
        let earlier = SweepRecord::read(&record_path)?;
        let mut sweep = Self {
            group,
            total: grid.len() as u64 * per_point,
            record_path,
            project_root: base.project_root.clone(),
            config: file.map(Path::to_owned),
            base: overrides
                .iter()
                .map(|o| format!("--{}={}", o.path.join("."), o.value))
                .collect(),
            grid,
            sampled,
            run_name: base.run_name.clone(),
            resolve,
            record: record.clone(),
        };
        match earlier {
            Some(earlier) if searching => {
                earlier.same_search(&record)?;
                record.trials = earlier.trials;
                sweep.record = record;
            }
            // A grid's trials are its product, and their run directories say how far each got.
            _ if !searching => {
                for i in 0..sweep.total {
                    let trial = sweep.draw(i)?;
                    sweep.record.trials.push(trial);
                }
            }
            _ => {}
        }
        Ok(sweep)
    }

    /// Trials that finished before this sweep started (they are skipped).
    pub fn finished(&self) -> usize {
        self.record
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Finished)
            .count()
    }

    /// Whether the sweep samples (rather than enumerates a grid).
    pub fn searching(&self) -> bool {
        !self.sampled.is_empty()
    }

    /// Trial `number`: its grid point (`number` modulo the points, so that every point is tried
    /// early) and its draws of the sampled keys, from the trials observed so far; its run name and
    /// directory; its state as its directory says.
    fn draw(&self, number: u64) -> Result<TrialRecord, String> {
        let point = &self.grid[(number % self.grid.len() as u64) as usize];
        let mut params: IndexMap<String, Value> = point.iter().cloned().collect();
        if !self.sampled.is_empty() {
            let dists: Vec<Dist> = self.sampled.iter().map(|(_, d)| d.clone()).collect();
            let mut rng = Rng::from_parts(&[self.record.seed, DRAWS, number]);
            let values = match self.record.sampler.as_str() {
                "random" => dists.iter().map(|d| d.sample(&mut rng)).collect(),
                _ => tpe::propose(&dists, &self.observations(number), &mut rng),
            };
            for ((key, _), value) in self.sampled.iter().zip(values) {
                params.insert(key.clone(), value);
            }
        }
        let pairs: Vec<(String, Value)> = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let run_name = if self.sampled.is_empty() {
            format!("{}-{}", self.run_name, suffix(&pairs))
        } else {
            // Numbered so that a listing by name is in the order drawn.
            format!("{}-{number:03}_{}", self.run_name, suffix(&pairs))
        };
        let dir = (self.resolve)(&self.overrides(&pairs, &run_name))?;
        let state = match read_state(&dir) {
            Some(Status::Finished) => TrialState::Finished,
            _ => TrialState::Running,
        };
        Ok(TrialRecord {
            number,
            params,
            run_name,
            dir,
            state,
            target: 0,
            rungs: Vec::new(),
            reason: None,
        })
    }

    /// The trials that TPE learns from for trial `number`: the finished and pruned trials of the
    /// same grid point.
    fn observations(&self, number: u64) -> Vec<Observation> {
        let points = self.grid.len() as u64;
        let top = self.record.ladder.as_ref().map_or(0, Ladder::top);
        self.record
            .trials
            .iter()
            .filter(|t| t.number % points == number % points)
            .filter(|t| matches!(t.state, TrialState::Finished | TrialState::Pruned))
            .filter_map(|t| {
                let last = t.rungs.last()?;
                Some(Observation {
                    values: self.sampled.iter().map(|(k, _)| t.params[k].clone()).collect(),
                    short: match t.state {
                        TrialState::Finished => 0,
                        _ => top.saturating_sub(t.rungs.len() - 1),
                    },
                    loss: oriented(self.record.mode, last.score),
                    number: t.number,
                })
            })
            .collect()
    }

    /// A trial's overrides after the sweep's: its values, its run name and the group.
    fn overrides(&self, params: &[(String, Value)], run_name: &str) -> Vec<(String, Value)> {
        let mut extra = params.to_vec();
        extra.push(("run_name".into(), Value::String(run_name.to_owned())));
        extra.push(("group".into(), Value::String(self.group.clone())));
        extra
    }

    /// The trials as the dry run lists them.
    pub fn dry_run(&self) -> String {
        let mut out = format!("{} trials in group {}", self.total, self.group);
        if self.searching() {
            out += &format!(
                ": {} draws per grid point by {} with seed {}",
                self.record.trials_per_point, self.record.sampler, self.record.seed
            );
        }
        if let Some(ladder) = &self.record.ladder {
            out += &format!(
                "; ASHA rungs at {} {:?}, the top 1/{} of each go on",
                self.record.unit, ladder.rungs, ladder.reduction
            );
        }
        out += ":\n";
        for trial in &self.record.trials {
            let state = match (trial.state, read_state(&trial.dir)) {
                (TrialState::Finished, _) => "finished: skipped".to_owned(),
                (TrialState::Pruned, _) => format!("pruned at rung {}", trial.rungs.len()),
                (_, None) => "new".to_owned(),
                (_, Some(_)) => "resumes".to_owned(),
            };
            out += &format!(
                "  [{}/{}] {}  ({state}) {}\n",
                trial.number + 1,
                self.total,
                label(&trial.params),
                trial.dir.display()
            );
        }
        let left = self.total.saturating_sub(self.record.trials.len() as u64);
        if left > 0 {
            out += &format!(
                "  and {left} more, drawn by {} as the trials before them end\n",
                self.record.sampler
            );
        }
        out
    }

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
                    Some(130 | 143) => tracing::warn!(
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
                    self.mark_pruned();
                }
                self.record.write(&self.record_path)?;
            }
        }
        if !outcome.stopped {
            self.mark_pruned();
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
                trial.rungs.truncate(trial.target);
                let before = trial.rungs.last().map_or(0, |r| r.at);
                trial.rungs.push(RungScore {
                    at: done,
                    score,
                    spent: spent + done.saturating_sub(before),
                });
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
                trial.rungs.truncate(trial.target);
                let before = trial.rungs.last().map_or(0, |r| r.at);
                trial.rungs.push(RungScore {
                    at,
                    score,
                    spent: spent + at.saturating_sub(before),
                });
                trial.state = TrialState::Pruned;
                tracing::info!(
                    "{name}: paused at {} {at}{took}, {} {}",
                    self.record.unit,
                    self.record.score,
                    shown_score(score)
                );
            }
            (status, _) => {
                let reason = format!(
                    "ended {} ({}) before its rung",
                    status.as_str(),
                    run.reason.clone().unwrap_or_default()
                );
                tracing::error!("{name}: {reason}");
                trial.state = TrialState::Failed;
                trial.reason = Some(reason);
            }
        }
    }

    /// Marks every paused trial `pruned` in its `status.json`, with its rung and rank there.
    fn mark_pruned(&mut self) {
        let Some(ladder) = self.record.ladder.clone() else {
            return;
        };
        let climbers = self.climbers();
        for i in 0..self.record.trials.len() {
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

/// `optim.lr=0.01 seed=2`: a trial's values.
pub fn label(params: &IndexMap<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", shown(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How the run in `dir` stands, when it has begun.
fn read_state(dir: &Path) -> Option<Status> {
    dir.join(crate::workspace::files::RUNNER)
        .exists()
        .then(|| read_run(dir).status)
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

/// A score oriented so that lower is better.
fn oriented(mode: ScoreMode, score: f64) -> f64 {
    match mode {
        ScoreMode::Min => score,
        ScoreMode::Max => -score,
    }
}

fn shown_score(score: f64) -> String {
    if score.is_nan() {
        "none".to_owned()
    } else {
        format!("{score:.4}")
    }
}
