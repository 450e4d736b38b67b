//! Help texts.

use crate::args::Command;

/// The top-level help.
pub const TOP: &str = "\
danling sets up everything around a training loop on burn: config with files and overrides,
experiment identity from git and the config, the run directory, results and checkpoints.
The built-in task trains an MLP on a small tabular data set (see the `model` and `data` keys).

Usage: danling <COMMAND> [CONFIG] [--key value | --key=value]...

Commands:
  train     Train; writes the run directory and prints its path
  evaluate  Evaluate a checkpoint; prints {split: {metric: value}} as JSON
  infer     Write a checkpoint's predictions for a split as CSV
  config    Print the resolved config and identity (the runner.yaml document)

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

/// The help of `danling train`.
pub const TRAIN: &str = "\
Train the built-in task: an MLP (model.hidden, model.dropout, model.activation) on the data set
named by data.name (digits, breast_cancer, diabetes, synthetic, csv, mnist). Writes the run
directory (runner.yaml, run.log, results.json, latest.json, best.json, checkpoints/) and prints
its path on the last line of stdout.

Usage: danling train [CONFIG] [--key value | --key=value]... [--overwrite]

Arguments:
  [CONFIG]  A config file: .yaml, .yml, .json or .toml, or a run's runner.yaml

Options:
      --overwrite  Start again in a run directory that holds checkpoints (they are moved aside)
  -h, --help       Print help
";

/// The help of `danling evaluate`.
pub const EVALUATE: &str = "\
Evaluate a checkpoint on the built-in task's splits and print {split: {metric: value}} as JSON.

Usage: danling evaluate [CONFIG] --checkpoint PATH [--split S]... [--key value]...

Options:
      --checkpoint PATH  The checkpoint whose weights are evaluated
      --split S          A split to evaluate (train, val, or test for mnist); default: val
  -h, --help             Print help
";

/// The help of `danling infer`.
pub const INFER: &str = "\
Write a checkpoint's predictions for one split as CSV, one row per sample: index, target (when
the split has targets), then prob_0 ... prob_{C-1} for classification or pred for regression.

Usage: danling infer [CONFIG] --checkpoint PATH --split S --output FILE.csv [--key value]...

Options:
      --checkpoint PATH  The checkpoint whose weights are used
      --split S          The split (train, val, or test for mnist)
      --output FILE.csv  Where to write the CSV (atomically)
  -h, --help             Print help
";

/// The help text of a command, or the top-level one.
pub fn text(command: Option<Command>) -> &'static str {
    match command {
        None => TOP,
        Some(Command::Train) => TRAIN,
        Some(Command::Evaluate) => EVALUATE,
        Some(Command::Infer) => INFER,
        Some(Command::Config) => CONFIG,
    }
}
