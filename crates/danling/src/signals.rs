//! Graceful stop on SIGINT and SIGTERM.
//!
//! [`install`] registers the handlers; `Runner::train` calls it unless the program opted out with
//! `Runner::handle_signals(false)`. After a first signal the
//! runner finishes the optimizer step in progress, writes `latest`, and returns
//! [`RunnerError::Interrupted`](crate::RunnerError::Interrupted); the process should then exit with
//! 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once with that code.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// A signal that asks the run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Stop {
    /// The conventional exit code after this signal: 130 or 143.
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }
}

struct Flags {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

fn flags() -> &'static Flags {
    FLAGS.get_or_init(|| Flags {
        interrupt: Arc::new(AtomicBool::new(false)),
        terminate: Arc::new(AtomicBool::new(false)),
    })
}

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let flags = flags();
        let any = Arc::new(AtomicBool::new(false));
        for (signal, own, code) in [(SIGINT, &flags.interrupt, 130), (SIGTERM, &flags.terminate, 143)] {
            // The first registration exits only if a stop was already requested: a second signal.
            flag::register_conditional_shutdown(signal, code, Arc::clone(&any))?;
            flag::register(signal, Arc::clone(&any))?;
            flag::register(signal, Arc::clone(own))?;
        }
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn requested() -> Option<Stop> {
    let flags = flags();
    if flags.interrupt.load(Ordering::SeqCst) {
        Some(Stop::Interrupt)
    } else if flags.terminate.load(Ordering::SeqCst) {
        Some(Stop::Terminate)
    } else {
        None
    }
}
