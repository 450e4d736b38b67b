//! The one table of the command line: the clap definitions of every command and its flags. The
//! arguments are split by it (which `--name`s are flags, and which of those take a value), parsed by
//! it, and `--help` and the shell completions are rendered from it.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ValueHint, value_parser};

pub use super::program::{ALL_KEYS, Program};
use super::texts::*;

/// The id of the optional config file; a command that has it takes config overrides.
pub const CONFIG: &str = "config";
/// The id of `--json`.
pub const JSON: &str = "json";
/// The id of `--overwrite`.
pub const OVERWRITE: &str = "overwrite";
/// The id of `--pause-at`.
pub const PAUSE_AT: &str = "pause-at";
/// The id of `--split`.
pub const SPLIT: &str = "split";
/// The id of `--output`.
pub const OUTPUT: &str = "output";
/// The id of the shell of `completions`.
pub const SHELL: &str = "shell";
/// The name of the `completions` command.
pub const COMPLETIONS: &str = "completions";
/// The shells `completions` writes scripts for.
pub const SHELLS: [&str; 3] = ["bash", "zsh", "fish"];

/// The help heading of the config keys a command documents (`--checkpoint` of `evaluate`, say). They
/// are listed for `--help` and the completions, but parsed as overrides like every other `--key`.
pub const CONFIG_KEYS: &str = "Config keys";

/// The override syntax as the usage lines write it.
const OVERRIDES: &str = "[--key value | --key=value]...";

/// How every help text is laid out: the description first, then the usage and the arguments.
const TEMPLATE: &str = "{before-help}{usage-heading} {usage}\n\n{all-args}{after-help}";

/// The commands that run something; `completions` and `help` are clap's business.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Command {
    /// Train the app's model.
    #[default]
    Train,
    /// Evaluate a checkpoint.
    Evaluate,
    /// Write predictions of a checkpoint.
    Infer,
    /// Print the resolved config and identity.
    Config,
    /// List the runs of a project root.
    Runs,
    /// Compare runs side by side.
    Compare,
    /// Write an HTML report of runs.
    Report,
    /// Train the trials of a sweep.
    Sweep,
    /// Send runs' points and status to their MLflow server.
    Mlflow,
}

impl Command {
    /// Every command, in the order of the help.
    pub const ALL: [Command; 9] = [
        Command::Train,
        Command::Evaluate,
        Command::Infer,
        Command::Config,
        Command::Runs,
        Command::Compare,
        Command::Report,
        Command::Sweep,
        Command::Mlflow,
    ];

