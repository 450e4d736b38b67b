//! Graceful stop on SIGINT and SIGTERM, and preemption on SIGUSR1.
//!
//! [`install`] registers the handlers; `Runner::train` calls it unless the program opted out with
//! `Runner::handle_signals(false)`. After a first signal the
//! runner finishes the optimizer step in progress, writes `latest`, and returns
//! [`RunnerError::Interrupted`](crate::RunnerError::Interrupted); the process should then exit with
//! 130 (SIGINT), 143 (SIGTERM) or [`PREEMPTED_EXIT_CODE`] (SIGUSR1, or `preempt_signal`). After a
//! first signal, a SIGINT or SIGTERM exits at once with its code.
//!
//! The handlers only set flags; the runner reads them between steps. Nothing is written from a
//! handler.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// A signal that asks the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// A preemption: SIGUSR1, or the config's `preempt_signal`. The run is `preempted`, and asks
    /// Slurm to requeue it when `requeue` is set.
    Preempt,
}

/// The exit code after a preemption: 75, `EX_TEMPFAIL` ("try again later"). A wrapper script that
/// runs the same command line again while it exits 75 continues the run with `resume: auto`.
pub const PREEMPTED_EXIT_CODE: u8 = 75;

/// [`PREEMPTED_EXIT_CODE`] as a process status reports it.
pub const PREEMPTED_EXIT_CODE_I32: i32 = PREEMPTED_EXIT_CODE as i32;

impl Stop {
    /// The exit code after this signal: 130 (SIGINT), 143 (SIGTERM) or [`PREEMPTED_EXIT_CODE`].
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
            Stop::Preempt => PREEMPTED_EXIT_CODE,
        }
    }
}

/// A signal that `preempt_signal` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PreemptSignal {
    /// SIGUSR2 (LSF's warning signal).
    #[serde(alias = "SIGUSR2")]
    Usr2,
    /// SIGHUP.
    #[serde(alias = "SIGHUP")]
    Hup,
    /// SIGXCPU (a CPU-time limit).
    #[serde(alias = "SIGXCPU")]
    Xcpu,
    /// SIGTERM, which then preempts the run instead of stopping it.
    #[serde(alias = "SIGTERM")]
    Term,
}

struct Flags {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    preempt: Arc<AtomicBool>,
    /// Set by every handled signal: a SIGINT or SIGTERM after it exits at once.
    any: Arc<AtomicBool>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

fn flags() -> &'static Flags {
    FLAGS.get_or_init(|| Flags {
        interrupt: Arc::new(AtomicBool::new(false)),
        terminate: Arc::new(AtomicBool::new(false)),
        preempt: Arc::new(AtomicBool::new(false)),
        any: Arc::new(AtomicBool::new(false)),
    })
}

/// Installs the handlers for SIGINT, SIGTERM and SIGUSR1 (once per process; later calls do
/// nothing).
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        use signal_hook::flag;
        let flags = flags();
        for (signal, own, code) in [(SIGINT, &flags.interrupt, 130), (SIGTERM, &flags.terminate, 143)] {
            // The first registration exits only if a stop was already requested: a second signal.
            flag::register_conditional_shutdown(signal, code, Arc::clone(&flags.any))?;
            flag::register(signal, Arc::clone(&flags.any))?;
            flag::register(signal, Arc::clone(own))?;
        }
        flag::register(SIGUSR1, Arc::clone(&flags.any))?;
        flag::register(SIGUSR1, Arc::clone(&flags.preempt))?;
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// Also treats `signal` as a preemption (after [`install`]; once per signal). SIGTERM then
/// preempts the run instead of stopping it.
pub fn preempt_on(signal: PreemptSignal) -> std::io::Result<()> {
    static WATCHED: std::sync::Mutex<Vec<PreemptSignal>> = std::sync::Mutex::new(Vec::new());
    let mut watched = WATCHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if watched.contains(&signal) {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGTERM, SIGUSR2, SIGXCPU};
        use signal_hook::flag;
        let flags = flags();
        let number = match signal {
            PreemptSignal::Usr2 => SIGUSR2,
            PreemptSignal::Hup => SIGHUP,
            PreemptSignal::Xcpu => SIGXCPU,
            PreemptSignal::Term => SIGTERM,
        };
        if number != SIGTERM {
            flag::register(number, Arc::clone(&flags.any))?;
        }
        flag::register(number, Arc::clone(&flags.preempt))?;
    }
    watched.push(signal);
    Ok(())
}

/// The signal that asked the run to stop, if one did: a preemption first, then SIGTERM, then
/// SIGINT.
pub fn requested() -> Option<Stop> {
    let flags = flags();
    if flags.preempt.load(Ordering::SeqCst) {
        Some(Stop::Preempt)
    } else if flags.terminate.load(Ordering::SeqCst) {
        Some(Stop::Terminate)
    } else if flags.interrupt.load(Ordering::SeqCst) {
        Some(Stop::Interrupt)
    } else {
        None
    }
}
