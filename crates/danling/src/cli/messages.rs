//! clap's errors as danling's: one line that names the argument at fault, without clap's usage and
//! tips (the help has them). A help or version request comes back as the text to print.

use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::args::{Invocation, UsageError};
use super::flags::{self, Program};

/// What clap's `err` means: the text of `--help` or `--version`, or a usage error. `command` is the
/// command whose arguments were being parsed, `None` before one was named.
pub fn clap_error(
    err: &clap::Error,
    program: &Program,
    command: Option<&str>,
) -> Result<Invocation, UsageError> {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            Ok(Invocation::Print(err.render().to_string()))
        }
        _ => Err(UsageError(message(err, program, command))),
    }
}

/// The one-line message of clap's error `err`.
fn message(err: &clap::Error, program: &Program, command: Option<&str>) -> String {
    let app = program.name;
    let string = |kind| match err.get(kind) {
        Some(ContextValue::String(value)) => Some(value.as_str()),
        _ => None,
    };
    let strings = |kind| match err.get(kind) {
        Some(ContextValue::Strings(values)) => values.join(", "),
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    // clap names a flag with its value (`--split <S>`), and a positional in brackets (`<SHELL>`);
    // the messages name the flag, and write values as the usage lines do (`--split S`, `SHELL`).
    let flag = |arg: &str| arg.split(' ').next().unwrap_or(arg).replace(['<', '>'], "");
    let help = match command {
        Some(command) => format!("run `{app} {command} --help`"),
        None => format!("run `{app} --help`"),
    };
    let arg = string(ContextKind::InvalidArg);
    match (err.kind(), arg, command) {
        (ErrorKind::InvalidSubcommand, _, _) => {
            let name = string(ContextKind::InvalidSubcommand).unwrap_or_default();
            let hint = match strings(ContextKind::SuggestedSubcommand) {
                suggested if !suggested.is_empty() => format!("did you mean `{suggested}`?"),
                _ => format!("commands: {}", command_names(program)),
            };
            format!("unknown command `{name}` ({hint}); {help}")
        }
        (ErrorKind::UnknownArgument, Some(arg), None) => {
            format!("expected a command before `{arg}`; {help}")
        }
        (ErrorKind::UnknownArgument, Some(arg), Some(_)) if arg.starts_with('-') => {
            format!("unknown flag `{arg}`; overrides are written --key value")
        }
        (ErrorKind::UnknownArgument, Some(arg), Some(command)) => {
            let one = positional(program, command);
            format!("unexpected argument `{arg}` (`{app} {command}` takes one {one}); {help}")
        }
        (ErrorKind::InvalidValue, Some(arg), _) => match string(ContextKind::InvalidValue) {
            Some("") | None => format!("`{}` needs a value", flag(arg)),
            Some(value) => {
                let valid = strings(ContextKind::ValidValue);
                format!(
                    "invalid value `{value}` for `{}` (possible values: {valid})",
                    flag(arg)
                )
            }
        },
        (ErrorKind::TooManyValues, Some(arg), _) => {
            let value = string(ContextKind::InvalidValue).unwrap_or_default();
            format!("flag `{}` takes no value (found `{value}`)", flag(arg))
        }
        (ErrorKind::MissingRequiredArgument, _, _) => {
            let missing = strings(ContextKind::InvalidArg).replace(['<', '>'], "");
            let who = command.map_or_else(|| app.to_owned(), |command| format!("{app} {command}"));
            format!("`{who}` needs {missing}; {help}")
        }
        (ErrorKind::ArgumentConflict, Some(arg), _) if string(ContextKind::PriorArg) == Some(arg) => {
            format!("`{}` can be given only once", flag(arg))
        }
        _ => first_line(err),
    }
}

/// The names of the commands, for the message of an unknown one.
fn command_names(program: &Program) -> String {
    let app = flags::app(program);
    let names: Vec<&str> = app.get_subcommands().map(clap::Command::get_name).collect();
    names.join(", ")
}

/// The value name of the positional argument of `command` (`CONFIG`, `SHELL`).
fn positional(program: &Program, command: &str) -> String {
    let app = flags::app(program);
    let name = app.find_subcommand(command).and_then(|command| {
        let arg = command.get_positionals().next()?;
        Some(arg.get_value_names()?.first()?.to_string())
    });
    name.unwrap_or_else(|| "argument".to_owned())
}

/// The first line of clap's rendering of `err`, without its `error: ` prefix.
fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}