    /// The command's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Command::Train => "train",
            Command::Evaluate => "evaluate",
            Command::Infer => "infer",
            Command::Config => "config",
            Command::Runs => "runs",
            Command::Compare => "compare",
            Command::Report => "report",
            Command::Sweep => "sweep",
            Command::Mlflow => "mlflow",
        }
    }

    /// The command named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Command::ALL.into_iter().find(|command| command.name() == name)
    }

    /// The command's clap definition: its flags, config keys and help.
    fn definition(self, program: &Program) -> clap::Command {
        match self {
            Command::Runs => return runs(program),
            Command::Compare => return compare(program),
            Command::Report => return report(program),
            Command::Mlflow => return mlflow(program),
            _ => {}
        }
        let config = Arg::new(CONFIG)
            .value_name("CONFIG")
            .value_parser(value_parser!(PathBuf))
            .value_hint(ValueHint::FilePath)
            .help("A config file: .yaml, .yml, .json or .toml, or a run's runner.yaml");
        let split = Arg::new(SPLIT).long("split").value_name("S");
        let checkpoint = |help: &'static str| {
            Arg::new("checkpoint")
                .long("checkpoint")
                .value_name("PATH")
                .value_hint(ValueHint::FilePath)
                .help_heading(CONFIG_KEYS)
                .help(help)
        };
        let (about, description, args, examples) = match self {
            Command::Train => (
                "Train; writes the run directory and prints its path",
                TRAIN,
                vec![
                    config,
                    Arg::new(OVERWRITE)
                        .long("overwrite")
                        .action(ArgAction::SetTrue)
                        .help("Start again in a run directory that holds checkpoints (they are moved aside)"),
                    Arg::new(PAUSE_AT)
                        .long("pause-at")
                        .value_name("N")
                        .value_parser(value_parser!(u64).range(1..))
                        .help("Pause after epoch N (step N in a step budget); --resume goes on exactly"),
                ],
                TRAIN_EXAMPLES,
            ),
            Command::Evaluate => (
                "Evaluate a checkpoint; prints {split: {metric: value}} as JSON",
                EVALUATE,
                vec![
                    config,
                    split
                        .action(ArgAction::Append)
                        .help("A split to evaluate; default: every split that is not trained on"),
                    checkpoint("The checkpoint whose weights are evaluated (the `checkpoint` key)"),
                ],
                EVALUATE_EXAMPLES,
            ),
            Command::Infer => (
                "Write a checkpoint's predictions for a split as CSV",
                INFER,
                vec![
                    config,
                    split
                        .required(true)
                        .help("The split whose predictions are written"),
                    Arg::new(OUTPUT)
                        .long("output")
                        .value_name("FILE.csv")
                        .required(true)
                        .value_parser(value_parser!(PathBuf))
                        .value_hint(ValueHint::FilePath)
                        .help("Where to write the CSV (atomically)"),
                    checkpoint("The checkpoint whose weights are used (the `checkpoint` key)"),
                ],
                INFER_EXAMPLES,
            ),
            Command::Runs | Command::Compare | Command::Report | Command::Mlflow => {
                unreachable!("defined on their own")
            }
            Command::Sweep => (
                "Train every combination of some keys' values, N at once; skips finished trials",
                SWEEP_TEXT,
                vec![
                    config,
                    Arg::new(AXES)
                        .value_name("KEY=V1,V2")
                        .num_args(0..)
                        .help("A swept key and its values: optim.lr=0.1,0.01  model.hidden=[64],[128,64]  seed=range(1,4)  optim.lr=loguniform(1e-4,0.1)"),
                    Arg::new(JOBS)
                        .long("jobs")
                        .value_name("N")
                        .value_parser(value_parser!(usize))
                        .default_value("1")
                        .help("Trials trained at once; the cores are split between them"),
                    Arg::new(TRIALS)
                        .long("trials")
                        .value_name("N")
                        .value_parser(value_parser!(u64).range(1..))
                        .help("Trials sampled per grid point, over the distributions (--seed sets the draws)"),
                    Arg::new(SAMPLER)
                        .long("sampler")
                        .value_name("SAMPLER")
                        .value_parser(["tpe", "random"])
                        .default_value("tpe")
                        .help("How trials are sampled: tpe (random for the first 10, then adaptive) or random"),
                    Arg::new(PRUNE)
                        .long("prune")
                        .value_name("PRUNER")
                        .value_parser(["asha"])
                        .help("Stop bad trials early: asha pauses each at rungs and promotes the top 1/η"),
                    Arg::new(MIN_EPOCHS)
                        .long("min-epochs")
                        .value_name("N")
                        .value_parser(value_parser!(u64))
                        .help("ASHA's first rung, in epochs (default 1); the last is the `epochs` budget"),
                    Arg::new(MIN_STEPS)
                        .long("min-steps")
                        .value_name("N")
                        .value_parser(value_parser!(u64))
                        .help("ASHA's first rung in a `steps` budget; rungs end with the epoch that reaches them"),
                    Arg::new(REDUCTION)
                        .long("reduction")
                        .value_name("η")
                        .value_parser(value_parser!(u64))
                        .default_value("3")
                        .help("ASHA's η: rungs grow η times, and the top 1/η of each go on"),
                    Arg::new(DRY_RUN)
                        .long("dry-run")
                        .action(ArgAction::SetTrue)
                        .help("List the trials (and which are finished) without training"),
                ],
                SWEEP_EXAMPLES,
            ),
            Command::Config => (
                "Print the resolved config and identity (the runner.yaml document)",
                CONFIG_TEXT,
                vec![
                    config,
                    Arg::new(JSON)
                        .long("json")
                        .action(ArgAction::SetTrue)
                        .help("Print JSON instead of YAML"),
                ],
                CONFIG_EXAMPLES,
            ),
        };
        let usage = usage(program.name, self.name(), &args);
        let notes = if self == Command::Config { CONFIG_NOTES } else { "" };
        let after = format!("{notes}{COMMAND_OVERRIDES}\n\n{}", examples_section(examples));
        let documented: Vec<String> = args
            .iter()
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect();
        let keys = program
            .keys
            .iter()
            .filter(|(key, _)| !documented.contains(key))
            .map(|(key, default)| {
                Arg::new(key.clone())
                    .long(key.clone())
                    .value_name("VALUE")
                    .help_heading(ALL_KEYS)
                    .help(default.clone())
            });
        with_help(
            clap::Command::new(self.name())
                .about(about)
                .before_help(program.fill(description))
                .override_usage(usage)
                .args(args)
                .args(keys)
                .after_help(program.fill(&after)),
            "Print help",
        )
    }
}

