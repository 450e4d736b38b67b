//! The `danling` command.

mod args;
mod help;
mod task;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use danling::log::{Console, init_logging};
use danling::workspace::{runner_tree, runner_yaml};
use danling::{Config, Identity};

use crate::args::{Args, Command, Invocation, UsageError};
use crate::task::TaskSections;

/// How a command failed, which decides the exit code.
enum Failure {
    /// Bad usage, config or input: exit code 2.
    Input(anyhow::Error),
    /// Anything else: exit code 1.
    Other(anyhow::Error),
}

impl From<UsageError> for Failure {
    fn from(err: UsageError) -> Self {
        Failure::Input(anyhow::anyhow!(err.0))
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "danling: internal error (a bug, please report it): {}",
            one_line(&info.to_string())
        );
    }));
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(err)) => report(&err, 2),
        Err(Failure::Other(err)) => report(&err, 1),
    }
}

fn report(err: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("danling: error: {}", one_line(&format!("{err:#}")));
    ExitCode::from(code)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(argv: &[String]) -> Result<(), Failure> {
    match args::parse(argv)? {
        Invocation::Help(command) => print(help::text(command)),
        Invocation::Version => print(&format!("danling {}\n", danling::VERSION)),
        Invocation::Run(args) => match args.command {
            Command::Config => config(&args),
        },
    }
}

fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
        .map_err(Failure::Other)
}

/// `danling config`: print the runner.yaml document, YAML or JSON.
fn config(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let config: Config<TaskSections> =
        Config::load(args.config.as_deref(), &args.overrides).map_err(|e| Failure::Input(e.into()))?;
    let identity = Identity::new(&config).map_err(|e| Failure::Other(e.into()))?;
    let tree = config.to_value();
    let text = if args.json {
        let document = runner_tree(&tree, &identity);
        serde_json::to_string_pretty(&document)
            .map(|s| s + "\n")
            .context("cannot render JSON")
    } else {
        runner_yaml(&tree, &identity).map_err(|e| anyhow::anyhow!("cannot render YAML: {e}"))
    }
    .map_err(Failure::Other)?;
    print(&text)
}
