//! The commands that build the app's runner or read its config: `train`, `evaluate`, `infer` and
//! `config`.

use std::fmt::Write as _;

use anyhow::Context as _;

use super::args::Args;
use super::{App, Failure};
use crate::fs::write_atomic;
use crate::log::{Console, init_logging};
use crate::runner::{Launched, Platform as _, Predictions, Runner};
use crate::workspace::{runner_tree, runner_yaml};
use crate::{Config, Identity, RunnerError};

/// The runner of app `A`.
type AppRunner<A> = Runner<<A as App>::Task, <A as App>::Sections>;

/// The experiment id a rank other than 0 starts with, until it receives rank 0's identity.
const PLACEHOLDER_EXPERIMENT: &str = "xxxxxxxxxxxxxxxx";

fn load_config<A: App>(args: &Args) -> Result<Config<A::Sections>, Failure> {
    Config::load(args.config.as_deref(), &args.overrides).map_err(|e| Failure::Input(e.into()))
}

/// Builds the runner of app `A`: its task, model and splits, on the platform of `config`.
fn build_runner<A: App>(config: Config<A::Sections>, console: Console) -> Result<AppRunner<A>, Failure> {
    // The platform first: under a launcher, each rank's failures from here on end the whole job.
    let platform = Launched::new(config.device, config.precision).map_err(|e| runner_failure(e.into()))?;
    // Seed the device before the app initialises the weights, so that the seed decides the model.
    platform.seed(config.seed);
    let parts = A::build(&config, platform.device()).map_err(|e| Failure::Input(anyhow::anyhow!(e)))?;
    // Rank 0's identity is every rank's (the runner broadcasts it): git may be on its machine only.
    let identity = match platform.is_main() {
        true => Identity::new(&config),
        false => Identity::with_experiment_id(&config, PLACEHOLDER_EXPERIMENT, ""),
    }
    .map_err(|e| runner_failure(e.into()))?;
    let mut runner = Runner::with_platform(config, identity, platform, parts.task, parts.model)
        .map_err(runner_failure)?
        .console(console);
    for split in parts.splits {
        runner = match split.train {
            true => runner.train_split(&split.name, split.dataset),
            false => runner.eval_split(&split.name, split.dataset),
        };
    }
    Ok(A::runner(runner))
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
        | RunnerError::Checkpoint(crate::checkpoint::CheckpointError::Format { .. })
        | RunnerError::Checkpoint(crate::checkpoint::CheckpointError::Missing { .. })
        | RunnerError::Checkpoint(crate::checkpoint::CheckpointError::Mismatch { .. })
        | RunnerError::Data { .. }
        | RunnerError::Workspace(_)
        | RunnerError::Log(_)
        | RunnerError::TensorBoard(_)
        | RunnerError::GlobalBatch { .. }
        | RunnerError::NoIntactCheckpoint { .. }
        | RunnerError::Optimizer(_) => Failure::Input(err.into()),
        RunnerError::Interrupted { signal, .. } => Failure::Stopped(signal.exit_code()),
        other => Failure::Other(other.into()),
    }
}

/// `danling train`: trains, then prints the run directory on the last line of stdout.
pub fn train<A: App>(args: &Args) -> Result<(), Failure> {
    let config = load_config::<A>(args)?;
    crate::signals::install()
        .context("cannot install signal handlers")
        .map_err(Failure::Other)?;
    let mut runner = build_runner::<A>(config, Console::Stdout)?
        .overwrite(args.overwrite)
        .pause_at(args.pause_at);
    let trained = runner.train().map_err(runner_failure)?;
    if let Some(dir) = trained.dir {
        super::print(&format!("{}\n", dir.display()))?;
    }
    Ok(())
}

fn checkpointed_runner<A: App>(args: &Args) -> Result<AppRunner<A>, Failure> {
    let config = load_config::<A>(args)?;
    let checkpoint = config.checkpoint.clone().ok_or_else(|| {
        Failure::Input(anyhow::anyhow!(
            "`{} {}` needs --checkpoint PATH",
            A::NAME,
            args.command.name()
        ))
    })?;
    let mut runner = build_runner::<A>(config, Console::Stderr)?;
    runner.load_weights(&checkpoint).map_err(runner_failure)?;
    Ok(runner)
}

/// `danling evaluate`: prints `{split: {metric: value}}` as JSON.
pub fn evaluate<A: App>(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let mut runner = checkpointed_runner::<A>(args)?;
    let splits: Vec<&str> = args.splits.iter().map(String::as_str).collect();
    let record = runner.evaluate(&splits).map_err(runner_failure)?;
    let text = serde_json::to_string_pretty(&record)
        .context("cannot render JSON")
        .map_err(Failure::Other)?;
    super::print(&format!("{text}\n"))
}

/// `danling infer`: writes one CSV row per sample of the split.
pub fn infer<A: App>(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let (Some(split), Some(output)) = (args.splits.first(), args.output.as_ref()) else {
        return Err(Failure::Input(anyhow::anyhow!(
            "`{} infer` needs --split S and --output FILE.csv",
            A::NAME
        )));
    };
    let mut runner = checkpointed_runner::<A>(args)?;
    let classifier = is_classifier::<A>(&runner);
    let predictions = runner.infer(split).map_err(runner_failure)?;
    let csv = predictions_csv(&predictions, classifier);
    let rows = predictions.outputs.len() / predictions.width.max(1);
    write_atomic(output, csv.as_bytes()).map_err(|e| Failure::Input(e.into()))?;
    tracing::info!("wrote {rows} rows to {}", output.display());
    Ok(())
}

fn is_classifier<A: App>(runner: &AppRunner<A>) -> bool {
    use crate::metrics::MetricKind;
    use crate::runner::Task as _;
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
pub fn config<A: App>(args: &Args) -> Result<(), Failure> {
    let _log = init_logging(Console::Stderr, None).map_err(|e| Failure::Other(e.into()))?;
    let config = load_config::<A>(args)?;
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
    super::print(&text)
}
