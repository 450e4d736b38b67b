//! Command-line parsing: the command, its flags (recognised anywhere on the line), one optional config
//! file, and every other `--key value` / `--key=value` as a config override.
//!
//! clap cannot collect unknown `--key value` pairs, so the arguments of a command that takes
//! overrides are split first, asking the command's clap definition ([`super::flags`]) which `--name`s
//! are its flags and which of those take a value. The flags and the config file go to clap; the rest
//! are the overrides, in the order given.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Override;
use clap_complete::Shell;

use super::flags::{self, COMPLETIONS, Command, Program, SHELL};

/// What the user asked for.
#[derive(Debug)]
pub enum Invocation {
    /// Print this text (a help text or the version) and exit 0.
    Print(String),
    /// Print the completion script of this shell.
    Completions(Shell),
    /// Run a command.
    Run(Box<Args>),
}

/// A command with its parsed arguments, every one typed: clap's matches are read in one place
/// ([`Matches`]), which turns a mismatch between the table and a read into an error, never a panic.
#[derive(Debug, Default)]
pub struct Args {
    /// The command.
    pub command: Command,
    /// The config file, if one was given.
    pub config: Option<PathBuf>,
    /// Config overrides, in command-line order.
    pub overrides: Vec<Override>,
    /// `--json`.
    pub json: bool,
    /// `--overwrite`.
    pub overwrite: bool,
    /// `--split`, in order.
    pub splits: Vec<String>,
    /// `--output` (`infer`'s CSV file, `report`'s page).
    pub output: Option<PathBuf>,
    /// The project root of `runs` (its positional argument).
    pub root: Option<PathBuf>,
    /// `--filter`.
    pub filter: Option<String>,
    /// `--sort`.
    pub sort: Option<String>,
    /// `--columns`, each occurrence's comma-separated keys in order.
    pub columns: Vec<String>,
    /// `--only-changed`.
    pub only_changed: bool,
    /// `--group-by`.
    pub group_by: Option<String>,
    /// `--format`.
    pub format: Option<String>,
    /// The runs of `compare`.
    pub runs: Vec<String>,
    /// `--project-root`.
    pub project_root: Option<PathBuf>,
    /// `--metric`.
    pub metric: Option<String>,
    /// The sources of `report`.
    pub sources: Vec<String>,
    /// The swept keys of `sweep`.
    pub axes: Vec<String>,
    /// The action of `mlflow` (`sync`).
    pub action: Option<String>,
    /// `--jobs`.
    pub jobs: Option<usize>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--pause-at` of `train`.
    pub pause_at: Option<u64>,
    /// How `sweep` searches: `--trials`, `--sampler`, `--prune`, `--min-epochs`, `--min-steps`
    /// and `--reduction`.
    pub search: crate::manage::Search,
}

/// clap's matches of one command, read by id and type. An id the command does not define reads as
/// absent; a value of another type than the table gives it is an error naming the id.
struct Matches<'a>(&'a clap::ArgMatches);

impl Matches<'_> {
    fn one<T: Clone + Send + Sync + 'static>(&self, id: &str) -> Result<Option<T>, UsageError> {
        match self.0.try_get_one::<T>(id) {
            Ok(value) => Ok(value.cloned()),
            Err(clap::parser::MatchesError::UnknownArgument { .. }) => Ok(None),
            Err(err) => Err(UsageError(format!("internal error reading `{id}`: {err}"))),
        }
    }

    fn many<T: Clone + Send + Sync + 'static>(&self, id: &str) -> Result<Vec<T>, UsageError> {
        match self.0.try_get_many::<T>(id) {
            Ok(values) => Ok(values.into_iter().flatten().cloned().collect()),
            Err(clap::parser::MatchesError::UnknownArgument { .. }) => Ok(Vec::new()),
            Err(err) => Err(UsageError(format!("internal error reading `{id}`: {err}"))),
        }
    }

    fn flag(&self, id: &str) -> Result<bool, UsageError> {
        Ok(self.one::<bool>(id)?.unwrap_or(false))
    }
}

/// A usage error: the message names the argument at fault.
#[derive(Debug)]
pub struct UsageError(pub String);

/// An override as written: the argument it came from, its key and its value (`true` for a bare
/// `--key`). It is parsed only after clap has accepted the rest, so that `--help` wins anywhere.
struct Pending {
    argument: String,
    key: String,
    value: String,
}

/// Parses the arguments after the program name.
pub fn parse(argv: impl IntoIterator<Item = OsString>, program: &Program) -> Result<Invocation, UsageError> {
    let argv = utf8(argv)?;
    let mut app = flags::app(program);
    if argv.is_empty() {
        return Ok(Invocation::Print(app.render_help().to_string()));
    }
    let command = app.find_subcommand(&argv[0]);
    let name = command.map(|command| command.get_name().to_owned());
    let (line, pending) = match command.filter(|command| takes_overrides(command)) {
        Some(command) => {
            let (flags, pending) = split(command, &argv[1..]);
            (std::iter::once(argv[0].clone()).chain(flags).collect(), pending)
        }
        None => (argv.clone(), Vec::new()),
    };
    let name_of_app = app.get_name().to_owned();
    let matches = match app.try_get_matches_from_mut(std::iter::once(name_of_app).chain(line)) {
        Ok(matches) => matches,
        Err(err) => return super::messages::clap_error(&err, program, name.as_deref()),
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(Invocation::Print(app.render_help().to_string()));
    };
    if name == COMPLETIONS {
        let shell = sub.try_get_one::<String>(SHELL).ok().flatten();
        let shell = shell.map_or("", String::as_str);
        return match shell.parse() {
            Ok(shell) => Ok(Invocation::Completions(shell)),
            Err(_) => Err(UsageError(format!("no completions for the shell `{shell}`"))),
        };
    }
    let command = Command::named(name)
        .ok_or_else(|| UsageError(format!("unknown command `{name}`; run `{} --help`", program.name)))?;
    let sub = Matches(sub);
    Ok(Invocation::Run(Box::new(Args {
        command,
        config: sub.one(flags::CONFIG)?,
        overrides: pending
            .into_iter()
            .map(parse_override)
            .collect::<Result<_, _>>()?,
        json: sub.flag(flags::JSON)?,
        overwrite: sub.flag(flags::OVERWRITE)?,
        splits: sub.many(flags::SPLIT)?,
        output: sub.one(flags::OUTPUT)?,
        root: sub.one(flags::ROOT)?,
        filter: sub.one(flags::FILTER)?,
        sort: sub.one(flags::SORT)?,
        columns: sub
            .many::<String>(flags::COLUMNS)?
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect(),
        only_changed: sub.flag(flags::ONLY_CHANGED)?,
        group_by: sub.one(flags::GROUP_BY)?,
        format: sub.one(flags::FORMAT)?,
        runs: sub.many(flags::RUNS_ARG)?,
        project_root: sub.one(flags::PROJECT_ROOT)?,
        metric: sub.one(flags::METRIC)?,
        sources: sub.many(flags::SOURCES)?,
        axes: sub.many(flags::AXES)?,
        action: sub.one(flags::ACTION)?,
        jobs: sub.one(flags::JOBS)?,
        dry_run: sub.flag(flags::DRY_RUN)?,
        pause_at: sub.one(flags::PAUSE_AT)?,
        search: crate::manage::Search {
            trials: sub.one(flags::TRIALS)?,
            sampler: sub.one(flags::SAMPLER)?,
            prune: sub.one(flags::PRUNE)?,
            min_epochs: sub.one(flags::MIN_EPOCHS)?,
            min_steps: sub.one(flags::MIN_STEPS)?,
            reduction: sub.one(flags::REDUCTION)?,
        },
    })))
}

/// The arguments as strings; one that is not UTF-8 is a usage error naming it: its position (1 is
/// the first argument after the program name) and its bytes, the invalid ones escaped (`\xE9`).
fn utf8(argv: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, UsageError> {
    argv.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            arg.into_string()
                .map_err(|arg| UsageError(format!("argument {} is not valid UTF-8: {arg:?}", i + 1)))
        })
        .collect()
}

/// Whether `command` takes config overrides: it is one that reads a config file.
fn takes_overrides(command: &clap::Command) -> bool {
    command.get_arguments().any(|arg| arg.get_id() == flags::CONFIG)
}

/// Splits the arguments of `command` (after its name) into those for clap, its flags with their
/// values and the config file, and the overrides, each in the order given.
///
/// A `--name` (or `--name=value`) that `command` defines as a flag is its flag; if it takes a value
/// and has none attached, the next argument is its value, unless that is a flag itself (then clap
/// reports the missing value). Every other `--key` is an override, and so are the config keys the
/// command documents; its value is the next argument unless that is a flag, `true` otherwise.
/// Everything else (the config file, `-h`, any stray `-x`) goes to clap as it is.
fn split(command: &clap::Command, argv: &[String]) -> (Vec<String>, Vec<Pending>) {
    let is_flag = |arg: &str| {
        arg.starts_with("--") || {
            let mut short = arg.strip_prefix('-').unwrap_or_default().chars();
            match (short.next(), short.next()) {
                (Some(c), None) => command.get_arguments().any(|a| a.get_short() == Some(c)),
                _ => false,
            }
        }
    };
    let (mut flags, mut pending) = (Vec::new(), Vec::new());
    let mut args = argv.iter().peekable();
    while let Some(arg) = args.next() {
        let Some(body) = arg.strip_prefix("--") else {
            flags.push(arg.clone());
            continue;
        };
        let (key, inline) = match body.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (body, None),
        };
        let flag = command
            .get_arguments()
            .find(|a| !key.is_empty() && a.get_long() == Some(key) && !flags::is_config_key(a));
        let mut next_value = || args.next_if(|next| !is_flag(next)).cloned();
        match flag {
            Some(flag) if flag.get_action().takes_values() && inline.is_none() => {
                flags.push(match next_value() {
                    Some(value) => format!("--{key}={value}"),
                    None => arg.clone(),
                });
            }
            Some(_) => flags.push(arg.clone()),
            None => pending.push(Pending {
                argument: arg.clone(),
                key: key.to_owned(),
                value: inline.or_else(next_value).unwrap_or_else(|| "true".to_owned()),
            }),
        }
    }
    (flags, pending)
}

/// The override of a `--key value` pair.
fn parse_override(pending: Pending) -> Result<Override, UsageError> {
    if pending.key.is_empty() {
        return Err(UsageError(format!(
            "bad argument `{}`: expected --key value or --key=value",
            pending.argument
        )));
    }
    Override::parse(&pending.key, &pending.value).map_err(|e| UsageError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_line(line: &str) -> Result<Invocation, UsageError> {
        parse(
            line.split_whitespace().map(OsString::from),
            &flags::tests::test_program(),
        )
    }

    fn run(line: &str) -> Args {
        match parse_line(line) {
            Ok(Invocation::Run(args)) => *args,
            other => panic!("{other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_line(line) {
            Err(UsageError(message)) => message,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn flags_overrides_and_the_config_file_can_come_in_any_order() {
        let args = run("config --optim.lr 0.01 --json c.yaml --seed=3 --resume --model.hidden [64,32]");
        assert!(args.json);
        assert_eq!(args.config, Some(PathBuf::from("c.yaml")));
        let pairs: Vec<(String, serde_json::Value)> = args
            .overrides
            .iter()
            .map(|o| (o.key(), o.value.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("optim.lr".into(), json!(0.01)),
                ("seed".into(), json!(3)),
                ("resume".into(), json!(true)),
                ("model.hidden".into(), json!([64, 32])),
            ]
        );
    }

    #[test]
    fn command_flags_take_values_and_repeat() {
        let args = run("evaluate --split val --checkpoint a.safetensors --split=train");
        assert_eq!(args.splits, ["val", "train"]);
        assert_eq!(args.overrides[0].key(), "checkpoint");
        let args = run("infer c.yaml --output out.csv --split val --checkpoint=x");
        assert_eq!(args.output, Some(PathBuf::from("out.csv")));
        assert_eq!(args.splits, ["val"]);
        assert!(run("train --overwrite").overwrite);
        assert!(!run("train").overwrite);
    }

    #[test]
    fn every_flag_of_every_command_reads_back_typed() {
        let args = run(
            "runs root --filter a=1 --sort -b --columns c,d --columns e --only-changed \
                        --group-by g --format csv",
        );
        assert_eq!(args.root, Some(PathBuf::from("root")));
        assert_eq!(
            (args.filter.as_deref(), args.sort.as_deref()),
            (Some("a=1"), Some("-b"))
        );
        assert_eq!(args.columns, ["c", "d", "e"]);
        assert!(args.only_changed);
        assert_eq!(
            (args.group_by.as_deref(), args.format.as_deref()),
            (Some("g"), Some("csv"))
        );
        let args = run("compare a b --project-root p --metric val.loss");
        assert_eq!(args.runs, ["a", "b"]);
        assert_eq!(args.project_root, Some(PathBuf::from("p")));
        assert_eq!(args.metric.as_deref(), Some("val.loss"));
        let args = run("report x y --output r.html");
        assert_eq!(args.sources, ["x", "y"]);
        assert_eq!(args.output, Some(PathBuf::from("r.html")));
        let args = run("sweep c.yaml optim.lr=1,2 seed=1,2 --jobs 3 --dry-run");
        assert_eq!(args.axes, ["optim.lr=1,2", "seed=1,2"]);
        assert_eq!((args.jobs, args.dry_run), (Some(3), true));
        let args = run("train c.yaml --overwrite");
        assert!(args.overwrite && args.runs.is_empty() && args.jobs.is_none());
    }

    #[test]
    fn a_flag_of_one_command_is_an_override_of_another() {
        let args = run("train --json --split val");
        assert!(!args.json && args.splits.is_empty());
        let keys: Vec<String> = args.overrides.iter().map(Override::key).collect();
        assert_eq!(keys, ["json", "split"]);
    }

    #[test]
    fn flag_values_may_start_with_a_dash() {
        assert_eq!(run("evaluate --split -x").splits, ["-x"]);
        assert_eq!(run("config --optim.lr -1").overrides[0].value, json!(-1));
    }

    #[test]
    fn help_is_recognised_anywhere_even_after_a_bare_key() {
        for line in [
            "config --seed 1 --help",
            "config --resume -h",
            "config --optim.lr .nan -h",
            "help config",
        ] {
            match parse_line(line) {
                Ok(Invocation::Print(text)) => {
                    assert!(text.contains("Usage: danling config"), "{line}: {text}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(matches!(parse_line("--version"), Ok(Invocation::Print(v)) if v.starts_with("danling ")));
    }

    #[test]
    fn completions_take_a_shell() {
        assert!(matches!(
            parse_line("completions zsh"),
            Ok(Invocation::Completions(Shell::Zsh))
        ));
        assert!(err("completions tcsh").contains("`tcsh`"));
        assert!(err("completions").contains("SHELL"));
    }

    #[test]
    fn non_utf8_arguments_are_named() {
        use std::os::unix::ffi::OsStringExt as _;
        let argv = ["config", "--name"].map(OsString::from).into_iter();
        let bad = OsString::from_vec(b"caf\xe9".to_vec());
        match parse(argv.chain([bad]), &flags::tests::test_program()) {
            Err(UsageError(message)) => assert_eq!(message, r#"argument 3 is not valid UTF-8: "caf\xE9""#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn usage_errors_name_the_argument() {
        assert!(err("frobnicate").contains("`frobnicate`"));
        assert!(err("trian").contains("did you mean `train`?"));
        assert!(err("--seed 3 config").contains("`--seed`"));
        assert!(err("config a.yaml b.yaml").contains("`b.yaml`"));
        assert!(err("config -x").contains("`-x`"));
        assert!(err("config --json=1").contains("`--json`"));
        assert!(err("config --=3").contains("`--=3`"));
        assert!(err("config --").contains("`--`"));
        assert!(err("infer --split").contains("`--split` needs a value"));
        assert!(err("infer --split --output x.csv").contains("`--split` needs a value"));
        assert!(err("infer --split a --split b --output x").contains("`--split`"));
        assert!(err("infer --output x.csv").contains("--split"));
        for line in ["frobnicate", "config a b", "infer", "completions bash zsh"] {
            assert!(!err(line).contains('\n'), "{line}");
        }
    }
}
