//! Your program's command line: hand [`main`] one type that implements [`App`] (its config sections,
//! and how to build its task, model and splits from the resolved config) and the program gets every
//! command of the `danling` binary with its own model: `train`, `evaluate`, `infer`, `config`,
//! `sweep`, `runs`, `compare`, `report` and `completions`, dotted overrides, resume, the exit codes and
//! the one-line errors, and a `--help` and completions that list its own config keys.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use burn::data::dataset::InMemDataset;
//! use burn::tensor::Device;
//! use danling::cli::{App, BuildError, Parts};
//! use danling::{Config, NoSections};
//! # use burn::module::Module;
//! # use burn::nn::{Linear, LinearConfig};
//! # use danling::runner::{StepOutput, Task};
//! # #[derive(Module, Debug)] struct Model { linear: Linear }
//! # #[derive(Debug)] struct MyTask;
//! # impl Task for MyTask {
//! #     type Model = Model; type Item = (f32, i64); type Batch = ();
//! #     fn collate(&self, _: Vec<(f32, i64)>, _: &Device) {}
//! #     fn forward(&self, _: &Model, _: &()) -> StepOutput { unimplemented!() }
//! # }
//!
//! struct MyApp;
//!
//! impl App for MyApp {
//!     const NAME: &'static str = "my-app";
//!     const ABOUT: &'static str = "my-app trains my model.";
//!     type Sections = NoSections;
//!     type Task = MyTask;
//!
//!     fn build(config: &Config, device: &Device) -> Result<Parts<MyTask>, BuildError> {
//!         let model = Model { linear: LinearConfig::new(1, 2).init(device) };
//!         let items = vec![(0.0, 0), (1.0, 1)];
//!         Ok(Parts::new(MyTask, model)
//!             .train("train", InMemDataset::new(items.clone()))
//!             .eval("val", InMemDataset::new(items)))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     danling::cli::main::<MyApp>()
//! }
//! ```

mod args;
mod commands;
mod flags;
mod manage;
mod messages;
mod program;
mod texts;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use burn::data::dataset::Dataset;
use burn::tensor::Device;

use self::args::{Invocation, UsageError};
use self::flags::Command;
use crate::runner::{Runner, Task};
use crate::{Config, Sections};

/// A program built on danling: its config sections, and how its task, model and splits come from the
/// resolved config. [`main`] gives it the whole command line.
pub trait App: 'static {
    /// The program's name, as its help, usage lines, messages and completions write it.
    const NAME: &'static str;
    /// What the program does, in a sentence or two: the top of its `--help`.
    const ABOUT: &'static str;
    /// The config sections beside danling's own keys (`model`, `data`, ...), or
    /// [`NoSections`](crate::NoSections).
    type Sections: Sections;
    /// The task: how items become batches, and a batch a loss. Its `Model` is the program's model.
    type Task: Task;

    /// Builds the task, the model (on `device`) and the splits from the resolved `config`. The device
    /// has been seeded with `config.seed` just before, so that the seed decides the initial weights.
    /// An error here is the user's input (a missing data file, a bad value): it exits 2 with its
    /// message, which should name the key or file at fault.
    fn build(config: &Config<Self::Sections>, device: &Device) -> Result<Parts<Self::Task>, BuildError>;

    /// Adjusts the runner before any command uses it: callbacks, an optimizer of its own, the console.
    /// Unchanged by default.
    fn runner(runner: Runner<Self::Task, Self::Sections>) -> Runner<Self::Task, Self::Sections> {
        runner
    }
}

/// The error of [`App::build`]: anything that can be shown in one line.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What [`App::build`] returns: the task, the model and the named splits, in order.
pub struct Parts<T: Task> {
    task: T,
    model: T::Model,
    splits: Vec<PartSplit<T::Item>>,
}

/// A split of [`Parts`]: its name, whether it is trained on, and its items.
struct PartSplit<I> {
    name: String,
    train: bool,
    dataset: Arc<dyn Dataset<I>>,
}

