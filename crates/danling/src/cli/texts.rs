//! The words of the help texts: each command's description, notes and examples.

/// The description of `danling sweep`.
pub(crate) const SWEEP_TEXT: &str = "\
Train the Cartesian product of some config keys' values, or search them: each trial is an
ordinary run with its own id, its run_name suffixed with its values (lr=0.01_seed=1) and a `group`
shared by the sweep (set --group to name it). Grid values: a,b is a choice, brackets make one list
value, and range(start,stop[,step]) counts. Distributions, drawn --trials times per grid point:
uniform(a,b), loguniform(a,b), int(a,b) and choice(a,b,...) (Hydra's interval(a,b) and
tag(log, interval(a,b)) too), by TPE (random for the first 10) or --sampler random, from the
config's seed. --prune asha pauses each trial at rungs (--min-epochs, times --reduction, up to the
budget) and resumes only the top 1/η, exactly where they paused; the others end `pruned`. A file's
`sweep: {optim.lr: [0.1, 0.01]}` mapping sweeps too; a key on the command line replaces the file's.
The sweep's record, {project_root}/{group}.sweep.json, keeps its trials and rungs: running the same
sweep again skips the finished trials and goes on with the others. A stop signal (Ctrl-C) stops
every trial gracefully. Ends with the listing of the group's runs.";

/// The examples of `{app} sweep`.
pub(crate) const SWEEP_EXAMPLES: &[&str] = &[
    "{app} sweep config.yaml optim.lr=0.03,0.01,0.003 seed=1,2 --jobs 2",
    "{app} sweep config.yaml seed=range(1,6) --dry-run",
    "{app} sweep config.yaml 'optim.lr=loguniform(1e-4,0.1)' 'model.dropout=uniform(0,0.5)' --trials 30 --seed 1",
    "{app} sweep config.yaml 'optim.lr=loguniform(1e-4,0.1)' --trials 27 --prune asha --epochs 9 --jobs 2",
    "{app} sweep sweep.yaml --epochs 5             (the file's sweep: mapping, 5 epochs each)",
];

/// The description of `danling report`.
pub(crate) const REPORT_TEXT: &str = "\
Write one HTML file of a project's runs that opens from disk with nothing fetched: the runs
table (sortable, filterable), one chart per split and metric with a line per run (log scale for
lr), the best run per group, and each run's config with a link to the run it continued.";

/// The examples of `{app} report`.
pub(crate) const REPORT_EXAMPLES: &[&str] = &[
    "{app} report experiments --output report.html",
    "{app} report 1f2e 9a0b --output two.html          (runs by id prefix under experiments/)",
    "chromium --headless --screenshot=report.png --window-size=1400,2400 file://$PWD/report.html",
];

/// The description of `danling compare`.
pub(crate) const COMPARE_TEXT: &str = "\
Compare two or more runs side by side: the config keys whose values differ, the git commits and
dirty marks, the best and the last results, and one metric over the index, plotted in the terminal.";

/// The examples of `{app} compare`.
pub(crate) const COMPARE_EXAMPLES: &[&str] = &[
    "{app} compare experiments/DanLing-Run-1f2e… experiments/DanLing-Run-9a0b…",
    "{app} compare 1f2e 9a0b --metric val.accuracy      (id prefixes under experiments/)",
];

/// The description of `danling mlflow`.
pub(crate) const MLFLOW_TEXT: &str = "\
A run with an `mlflow: {uri, experiment}` section reports to that MLflow server as it trains. What
the server did not take (it was down, or answered an error) waits in the run's metrics.jsonl;
`sync` sends it: the MLflow run itself if it was never created, the config as params, the points
not sent yet (never one twice), and the final status of a run that ended.";

/// The examples of `{app} mlflow`.
pub(crate) const MLFLOW_EXAMPLES: &[&str] = &[
    "{app} mlflow sync experiments/DanLing-Run-1f2e…",
    "{app} mlflow sync 1f2e 9a0b        (id prefixes under experiments/)",
];

/// The description of `danling runs`.
pub(crate) const RUNS_TEXT: &str = "\
List every run directory of a project root (found by its runner.yaml): name, id, status
(running, finished, stopped, failed, or damaged with the reason), progress against the budget,
the best score and its index, the last score, the git commit (* when dirty), start time, time
trained, and the run it was continued from. A file that cannot be read marks its run damaged;
it never stops the listing.";

/// What the help of `{app} runs` says about filters.
pub(crate) const RUNS_NOTES: &str = "\
Filters: KEY OP VALUE, joined with and, or, not and parentheses. KEY is name, id, status, group,
a dotted config key (optim.lr) or a best-result value (val.accuracy); OP is = != < <= > >= or ~
(contains). Numbers compare as numbers; quote values with spaces ('big run').";

