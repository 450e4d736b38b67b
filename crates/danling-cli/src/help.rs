//! Help texts.

use crate::args::Command;

/// The top-level help.
pub const TOP: &str = "\
danling sets up everything around a training loop on burn: config with files and overrides,
experiment identity from git and the config, and the run directory.

Usage: danling <COMMAND> [CONFIG] [--key value | --key=value]...

Commands:
  config  Print the resolved config and identity (the runner.yaml document)

Options:
  -h, --help     Print help (after a command: that command's help)
  -V, --version  Print the version

Config overrides:
  Every --key value or --key=value that is not a flag of the command sets a config key.
  Dotted keys reach into sections (--optim.lr 0.01). Values are parsed as YAML, so
  --model.hidden [64,32] is a list. A --key with no value means true.
  Precedence: defaults < CONFIG file < overrides.

Exit codes: 0 on success, 2 for a usage, config or input error, 1 for any other failure.
";

/// The help of `danling config`.
pub const CONFIG: &str = "\
Print the runner.yaml document of a config: the full resolved config (every key, defaults
included) and the run's identity (ids, name, run directory). Nothing is written.

Usage: danling config [CONFIG] [--key value | --key=value]... [--json]

Arguments:
  [CONFIG]  A config file: .yaml, .yml, .json or .toml, or a run's runner.yaml

Options:
      --json  Print JSON instead of YAML
  -h, --help  Print help

The identity is computed after the overrides: overriding a hashed key (optim.lr) changes
run_id; overriding an ignored key (log_interval, project_root) does not.
";

/// The help text of a command, or the top-level one.
pub fn text(command: Option<Command>) -> &'static str {
    match command {
        None => TOP,
        Some(Command::Config) => CONFIG,
    }
}
