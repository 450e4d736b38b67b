//! `train`: a run as a short sequence. The checks, the state it starts from, the attempt's files and
//! the plan of its steps (`start.rs`); then its epochs, each the train splits (`train.rs`), the
//! evaluation (`evaluate.rs`), the record and the epoch's checkpoints (`persist.rs`), until the
//! budget is spent, early stopping ends it or a callback stops it; then how it ended, in
//! `status.json` and to the callbacks.

use std::path::Path;

use tracing::{info, warn};

use super::base::Trained;
use super::report::epoch_line;
use super::session::Session;
use super::start::Plan;
use super::timing::{DATA_WAIT_WARNING, DATA_WAIT_WARNING_SECONDS, peak_rss_mib};
use super::{Platform, ReduceOp, Runner, RunnerError, Task};
use crate::config::{Budget, Sections};
use crate::data::Workers;
use crate::results::Record;
use crate::signals::Stop;
use crate::workspace::RunState;

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// Trains for the configured budget, evaluating after each epoch, writing results and checkpoints.
    ///
    /// Unless [`handle_signals(false)`](Runner::handle_signals) was set, SIGINT and SIGTERM stop the
    /// run gracefully: the step in progress finishes, `latest` is written, `status.json` says
    /// `stopped`, and `train` returns [`RunnerError::Interrupted`] (exit with its signal's
    /// [`exit_code`](crate::signals::Stop::exit_code)). A second signal exits at once.
    ///
    /// A preemption signal (SIGUSR1, or `preempt_signal`) stops it the same way, as `preempted`;
    /// under Slurm, with `requeue: true`, rank 0 then asks Slurm to requeue the job
    /// (`scontrol requeue $SLURM_JOB_ID`), once every file is written.
    pub fn train(&mut self) -> Result<Trained, RunnerError> {
        if self.handle_signals {
            crate::signals::install().map_err(RunnerError::Signals)?;
            if let Some(signal) = self.config.preempt_signal {
                crate::signals::preempt_on(signal).map_err(RunnerError::Signals)?;
            }
        }
        let mut session = None;
        let trained = self.train_loop(&mut session);
        // Every checkpoint is on disk when training returns, whichever way it ends, and no rank
        // returns before rank 0 has written them. A failure of this rank alone returns at once: the
        // other ranks are not at this barrier, and the program ends the whole job
        // ([`super::end_world`]).
        let written = self.finish_writes();
        let trained = match written {
            Ok(()) => trained,
            Err(error) => trained.and(Err(error)),
        };
        if let Some(session) = &mut session {
            let (state, reason) = match &trained {
                Ok(Trained {
                    stopped: Some(reason),
                    ..
                }) => (RunState::Stopped, reason.clone()),
                Ok(trained) if trained.stopped_early => (RunState::Finished, "early stopping".to_owned()),
                Ok(_) => (RunState::Finished, "budget".to_owned()),
                Err(RunnerError::Interrupted {
                    signal: Stop::Preempt,
                    step,
                }) => (RunState::Preempted, format!("preemption signal at step {step}")),
                Err(RunnerError::Interrupted { signal, step }) => {
                    (RunState::Stopped, format!("{signal:?} at step {step}"))
                }
                Err(error) => (RunState::Failed, error.to_string()),
            };
            if let Err(error) = session.finish(state, Some(reason)) {
                warn!("{error}");
            }
        }
        let preempted = matches!(
            trained,
            Err(RunnerError::Interrupted {
                signal: Stop::Preempt,
                ..
            })
        );
        if preempted && self.platform.is_main() && session.is_some() {
            requeue(self.config.requeue);
        }
        drop(session);
        let outcome = match &trained {
            _ if preempted => "preempted",
            Ok(Trained { stopped: Some(_), .. }) | Err(RunnerError::Interrupted { .. }) => "stopped",
            Ok(_) => "finished",
            Err(_) => "failed",
        };
        self.hooks.run_end(&super::callback::RunEnd {
            step: self.state.step,
            outcome,
        });
        if trained.as_ref().is_err_and(|error| !error.is_collective()) {
            return trained;
        }
        self.platform.barrier()?;
        trained
    }

    /// The run, with the attempt's files opened into `slot` (so that `train` can record how it ended
    /// before they close).
    fn train_loop(&mut self, slot: &mut Option<Session>) -> Result<Trained, RunnerError> {
        let train = self.check_ready()?;
        // The loader's threads, for every epoch; joined when this returns, however it returns.
        let workers = self.start_workers()?;
        let start = self.load_start()?;
        let session = slot.insert(self.open_session(&start)?);
        let mut plan = self.plan(train, session, &start)?;
        // A run that early stopping ended stays ended when resumed.
        let mut end = session
            .results()
            .should_stop(session.scoring(), self.config.patience)
            .then_some(End::EarlyStopped);
        if self.state.progress.is_none() && self.paused(plan.budget) {
            end = Some(End::Stopped(self.pause_reason(plan.budget)));
        }
        let mut samples = 0usize;
        // An epoch in progress is finished (evaluated and recorded) even when its last step spent
        // the budget: a step budget can end inside an epoch, after the step checkpoint.
        while end.is_none() && (self.state.progress.is_some() || !self.budget_spent(plan.budget)) {
            end = self.epoch(&workers, &mut plan, session, &mut samples)?;
        }
        self.closing_line(&plan, samples)?;
        let results = session.results().clone();
        let best = results.best(session.scoring()).map(|(index, _)| index);
        Ok(Trained {
            dir: session.dir().map(Path::to_owned),
            results,
            best,
            state: self.state.clone(),
            stopped_early: matches!(end, Some(End::EarlyStopped)),
            stopped: match end {
                Some(End::Stopped(reason)) => Some(reason),
                _ => None,
            },
        })
    }

    /// One epoch: the train splits from where the epoch stands, the evaluation, the record, the
    /// epoch's checkpoints and its log line. Returns how the run ends, if it ends here. `samples`
    /// counts the samples this rank trained.
    fn epoch(
        &mut self,
        workers: &Workers,
        plan: &mut Plan,
        session: &mut Session,
        samples: &mut usize,
    ) -> Result<Option<End>, RunnerError> {
        let budget = plan.budget;
        let limit = match budget {
            Budget::Steps(steps) => Some(steps),
            Budget::Epochs(_) => None,
        };
        let (mut record, first) = match &self.state.progress {
            Some(progress) => (progress.record.clone(), progress.split),
            None => (Record::new(), 0),
        };
        for &i in plan.train.iter().filter(|&&i| i >= first) {
            let trained = self.train_epoch(workers, i, &mut plan.scheduler, limit, session, &record);
            plan.times.add(&self.times);
            let (result, trained) = match trained {
                Err(RunnerError::CallbackStop { reason, .. }) => return Ok(Some(End::Stopped(reason))),
                other => other?,
            };
            plan.train_wall += result.get("wall").copied().unwrap_or(0.0);
            *samples += trained;
            record.insert(self.splits[i].name.clone(), result);
        }
        for i in (0..self.splits.len()).filter(|&i| !self.splits[i].train) {
            let result = self.evaluate_split(workers, i)?;
            record.insert(self.splits[i].name.clone(), result);
        }
        self.state.epoch += 1;
        let index = match budget {
            Budget::Epochs(_) => self.state.epoch,
            Budget::Steps(_) => self.state.step,
        };
        let evaluation_stop = self.evaluation_event(index, &mut record)?;
        let label = match budget {
            Budget::Epochs(epochs) => format!("epoch {}/{epochs}", self.state.epoch),
            Budget::Steps(steps) => format!("step {}/{steps}", self.state.step),
        };
        let (recorded, results) = session
            .record_deferred(index, record.clone())
            .map_err(RunnerError::saving)?;
        session.log_record(self.state.step, self.state.epoch, &record)?;
        self.save_checkpoints(session, &plan.scheduler, recorded.is_best, results)?;
        info!("{}", epoch_line(&label, &record, recorded.is_best));
        if recorded.should_stop {
            info!(
                "early stopping: {} evaluations without improvement",
                session.results().stale_count(session.scoring())
            );
            return Ok(Some(End::EarlyStopped));
        }
        if let Some(reason) = self.agreed_callback_stop(evaluation_stop)? {
            info!("stopped by a callback after {label}: {reason}");
            return Ok(Some(End::Stopped(reason)));
        }
        if self.paused(budget) {
            let reason = self.pause_reason(budget);
            info!("{reason}: `--resume` goes on");
            return Ok(Some(End::Stopped(reason)));
        }
        Ok(None)
    }

    /// Whether the run has reached its pause ([`Runner::pause_at`]) and not its budget.
    fn paused(&self, budget: Budget) -> bool {
        let done = match budget {
            Budget::Epochs(_) => self.state.epoch,
            Budget::Steps(_) => self.state.step,
        };
        self.pause_at.is_some_and(|at| done >= at) && !self.budget_spent(budget)
    }

    /// `paused at epoch 3` (or `step 300`): the reason `status.json` gives, which a sweep reads.
    fn pause_reason(&self, budget: Budget) -> String {
        match budget {
            Budget::Epochs(_) => format!("{PAUSED} epoch {}", self.state.epoch),
            Budget::Steps(_) => format!("{PAUSED} step {}", self.state.step),
        }
    }

    /// The run's closing log line: samples over every rank, their rate, and where the time of the
    /// gradient all-reduce and the f16 loss scale stand.
    fn closing_line(&self, plan: &Plan, samples: usize) -> Result<(), RunnerError> {
        let seconds = plan.start.elapsed().as_secs_f64();
        let mut total = [samples as f64];
        self.platform.all_reduce(&mut total, ReduceOp::Sum)?;
        let trained_samples = total[0] as usize;
        let reducing = match self.platform.world_size() {
            1 => String::new(),
            ranks => {
                let reduce = self.platform.gradient_reduce_time().as_secs_f64();
                format!(
                    "; {ranks} ranks, the gradient all-reduce {reduce:.3} s ({:.1}% of the time)",
                    100.0 * reduce / seconds
                )
            }
        };
        let scaling = match self.state.scaler {
            Some(scaler) => format!(
                "; f16 loss scale {} after {} overflowed updates",
                scaler.scale, scaler.overflows
            ),
            None => String::new(),
        };
        info!(
            "trained {trained_samples} samples in {seconds:.3} s ({:.0} samples/s, evaluation and \
             checkpoints included{reducing}{scaling})",
            trained_samples as f64 / seconds
        );
        if plan.train_wall > 0.0 {
            let wall = plan.train_wall;
            let memory = peak_rss_mib().map_or(String::new(), |mib| format!("; peak memory {mib:.0} MiB"));
            info!("training time: {}{memory}", plan.times.text(wall));
            let waited = plan.times.data.as_secs_f64();
            if waited / wall > DATA_WAIT_WARNING && waited >= DATA_WAIT_WARNING_SECONDS {
                warn!(
                    "waiting for data took {:.0}% of the training time ({waited:.1} s) with \
                     data.workers {}: more workers (or cheaper items) would train faster",
                    100.0 * waited / wall,
                    self.config.data.workers()
                );
            }
        }
        Ok(())
    }

    fn budget_spent(&self, budget: Budget) -> bool {
        match budget {
            Budget::Epochs(epochs) => self.state.epoch >= epochs,
            Budget::Steps(steps) => self.state.attempts() >= steps,
        }
    }
}

