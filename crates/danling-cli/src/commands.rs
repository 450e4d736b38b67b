//! The commands: `train`, `evaluate`, `infer` and `config`.

use anyhow::Context as _;
use danling::fs::write_atomic;
use danling::log::{Console, init_logging};
use danling::runner::{Launched, Platform as _, Predictions, Runner};
use danling::workspace::{runner_tree, runner_yaml};
use danling::{Config, Identity, RunnerError};
use std::fmt::Write as _;

use crate::Failure;
use crate::args::Args;
use crate::builtin::{Mlp, TabularSet, TabularTask, load_splits};
use crate::task::TaskSections;

type TaskConfig = Config<TaskSections>;

/// The experiment id a rank other than 0 starts with, until it receives rank 0's identity.
const PLACEHOLDER_EXPERIMENT: &str = "xxxxxxxxxxxxxxxx";

fn load_config(args: &Args) -> Result<TaskConfig, Failure> {
    Config::load(args.config.as_deref(), &args.overrides).map_err(|e| Failure::Input(e.into()))
}

/// Builds the runner of the built-in task: data, model and splits.
fn build_runner(config: TaskConfig, console: Console) -> Result<Runner<TabularTask, TaskSections>, Failure> {
    // The platform first: under a launcher, each rank's failures from here on end the whole job.
    let platform = Launched::new(config.device, config.precision).map_err(|e| runner_failure(e.into()))?;
    let data = &config.sections.data;
    let splits = load_splits(data, config.seed).map_err(|e| Failure::Input(e.into()))?;
    let task = TabularTask::for_data(&splits.train);
    let (inputs, outputs) = (splits.train.d, splits.train.targets.outputs());
    // Seed the device before initialising the weights, so that the seed decides the initial model.
    platform.seed(config.seed);
    let model = Mlp::new(&config.sections.model, inputs, outputs, platform.device());
    // Rank 0's identity is every rank's (the runner broadcasts it): git may be on its machine only.
    let identity = match platform.is_main() {
        true => Identity::new(&config),
        false => Identity::with_experiment_id(&config, PLACEHOLDER_EXPERIMENT, ""),
    }
    .map_err(|e| runner_failure(e.into()))?;
    let mut runner = Runner::with_platform(config, identity, platform, task, model)
        .map_err(runner_failure)?
        .console(console)
        .train_split("train", TabularSet(splits.train));
    for (name, split) in splits.eval {
        runner = runner.eval_split(&name, TabularSet(split));
    }
    Ok(runner)
}

/// Config and input problems exit 2, and so does a run directory that cannot be used when the run
/// starts; the rest exit 1, a file that cannot be written during training (`RunnerError::Save`: a
/// full disk, say) among them.
fn runner_failure(err: RunnerError) -> Failure {
    match err {
        RunnerError::Config(_)
        | RunnerError::Platform(_)
        | RunnerError::Scheduler(_)
        | RunnerError::UnknownSplit { .. }
        | RunnerError::EmptySplit { .. }
        | RunnerError::Checkpoint(danling::checkpoint::CheckpointError::Format { .. })
        | RunnerError::Checkpoint(danling::checkpoint::CheckpointError::Missing { .. })
        | RunnerError::Checkpoint(danling::checkpoint::CheckpointError::Mismatch { .. })
        | RunnerError::Data { .. }
        | RunnerError::Workspace(_)
        | RunnerError::Log(_)
        | RunnerError::TensorBoard(_)
        | RunnerError::GlobalBatch { .. }
        | RunnerError::Optimizer(_) => Failure::Input(err.into()),
        RunnerError::Interrupted { signal, .. } => Failure::Stopped(signal.exit_code()),
        other => Failure::Other(other.into()),
    }
}

/// `danling train`: trains, then prints the run directory on the last line of stdout.
pub fn train(args: &Args) -> Result<(), Failure> {
    let config = load_config(args)?;
    danling::signals::install()
        .context("cannot install signal handlers")
        .map_err(Failure::Other)?;
    let mut runner = build_runner(config, Console::Stdout)?.overwrite(args.overwrite);
    let trained = runner.train().map_err(runner_failure)?;
    if let Some(dir) = trained.dir {
        crate::print(&format!("{}\n", dir.display()))?;
    }
    Ok(())
}

fn checkpointed_runner(args: &Args) -> Result<Runner<TabularTask, TaskSections>, Failure> {
    let config = load_config(args)?;
    let checkpoint = config.checkpoint.clone().ok_or_else(|| {
        Failure::Input(anyhow::anyhow!(
            "`danling {}` needs --checkpoint PATH",
            args.command.name()
        ))
    })?;
    let mut runner = build_runner(config, Console::Stderr)?;
    runner.load_weights(&checkpoint).map_err(runner_failure)?;
    Ok(runner)
}

/// `danling evaluate`: prints `{split: {metric: value}}` as JSON.
pub fn evaluate(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let mut runner = checkpointed_runner(args)?;
    let splits: Vec<&str> = args.splits.iter().map(String::as_str).collect();
    let record = runner.evaluate(&splits).map_err(runner_failure)?;
    let text = serde_json::to_string_pretty(&record)
        .context("cannot render JSON")
        .map_err(Failure::Other)?;
    crate::print(&format!("{text}\n"))
}

/// `danling infer`: writes one CSV row per sample of the split.
pub fn infer(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let (Some(split), Some(output)) = (args.splits.first(), args.output.as_ref()) else {
        return Err(Failure::Input(anyhow::anyhow!(
            "`danling infer` needs --split S and --output FILE.csv"
        )));
    };
    let mut runner = checkpointed_runner(args)?;
    let classifier = is_classifier(&runner);
    let predictions = runner.infer(split).map_err(runner_failure)?;
    let csv = predictions_csv(&predictions, classifier);
    let rows = predictions.outputs.len() / predictions.width.max(1);
    write_atomic(output, csv.as_bytes()).map_err(|e| Failure::Input(e.into()))?;
    tracing::info!("wrote {rows} rows to {}", output.display());
    Ok(())
}

fn is_classifier(runner: &Runner<TabularTask, TaskSections>) -> bool {
    use danling::metrics::MetricKind;
    use danling::runner::Task as _;
    matches!(
        runner.task().metrics(),
        MetricKind::Binary | MetricKind::Multiclass(_)
    )
}

/// The CSV of `infer`: `index`, the target column(s) when the split has targets, then `prob_{c}` per
/// class for classification, or `pred` (`pred_{j}` for several outputs) for regression.
fn predictions_csv(predictions: &Predictions, classifier: bool) -> String {
    let columns = |name: &str, n: usize| -> Vec<String> {
        if n == 1 && name != "prob" {
            vec![name.to_owned()]
        } else {
            (0..n).map(|j| format!("{name}_{j}")).collect()
        }
    };
    let (width, targets) = (predictions.width, predictions.target_width);
    let mut header = vec!["index".to_owned()];
    header.extend(columns("target", targets));
    header.extend(columns(if classifier { "prob" } else { "pred" }, width));
    let mut csv = header.join(",");
    csv.push('\n');
    for i in 0..predictions.outputs.len() / width.max(1) {
        let _ = write!(csv, "{i}");
        for value in &predictions.targets[i * targets..(i + 1) * targets] {
            let _ = write!(csv, ",{value}");
        }
        for value in &predictions.outputs[i * width..(i + 1) * width] {
            let _ = write!(csv, ",{value}");
        }
        csv.push('\n');
    }
    csv
}

/// `danling config`: print the runner.yaml document, YAML or JSON.
pub fn config(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let config = load_config(args)?;
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
    crate::print(&text)
}
