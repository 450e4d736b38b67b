//! A sweep: its axes (from the command line and the config's `sweep:` mapping), its group and its
//! record; its trials, drawn by a sampler when it searches and paused at rungs when ASHA prunes,
//! each trained by a child `train` process of the program, N at once, with stop signals passed on.
//!
//! A grid's trials are its product, planned up front, and their run directories say how far each
//! got. A search draws its trials one at a time as job slots free up (a proposal of TPE depends on
//! the trials observed before it) and keeps them in its record ([`record`](super::record)), which
//! running the sweep again reads to go on where it stopped.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use super::asha::Ladder;
use super::filter::{Filter, Op};
use super::record::{self, SweepRecord, TrialRecord, TrialState};
use super::runs::{Listing, Query, listing, select};
use super::scan::{Status, read_run, scan};
use super::space::Dist;
use super::sweep::{self as axes, Values, shown, suffix};
use super::tpe::{self, Observation};
use crate::results::{ScoreMode, Scoring};
use crate::rng::Rng;
use crate::{Budget, Config, Identity, Override, Sections};

mod run;

pub use run::Outcome;

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
const DRAWS: u64 = 0x0053_5745_4550; // "SWEEP"

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

/// A score oriented so that lower is better.
fn oriented(mode: ScoreMode, score: f64) -> f64 {
    match mode {
        ScoreMode::Min => score,
        ScoreMode::Max => -score,
    }
}