/// The examples of `{app} runs`.
pub(crate) const RUNS_EXAMPLES: &[&str] = &[
    "{app} runs",
    "{app} runs experiments --filter \"status = finished and optim.lr < 0.01\" --sort -val.accuracy",
    "{app} runs --only-changed --columns val.loss",
    "{app} runs --group-by group --format md",
];

/// The description of the top-level help.
pub(crate) const TOP: &str = "\
Built on danling, which sets up everything around a training loop on burn: config with files and
overrides, experiment identity from git and the config, the run directory, results and checkpoints.
`{app} config` prints every config key with its value; `{app} train --help` lists them.";

/// The override section of the top-level help.
pub(crate) const TOP_OVERRIDES: &str = "\
Config overrides:
  Every --key value or --key=value that is not a flag of the command sets a config key, wherever
  it is on the line. Dotted keys reach into sections (--optim.lr 0.01). Values are parsed as
  YAML, so --model.hidden [64,32] is a list. A --key with no value means true.
  Precedence: defaults < CONFIG file < overrides.";

/// The examples of the top-level help.
pub(crate) const TOP_EXAMPLES: &[&str] = &[
    "{app} train config.yaml --optim.lr 0.01 --epochs=10",
    "{app} config config.yaml --optim.lr 0.01 --json",
    "{app} evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors --split val",
    "{app} train RUN/runner.yaml --resume",
    "{app} help train",
];

/// The last lines of the top-level help.
pub(crate) const EXIT_CODES: &str = "\
Exit codes: 0 on success, 2 for a usage, config or input error, 1 for any other failure.";

/// The override paragraph of every command's help.
pub(crate) const COMMAND_OVERRIDES: &str = "\
Every other --key value or --key=value sets a config key (--optim.lr 0.01); values are YAML
and a --key alone means true. `{app} --help` has the details.";

/// The description of `danling train`.
pub(crate) const TRAIN: &str = "\
Train the model on its train splits, evaluating every split as it goes. Writes the run
directory (runner.yaml, run.log, results.json, latest.json, best.json, checkpoints/) and prints
its path on the last line of stdout.";

/// The examples of `{app} train`.
pub(crate) const TRAIN_EXAMPLES: &[&str] = &[
    "{app} train config.yaml",
    "{app} train config.yaml --optim.lr 0.01 --epochs=20",
    "{app} train RUN/runner.yaml --resume         (continue the run from its latest checkpoint)",
    "{app} train RUN/runner.yaml --checkpoint RUN/checkpoints/epoch-3.safetensors",
];

/// The description of `danling evaluate`.
pub(crate) const EVALUATE: &str = "\
Evaluate a checkpoint on the splits of {app} and print {split: {metric: value}} as JSON.";

/// The examples of `{app} evaluate`.
pub(crate) const EVALUATE_EXAMPLES: &[&str] = &[
    "{app} evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors",
    "{app} evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors --split train \\",
    "                 --split val",
];

/// The description of `danling infer`.
pub(crate) const INFER: &str = "\
Write a checkpoint's predictions for one split as CSV, one row per sample: index, target (when
the split has targets), then prob_0 ... prob_{C-1} for classification or pred for regression.";

/// The examples of `{app} infer`.
pub(crate) const INFER_EXAMPLES: &[&str] = &[
    "{app} infer RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors --split val \\",
    "              --output val.csv",
];

/// The description of `danling config`.
pub(crate) const CONFIG_TEXT: &str = "\
Print the runner.yaml document of a config: the full resolved config (every key, defaults
included) and the run's identity (ids, name, run directory). Nothing is written.";

/// What the help of `{app} config` says before the overrides.
pub(crate) const CONFIG_NOTES: &str = "\
The identity is computed after the overrides: overriding a hashed key (optim.lr) changes
run_id; overriding an ignored key (log_interval, project_root) does not.

";

/// The examples of `{app} config`.
pub(crate) const CONFIG_EXAMPLES: &[&str] = &[
    "{app} config config.yaml --optim.lr 0.01",
    "{app} config RUN/runner.yaml --json",
];

/// The description of `danling completions`.
pub(crate) const COMPLETIONS_TEXT: &str = "\
Print the completion script of a shell: the commands, their flags and the documented config
keys. Other config keys are not completed.";

/// The examples of `{app} completions`.
pub(crate) const COMPLETIONS_EXAMPLES: &[&str] = &[
    "{app} completions bash > ~/.local/share/bash-completion/completions/{app}",
    "{app} completions zsh > ~/.zfunc/_{app}        (with ~/.zfunc on $fpath)",
    "{app} completions fish > ~/.config/fish/completions/{app}.fish",
];