/// The ids of the flags of `runs`.
pub const ROOT: &str = "root";
pub const FILTER: &str = "filter";
pub const SORT: &str = "sort";
pub const COLUMNS: &str = "columns";
pub const ONLY_CHANGED: &str = "only-changed";
pub const GROUP_BY: &str = "group-by";
pub const FORMAT: &str = "format";

/// `danling runs`.
fn runs(program: &Program) -> clap::Command {
    let args = [
        Arg::new(ROOT)
            .value_name("PROJECT_ROOT")
            .value_parser(value_parser!(PathBuf))
            .value_hint(ValueHint::DirPath)
            .help("The project root whose run directories are listed (default: experiments)"),
        Arg::new(FILTER)
            .long("filter")
            .value_name("EXPR")
            .allow_hyphen_values(true)
            .help("Keep the runs EXPR holds for: `optim.lr < 0.01 and val.accuracy > 0.9` (see below)"),
        Arg::new(SORT)
            .long("sort")
            .value_name("KEY")
            .allow_hyphen_values(true)
            .help("Sort by KEY (a column, config key or split.metric); -KEY sorts descending"),
        Arg::new(COLUMNS)
            .long("columns")
            .value_name("KEYS")
            .action(ArgAction::Append)
            .help("More columns: config keys or split.metric values, comma-separated"),
        Arg::new(ONLY_CHANGED)
            .long("only-changed")
            .action(ArgAction::SetTrue)
            .help("Add a column for each config key that differs across the runs listed"),
        Arg::new(GROUP_BY)
            .long("group-by")
            .value_name("KEY")
            .help("One row per value of KEY (group, experiment_name, …): its best run, and how many"),
        Arg::new(FORMAT)
            .long("format")
            .value_name("FORMAT")
            .value_parser(["table", "json", "csv", "md"])
            .default_value("table")
            .help("table (fits the terminal), json, csv or md"),
    ];
    with_help(
        clap::Command::new("runs")
            .about("List the runs of a project root: status, progress, best and last scores")
            .before_help(RUNS_TEXT)
            .override_usage(program.fill(
                "{app} runs [PROJECT_ROOT] [--filter EXPR] [--sort [-]KEY] [--columns KEYS]... \
                 [--only-changed] [--group-by KEY] [--format FORMAT]",
            ))
            .args(args)
            .after_help(program.fill(&format!("{RUNS_NOTES}\n\n{}", examples_section(RUNS_EXAMPLES)))),
        "Print help",
    )
}

/// The ids of the arguments of `compare`.
pub const RUNS_ARG: &str = "runs";
pub const PROJECT_ROOT: &str = "project-root";
pub const METRIC: &str = "metric";

