//! The `danling` command.

mod args;
mod builtin;
mod commands;
mod flags;
mod messages;
mod task;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::{Invocation, UsageError};
use crate::flags::Command;

/// Training allocates and frees tensors of megabytes every step. glibc's allocator returns blocks that
/// size to the system each time and takes page faults to get them back, which cost a quarter of a step
/// on the benchmark MLP; mimalloc keeps them (see [`keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (the index of `mi_option_purge_delay` in `mimalloc.h`, in its
/// versions 2 and 3; the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the system. Training frees and allocates the
/// same sizes over and over (tensors every step, checkpoint buffers every epoch); memory given back
/// after mimalloc's default second of disuse comes back through page faults, which made the bare
/// training loop of the benchmark 6% slower and a checkpoint writer's buffers slow the training
/// beside it. Memory in use peaks where it would anyway, as with PyTorch's caching allocator.
#[allow(unsafe_code)]
pub(crate) fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it has no preconditions
    // and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// How a command failed, which decides the exit code.
pub(crate) enum Failure {
    /// Bad usage, config or input: exit code 2.
    Input(anyhow::Error),
    /// Anything else: exit code 1.
    Other(anyhow::Error),
    /// A graceful stop after a signal, with its exit code (130 or 143); the runner logged it.
    Stopped(u8),
}

impl From<UsageError> for Failure {
    fn from(err: UsageError) -> Self {
        Failure::Input(anyhow::anyhow!(err.0))
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "danling: internal error (a bug, please report it): {}",
            one_line(&info.to_string())
        );
    }));
    match run(std::env::args_os().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(err)) => report(&err, 2),
        Err(Failure::Other(err)) => report(&err, 1),
        Err(Failure::Stopped(code)) => ExitCode::from(code),
    }
}

fn report(err: &anyhow::Error, code: u8) -> ExitCode {
    // danling's messages already end with their cause; add a cause only when it says something new.
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    eprintln!("danling: error: {}", one_line(&message));
    ExitCode::from(code)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(argv: impl IntoIterator<Item = std::ffi::OsString>) -> Result<(), Failure> {
    match args::parse(argv)? {
        Invocation::Print(text) => print(&text),
        Invocation::Completions(shell) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut flags::app(), "danling", &mut script);
            print(&String::from_utf8_lossy(&script))
        }
        Invocation::Run(args) => match args.command {
            Command::Train => commands::train(&args),
            Command::Evaluate => commands::evaluate(&args),
            Command::Infer => commands::infer(&args),
            Command::Config => commands::config(&args),
        },
    }
}

pub(crate) fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
        .map_err(Failure::Other)
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_is_the_option_mimalloc_documents() {
        // SAFETY: `mi_option_get` reads an integer from mimalloc's option table.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // mimalloc 3 documents a purge delay of 1000 ms by default, which no other option has (unless
        // the environment sets it).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(), 1000);
        }
        super::keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
