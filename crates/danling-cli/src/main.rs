//! The `danling` command.

mod args;
mod builtin;
mod commands;
mod flags;
mod manage;
mod messages;
mod task;
mod texts;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::{Invocation, UsageError};
use crate::flags::Command;

/// mimalloc, never handing freed memory back (see [`danling::alloc`]).
#[global_allocator]
static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;

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
    danling::env::quiet_display_probing();
    danling::alloc::keep_freed_memory();
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "danling: internal error (a bug, please report it): {}",
            one_line(&info.to_string())
        );
    }));
    let (code, collective) = match run(std::env::args_os().skip(1)) {
        Ok(()) => (0, true),
        Err(Failure::Input(err)) => (2, report(&err)),
        Err(Failure::Other(err)) => (1, report(&err)),
        Err(Failure::Stopped(code)) => (code, true),
    };
    // Every rank of a multi-process run ends together: a failure that only some ranks met ends the
    // whole job, so that none is left waiting for the others.
    danling::runner::end_world(i32::from(code), collective);
    ExitCode::from(code)
}

/// Prints the one-line error, and says whether every rank met it alike (then rank 0 alone prints it).
fn report(err: &anyhow::Error) -> bool {
    let collective = err
        .downcast_ref::<danling::RunnerError>()
        .is_some_and(danling::RunnerError::is_collective);
    let rank = danling::runner::process_rank().filter(|&(_, world)| world != 1);
    let prefix = match rank {
        Some((0, _)) | None => String::new(),
        Some(_) if collective => return true,
        Some((rank, _)) => format!("[rank {rank}] "),
    };
    // danling's messages already end with their cause; add a cause only when it says something new.
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    eprintln!("{prefix}danling: error: {}", one_line(&message));
    collective
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
            Command::Runs => manage::runs(&args),
            Command::Compare => manage::compare(&args),
            Command::Report => manage::report(&args),
            Command::Sweep => manage::sweep(&args),
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