/// `--project-root DIR`, where `compare` and `report` look run ids up.
fn project_root() -> Arg {
    Arg::new(PROJECT_ROOT)
        .long("project-root")
        .alias("project_root")
        .value_name("DIR")
        .value_parser(value_parser!(PathBuf))
        .value_hint(ValueHint::DirPath)
        .help("Where run ids are looked up (default: experiments)")
}

/// `danling compare`.
/// The id of `mlflow`'s action.
pub const ACTION: &str = "action";

fn mlflow(program: &Program) -> clap::Command {
    let args = [
        Arg::new(ACTION)
            .value_name("ACTION")
            .value_parser(["sync"])
            .required(true)
            .help("sync: send what the MLflow run lacks (the run, params, points, final status)"),
        Arg::new(RUNS_ARG)
            .value_name("RUN")
            .num_args(1..)
            .required(true)
            .help("Runs: run directories, or ids (or id prefixes) under the project root"),
        project_root(),
    ];
    with_help(
        clap::Command::new("mlflow")
            .about("Send runs' points and status to the MLflow server of their `mlflow` section")
            .before_help(MLFLOW_TEXT)
            .override_usage(program.fill("{app} mlflow sync RUN... [--project-root DIR]"))
            .args(args)
            .after_help(program.fill(&examples_section(MLFLOW_EXAMPLES))),
        "Print help",
    )
}

fn compare(program: &Program) -> clap::Command {
    let args = [
        Arg::new(RUNS_ARG)
            .value_name("RUN")
            .num_args(2..)
            .required(true)
            .help("Two or more runs: run directories, or ids (or id prefixes) under the project root"),
        project_root(),
        Arg::new(METRIC)
            .long("metric")
            .value_name("SPLIT.METRIC")
            .help("The metric plotted over the index (default: the first run's score, val.loss say)"),
    ];
    with_help(
        clap::Command::new("compare")
            .about("Compare runs: the config keys that differ, commits, best and last results, a plot")
            .before_help(COMPARE_TEXT)
            .override_usage(
                program.fill("{app} compare RUN RUN... [--project-root DIR] [--metric SPLIT.METRIC]"),
            )
            .args(args)
            .after_help(program.fill(&examples_section(COMPARE_EXAMPLES))),
        "Print help",
    )
}

/// The ids of the arguments of `sweep`.
pub const AXES: &str = "axes";
pub const JOBS: &str = "jobs";
pub const DRY_RUN: &str = "dry-run";
pub const TRIALS: &str = "trials";
pub const SAMPLER: &str = "sampler";
pub const PRUNE: &str = "prune";
pub const MIN_EPOCHS: &str = "min-epochs";
pub const MIN_STEPS: &str = "min-steps";
pub const REDUCTION: &str = "reduction";

/// The id of the sources of `report`.
pub const SOURCES: &str = "sources";

/// `danling report`.
fn report(program: &Program) -> clap::Command {
    let args = [
        Arg::new(SOURCES)
            .value_name("PROJECT_ROOT | RUN")
            .num_args(0..)
            .help(
                "A project root (default: experiments), or runs: run directories or ids under --project-root",
            ),
        Arg::new(OUTPUT)
            .long("output")
            .value_name("FILE.html")
            .value_parser(value_parser!(PathBuf))
            .value_hint(ValueHint::FilePath)
            .default_value("report.html")
            .help("Where to write the report (atomically)"),
        project_root(),
    ];
    with_help(
        clap::Command::new("report")
            .about("Write one self-contained HTML report: the runs table, charts, configs")
            .before_help(REPORT_TEXT)
            .override_usage(
                program
                    .fill("{app} report [PROJECT_ROOT | RUN...] [--output FILE.html] [--project-root DIR]"),
            )
            .args(args)
            .after_help(program.fill(&examples_section(REPORT_EXAMPLES))),
        "Print help",
    )
}

