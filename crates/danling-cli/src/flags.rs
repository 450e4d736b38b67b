//! The one table of the command line: the clap definitions of every command and its flags. The
//! arguments are split by it (which `--name`s are flags, and which of those take a value), parsed by
//! it, and `--help` and the shell completions are rendered from it.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ValueHint, value_parser};

/// The id of the optional config file; a command that has it takes config overrides.
pub const CONFIG: &str = "config";
/// The id of `--json`.
pub const JSON: &str = "json";
/// The id of `--overwrite`.
pub const OVERWRITE: &str = "overwrite";
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Train the built-in task.
    Train,
    /// Evaluate a checkpoint.
    Evaluate,
    /// Write predictions of a checkpoint.
    Infer,
    /// Print the resolved config and identity.
    Config,
}

impl Command {
    /// Every command, in the order of the help.
    pub const ALL: [Command; 4] = [Command::Train, Command::Evaluate, Command::Infer, Command::Config];

    /// The command's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Command::Train => "train",
            Command::Evaluate => "evaluate",
            Command::Infer => "infer",
            Command::Config => "config",
        }
    }

    /// The command named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Command::ALL.into_iter().find(|command| command.name() == name)
    }

    /// The command's clap definition: its flags, config keys and help.
    fn definition(self) -> clap::Command {
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
                        .help("A split to evaluate (train, val, or test for mnist); default: val"),
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
                        .help("The split (train, val, or test for mnist)"),
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
        let usage = usage(self.name(), &args);
        let notes = if self == Command::Config { CONFIG_NOTES } else { "" };
        let after = format!("{notes}{COMMAND_OVERRIDES}\n\n{}", examples_section(examples));
        with_help(
            clap::Command::new(self.name())
                .about(about)
                .before_help(description)
                .override_usage(usage)
                .args(args)
                .after_help(after),
            "Print help",
        )
    }
}

/// The whole command line: every command, `completions` and clap's `help`.
pub fn app() -> clap::Command {
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
        .after_help(examples_section(COMPLETIONS_EXAMPLES));
    let app = clap::Command::new("danling")
        .version(danling::VERSION)
        .before_help(TOP)
        .override_usage(format!("danling <COMMAND> [CONFIG] {OVERRIDES}"))
        .subcommands(Command::ALL.map(Command::definition))
        .subcommand(with_help(completions, "Print help"))
        .after_help(format!(
            "{TOP_OVERRIDES}\n\n{}\n\n{EXIT_CODES}",
            examples_section(TOP_EXAMPLES)
        ));
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

/// Whether `arg` is a config key: documented with the command, parsed as an override.
pub fn is_config_key(arg: &Arg) -> bool {
    arg.get_help_heading() == Some(CONFIG_KEYS)
}

/// The usage line of command `name` with arguments `args`: the config file, the config keys, the
/// flags (optional ones bracketed, repeatable ones with `...`), then the overrides.
fn usage(name: &str, args: &[Arg]) -> String {
    let value = |arg: &Arg| {
        arg.get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| arg.get_id().to_string(), ToString::to_string)
    };
    let mut line = format!("danling {name}");
    for arg in args.iter().filter(|arg| arg.is_positional()) {
        line += &format!(" [{}]", value(arg));
    }
    for arg in args.iter().filter(|arg| is_config_key(arg)) {
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

/// The description of the top-level help.
const TOP: &str = "\
danling sets up everything around a training loop on burn: config with files and overrides,
experiment identity from git and the config, the run directory, results and checkpoints.
The built-in task trains an MLP on a small tabular data set (see the `model` and `data` keys).";

/// The override section of the top-level help.
const TOP_OVERRIDES: &str = "\
Config overrides:
  Every --key value or --key=value that is not a flag of the command sets a config key, wherever
  it is on the line. Dotted keys reach into sections (--optim.lr 0.01). Values are parsed as
  YAML, so --model.hidden [64,32] is a list. A --key with no value means true.
  Precedence: defaults < CONFIG file < overrides.";

/// The examples of the top-level help.
const TOP_EXAMPLES: &[&str] = &[
    "danling train examples/digits.yaml --optim.lr 0.01 --epochs=10",
    "danling config examples/digits.yaml --model.hidden [64,32] --json",
    "danling evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors --split val",
    "danling train RUN/runner.yaml --resume",
    "danling help train",
];

/// The last lines of the top-level help.
const EXIT_CODES: &str = "\
Exit codes: 0 on success, 2 for a usage, config or input error, 1 for any other failure.";

/// The override paragraph of every command's help.
const COMMAND_OVERRIDES: &str = "\
Every other --key value or --key=value sets a config key (--optim.lr 0.01); values are YAML
and a --key alone means true. `danling --help` has the details.";

/// The description of `danling train`.
const TRAIN: &str = "\
Train the built-in task: an MLP (model.hidden, model.dropout, model.activation) on the data set
named by data.name (digits, breast_cancer, diabetes, synthetic, csv, mnist). Writes the run
directory (runner.yaml, run.log, results.json, latest.json, best.json, checkpoints/) and prints
its path on the last line of stdout.";

/// The examples of `danling train`.
const TRAIN_EXAMPLES: &[&str] = &[
    "danling train examples/digits.yaml",
    "danling train examples/digits.yaml --optim.lr 0.01 --model.hidden [128,64] --epochs=20",
    "danling train RUN/runner.yaml --resume         (continue the run from its latest checkpoint)",
    "danling train RUN/runner.yaml --checkpoint RUN/checkpoints/epoch-3.safetensors",
];

/// The description of `danling evaluate`.
const EVALUATE: &str = "\
Evaluate a checkpoint on the built-in task's splits and print {split: {metric: value}} as JSON.";

/// The examples of `danling evaluate`.
const EVALUATE_EXAMPLES: &[&str] = &[
    "danling evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors",
    "danling evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors --split train \\",
    "                 --split val",
];

/// The description of `danling infer`.
const INFER: &str = "\
Write a checkpoint's predictions for one split as CSV, one row per sample: index, target (when
the split has targets), then prob_0 ... prob_{C-1} for classification or pred for regression.";

/// The examples of `danling infer`.
const INFER_EXAMPLES: &[&str] = &[
    "danling infer RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors --split val \\",
    "              --output val.csv",
];

/// The description of `danling config`.
const CONFIG_TEXT: &str = "\
Print the runner.yaml document of a config: the full resolved config (every key, defaults
included) and the run's identity (ids, name, run directory). Nothing is written.";

/// What the help of `danling config` says before the overrides.
const CONFIG_NOTES: &str = "\
The identity is computed after the overrides: overriding a hashed key (optim.lr) changes
run_id; overriding an ignored key (log_interval, project_root) does not.

";

/// The examples of `danling config`.
const CONFIG_EXAMPLES: &[&str] = &[
    "danling config examples/digits.yaml --optim.lr 0.01",
    "danling config RUN/runner.yaml --json",
];

/// The description of `danling completions`.
const COMPLETIONS_TEXT: &str = "\
Print the completion script of a shell: the commands, their flags and the documented config
keys. Other config keys are not completed.";

/// The examples of `danling completions`.
const COMPLETIONS_EXAMPLES: &[&str] = &[
    "danling completions bash > ~/.local/share/bash-completion/completions/danling",
    "danling completions zsh > ~/.zfunc/_danling        (with ~/.zfunc on $fpath)",
    "danling completions fish > ~/.config/fish/completions/danling.fish",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        app().debug_assert();
    }

    #[test]
    fn usage_lines_come_from_the_flags() {
        let app = app();
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
