//! Command-line parsing: the command, its flags (recognised anywhere on the line), one optional config
//! file, and every other `--key value` / `--key=value` as a config override.

use std::path::PathBuf;

use danling::Override;

/// The commands danling has.
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

/// A flag of a command: its name and whether it takes a value.
struct Flag {
    name: &'static str,
    takes_value: bool,
}

const JSON: Flag = Flag {
    name: "json",
    takes_value: false,
};
const OVERWRITE: Flag = Flag {
    name: "overwrite",
    takes_value: false,
};
const SPLIT: Flag = Flag {
    name: "split",
    takes_value: true,
};
const OUTPUT: Flag = Flag {
    name: "output",
    takes_value: true,
};

impl Command {
    /// The command's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Command::Train => "train",
            Command::Evaluate => "evaluate",
            Command::Infer => "infer",
            Command::Config => "config",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "train" => Some(Command::Train),
            "evaluate" => Some(Command::Evaluate),
            "infer" => Some(Command::Infer),
            "config" => Some(Command::Config),
            _ => None,
        }
    }

    /// The flags that belong to this command (without `--help`).
    fn flags(self) -> &'static [Flag] {
        match self {
            Command::Train => &[OVERWRITE],
            Command::Evaluate => &[SPLIT],
            Command::Infer => &[SPLIT, OUTPUT],
            Command::Config => &[JSON],
        }
    }
}

/// What the user asked for.
#[derive(Debug)]
pub enum Invocation {
    /// Print the top-level help, or a command's help.
    Help(Option<Command>),
    /// Print the version.
    Version,
    /// Run a command.
    Run(Args),
}

/// A command with its parsed arguments.
#[derive(Debug)]
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
    /// `--output`.
    pub output: Option<PathBuf>,
}

/// A usage error: the message names the argument at fault.
#[derive(Debug)]
pub struct UsageError(pub String);

/// Parses the arguments after the program name.
pub fn parse(argv: &[String]) -> Result<Invocation, UsageError> {
    let Some(first) = argv.first() else {
        return Ok(Invocation::Help(None));
    };
    match first.as_str() {
        "-h" | "--help" | "help" => {
            let command = argv.get(1).and_then(|name| Command::parse(name));
            return Ok(Invocation::Help(command));
        }
        "-V" | "--version" => return Ok(Invocation::Version),
        _ => {}
    }
    let command = Command::parse(first).ok_or_else(|| {
        if first.starts_with('-') {
            UsageError(format!(
                "expected a command before `{first}`; run `danling --help`"
            ))
        } else {
            UsageError(format!(
                "unknown command `{first}` (commands: train, evaluate, infer, config); run `danling --help`"
            ))
        }
    })?;
    let rest = &argv[1..];
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Invocation::Help(Some(command)));
    }

    let mut args = Args {
        command,
        config: None,
        overrides: Vec::new(),
        json: false,
        overwrite: false,
        splits: Vec::new(),
        output: None,
    };
    let mut i = 0;
    while i < rest.len() {
        let arg = &rest[i];
        i += 1;
        if let Some(body) = arg.strip_prefix("--") {
            let (key, inline) = match body.split_once('=') {
                Some((key, value)) => (key, Some(value.to_owned())),
                None => (body, None),
            };
            if let Some(flag) = command.flags().iter().find(|f| f.name == key) {
                let value = match (flag.takes_value, inline) {
                    (false, Some(_)) => return Err(UsageError(format!("flag `--{key}` takes no value"))),
                    (false, None) => None,
                    (true, Some(value)) => Some(value),
                    (true, None) => match rest.get(i) {
                        Some(next) if !next.starts_with("--") => {
                            i += 1;
                            Some(next.clone())
                        }
                        _ => return Err(UsageError(format!("flag `--{key}` needs a value"))),
                    },
                };
                set_flag(&mut args, key, value);
                continue;
            }
            if key.is_empty() {
                return Err(UsageError(format!(
                    "bad argument `{arg}`: expected --key value or --key=value"
                )));
            }
            // `--key` alone (at the end, or before another `--flag`) means `--key true`.
            let value = match inline {
                Some(value) => value,
                None if rest.get(i).is_some_and(|next| !next.starts_with("--")) => {
                    i += 1;
                    rest[i - 1].clone()
                }
                None => "true".to_owned(),
            };
            let item = Override::parse(key, &value).map_err(|e| UsageError(e.to_string()))?;
            args.overrides.push(item);
        } else if arg.starts_with('-') && arg.len() > 1 {
            return Err(UsageError(format!(
                "unknown flag `{arg}`; overrides are written --key value"
            )));
        } else if let Some(previous) = &args.config {
            return Err(UsageError(format!(
                "unexpected argument `{arg}`: the config file is already `{}`",
                previous.display()
            )));
        } else {
            args.config = Some(PathBuf::from(arg));
        }
    }
    Ok(Invocation::Run(args))
}

fn set_flag(args: &mut Args, key: &str, value: Option<String>) {
    match (key, value) {
        ("json", _) => args.json = true,
        ("overwrite", _) => args.overwrite = true,
        ("split", Some(value)) => args.splits.push(value),
        ("output", Some(value)) => args.output = Some(PathBuf::from(value)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(line: &str) -> Args {
        let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        match parse(&argv) {
            Ok(Invocation::Run(args)) => args,
            other => panic!("{other:?}"),
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
        let args = run("infer c.yaml --output out.csv --split val");
        assert_eq!(args.output, Some(PathBuf::from("out.csv")));
        assert!(run("train --overwrite").overwrite);
    }

    #[test]
    fn negative_numbers_are_values_not_flags() {
        let args = run("config --optim.lr -1");
        assert_eq!(args.overrides[0].value, json!(-1));
    }

    #[test]
    fn help_is_recognised_anywhere() {
        let argv: Vec<String> = ["config", "--seed", "1", "--help"].map(String::from).to_vec();
        assert!(matches!(
            parse(&argv),
            Ok(Invocation::Help(Some(Command::Config)))
        ));
    }

    #[test]
    fn usage_errors_name_the_argument() {
        let err = |line: &str| {
            let argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            match parse(&argv) {
                Err(UsageError(message)) => message,
                other => panic!("{other:?}"),
            }
        };
        assert!(err("frobnicate").contains("`frobnicate`"));
        assert!(err("config a.yaml b.yaml").contains("`b.yaml`"));
        assert!(err("config -x").contains("`-x`"));
        assert!(err("config --json=1").contains("`--json`"));
        assert!(err("infer --split").contains("`--split` needs a value"));
    }
}