impl<T: Task> std::fmt::Debug for Parts<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let splits: Vec<&str> = self.split_names().collect();
        f.debug_struct("Parts")
            .field("splits", &splits)
            .finish_non_exhaustive()
    }
}

impl<T: Task> Parts<T> {
    /// The task and the model, with no splits yet.
    pub fn new(task: T, model: T::Model) -> Self {
        Self {
            task,
            model,
            splits: Vec::new(),
        }
    }

    /// Adds a split that is trained on (and evaluated, as every split is).
    pub fn train(self, name: &str, dataset: impl Dataset<T::Item> + 'static) -> Self {
        self.push(name, true, dataset)
    }

    /// Adds a split that is only evaluated.
    pub fn eval(self, name: &str, dataset: impl Dataset<T::Item> + 'static) -> Self {
        self.push(name, false, dataset)
    }

    /// The names of the splits, in order.
    pub fn split_names(&self) -> impl Iterator<Item = &str> {
        self.splits.iter().map(|split| split.name.as_str())
    }

    fn push(mut self, name: &str, train: bool, dataset: impl Dataset<T::Item> + 'static) -> Self {
        self.splits.push(PartSplit {
            name: name.to_owned(),
            train,
            dataset: Arc::new(dataset),
        });
        self
    }
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

/// Runs the command line of the process for `A`, and returns its exit code: 0 on success, 2 for a
/// usage, config or input error, 1 for any other failure, 130 or 143 after a stop signal. A panic
/// prints one line. Under a launcher every rank ends together.
pub fn main<A: App>() -> ExitCode {
    run::<A>(std::env::args_os().skip(1))
}

/// [`main`] with the arguments after the program name given.
pub fn run<A: App>(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    crate::env::quiet_display_probing();
    #[cfg(feature = "mimalloc")]
    crate::alloc::keep_freed_memory();
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "{}: internal error (a bug, please report it): {}",
            A::NAME,
            one_line(&info.to_string())
        );
    }));
    let (code, collective) = match dispatch::<A>(argv) {
        Ok(()) => (0, true),
        Err(Failure::Input(err)) => (2, report(A::NAME, &err)),
        Err(Failure::Other(err)) => (1, report(A::NAME, &err)),
        Err(Failure::Stopped(code)) => (code, true),
    };
    // Every rank of a multi-process run ends together: a failure that only some ranks met ends the
    // whole job, so that none is left waiting for the others.
    crate::runner::end_world(i32::from(code), collective);
    ExitCode::from(code)
}

/// Prints the one-line error, and says whether every rank met it alike (then rank 0 alone prints it).
fn report(program: &str, err: &anyhow::Error) -> bool {
    let collective = err
        .downcast_ref::<crate::RunnerError>()
        .is_some_and(crate::RunnerError::is_collective);
    let rank = crate::runner::process_rank().filter(|&(_, world)| world != 1);
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
    eprintln!("{prefix}{program}: error: {}", one_line(&message));
    collective
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn dispatch<A: App>(argv: impl IntoIterator<Item = OsString>) -> Result<(), Failure> {
    let program = flags::Program::of::<A>();
    match args::parse(argv, &program)? {
        Invocation::Print(text) => print(&text),
        Invocation::Completions(shell) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut flags::app(&program), A::NAME, &mut script);
            print(&String::from_utf8_lossy(&script))
        }
        Invocation::Run(args) => match args.command {
            Command::Train => commands::train::<A>(&args),
            Command::Evaluate => commands::evaluate::<A>(&args),
            Command::Infer => commands::infer::<A>(&args),
            Command::Config => commands::config::<A>(&args),
            Command::Runs => manage::runs(&args),
            Command::Compare => manage::compare(&args),
            Command::Mlflow => manage::mlflow(&args),
            Command::Report => manage::report(&args),
            Command::Sweep => manage::sweep::<A::Sections>(&args),
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