/// The whole command line of `program`: every command, `completions` and clap's `help`.
pub fn app(program: &Program) -> clap::Command {
    let completions = clap::Command::new(COMPLETIONS)
        .about("Print the completion script of a shell (bash, zsh or fish)")
        .before_help(COMPLETIONS_TEXT)
        .arg(
            Arg::new(SHELL)
                .value_name("SHELL")
                .required(true)
                .value_parser(SHELLS)
                .help("The shell"),
        )
        .after_help(program.fill(&examples_section(COMPLETIONS_EXAMPLES)));
    let app = clap::Command::new(program.name)
        .version(crate::VERSION)
        .before_help(format!("{}\n\n{}", program.about, program.fill(TOP)))
        .override_usage(program.fill(&format!("{{app}} <COMMAND> [CONFIG] {OVERRIDES}")))
        .subcommands(Command::ALL.map(|command| command.definition(program)))
        .subcommand(with_help(completions, "Print help"))
        .after_help(program.fill(&format!(
            "{TOP_OVERRIDES}\n\n{}\n\n{EXIT_CODES}",
            examples_section(TOP_EXAMPLES)
        )));
    with_help(app, "Print help (after a command: that command's help)")
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('V')
                .long("version")
                .action(ArgAction::Version)
                .help("Print the version"),
        )
}

/// `command` with the layout of every help text and, after its other arguments, an explicit
/// `-h, --help` described by `help`.
fn with_help(command: clap::Command, help: &'static str) -> clap::Command {
    command.help_template(TEMPLATE).disable_help_flag(true).arg(
        Arg::new("help")
            .short('h')
            .long("help")
            .action(ArgAction::Help)
            .help(help),
    )
}

/// An `Examples:` section of a help text.
fn examples_section(lines: &[&str]) -> String {
    let mut section = "Examples:".to_owned();
    for line in lines {
        section += "\n  ";
        section += line;
    }
    section
}

/// Whether `arg` is a config key: listed with the command, parsed as an override.
pub fn is_config_key(arg: &Arg) -> bool {
    matches!(arg.get_help_heading(), Some(CONFIG_KEYS | ALL_KEYS))
}

/// The usage line of command `name` with arguments `args`: the config file, the config keys, the
/// flags (optional ones bracketed, repeatable ones with `...`), then the overrides.
fn usage(program: &str, name: &str, args: &[Arg]) -> String {
    let value = |arg: &Arg| {
        arg.get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| arg.get_id().to_string(), ToString::to_string)
    };
    let mut line = format!("{program} {name}");
    for arg in args.iter().filter(|arg| arg.is_positional()) {
        line += &format!(" [{}]", value(arg));
    }
    for arg in args
        .iter()
        .filter(|arg| arg.get_help_heading() == Some(CONFIG_KEYS))
    {
        line += &format!(" --{} {}", arg.get_long().unwrap_or_default(), value(arg));
    }
    for arg in args
        .iter()
        .filter(|arg| !arg.is_positional() && !is_config_key(arg))
    {
        let mut flag = format!("--{}", arg.get_long().unwrap_or_default());
        if arg.get_action().takes_values() {
            flag += &format!(" {}", value(arg));
        }
        if !arg.is_required_set() {
            flag = format!("[{flag}]");
        }
        if matches!(arg.get_action(), ArgAction::Append) {
            flag += "...";
        }
        line += &format!(" {flag}");
    }
    line + " " + OVERRIDES
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        app(&test_program()).debug_assert();
    }

    /// The program of the tests: danling's name, and the keys of a config without sections.
    pub(crate) fn test_program() -> Program {
        Program::new::<crate::NoSections>("danling", "A test program.")
    }

    #[test]
    fn usage_lines_come_from_the_flags() {
        let app = app(&test_program());
        let usage = |name: &str| {
            let command = app
                .find_subcommand(name)
                .map(|c| c.clone().render_usage().to_string());
            command.unwrap_or_default()
        };
        assert_eq!(
            usage("infer"),
            "Usage: danling infer [CONFIG] --checkpoint PATH --split S --output FILE.csv \
             [--key value | --key=value]..."
        );
        assert_eq!(
            usage("evaluate"),
            "Usage: danling evaluate [CONFIG] --checkpoint PATH [--split S]... \
             [--key value | --key=value]..."
        );
    }
}