/// The start of the reason of a run that paused ([`Runner::pause_at`]).
pub const PAUSED: &str = "paused at";

/// How a run's epochs ended before its budget was spent.
enum End {
    /// `patience` evaluations without improvement.
    EarlyStopped,
    /// A callback asked, for this reason.
    Stopped(String),
}

/// After a preemption: with `requeue` under Slurm, asks Slurm to requeue this job (`scontrol requeue
/// $SLURM_JOB_ID`); the job then starts again with the same command line, which `resume: auto`
/// continues. Slurm ends this attempt as it requeues it; everything is written by then. Otherwise
/// says what the exit code means.
fn requeue(requeue: bool) {
    let code = crate::signals::PREEMPTED_EXIT_CODE;
    let job = std::env::var("SLURM_JOB_ID").ok().filter(|id| !id.is_empty());
    let Some(job) = job.filter(|_| requeue) else {
        let why = match requeue {
            true => "preempted outside Slurm (no SLURM_JOB_ID)",
            false => "preempted (requeue: false)",
        };
        info!("{why}: exiting with {code}; the same command line with `resume: auto` continues the run");
        return;
    };
    // A job array's task has its own SLURM_JOB_ID too.
    match std::process::Command::new("scontrol")
        .args(["requeue", &job])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => info!("asked Slurm to requeue job {job}"),
        Ok(out) => warn!(
            "`scontrol requeue {job}` failed ({}): {}; the run waits to be started again",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(error) => {
            warn!("cannot run `scontrol requeue {job}`: {error}; the run waits to be started again")
        }
    }
}
