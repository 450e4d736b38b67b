//! (b) Runner overhead: the benchmark's training in a bare burn loop and through the runner.

use std::time::Instant;

use burn::data::dataset::InMemDataset;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use danling::log::Console;
use danling::optim::FusedAdamW;
use danling::runner::{Runner, shuffled_order};
use danling::{Config, Identity, Override};

use crate::mlp::{BATCH, Classify, EPOCHS, Mlp, Row, WIDTHS, collate, data};
use crate::report::{Report, Verdict};
use crate::{Options, median};

/// The runner's seed, which also fixes its shuffled order.
const SEED: u64 = 1016;

/// What one training gave: seconds, and the trained weights (to check that two loops did the same
/// work).
struct Run {
    seconds: f64,
    weights: Vec<f32>,
}

/// `EPOCHS` passes over `train` with the plain burn calls, nothing else: in the order the runner
/// visits the items (each epoch's [`shuffled_order`], so both do the same arithmetic), with burn's
/// `AdamW` or with the fused AdamW the runner uses (which isolates what the runner itself adds).
fn bare_loop(train: &[Row], fused: bool) -> Run {
    let device = Device::flex().autodiff();
    // Seeded as the runner seeds its device before it first touches the model, so that both draw the
    // same initial weights.
    device.seed(SEED);
    let mut model = Mlp::new(&WIDTHS, &device);
    let mut optimizer = if fused {
        ModuleOptimizer::from(FusedAdamW {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 1e-4,
        })
    } else {
        AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(1e-4)
            .init()
    };
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let start = Instant::now();
    for epoch in 0..EPOCHS {
        for indices in shuffled_order(SEED, epoch as u64, 0, train.len()).chunks(BATCH) {
            let batch: Vec<Row> = indices.iter().map(|&i| train[i].clone()).collect();
            let (x, y) = collate(&batch, &device);
            let loss = loss_fn.forward(model.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
        }
    }
    Run {
        seconds: start.elapsed().as_secs_f64(),
        weights: model.weights(),
    }
}

/// `Runner::train` on the same work, with what the runner adds: the non-finite check, results and a
/// checkpoint every epoch, all written to a temporary run directory; and the five classification
/// metrics when `metrics` is set (which the bare loop does not compute).
fn through_runner(train: &[Row], metrics: bool) -> anyhow::Result<Run> {
    let root = tempfile::tempdir()?;
    let overrides = [
        ("project_root", root.path().to_string_lossy().into_owned()),
        ("seed", SEED.to_string()),
        ("epochs", EPOCHS.to_string()),
        ("progress", "false".to_owned()),
        ("log", "false".to_owned()),
        ("log_interval", "100000".to_owned()),
        ("optim.type", "adamw".to_owned()),
        ("optim.lr", "0.001".to_owned()),
        ("optim.weight_decay", "0.0001".to_owned()),
    ];
    let overrides = overrides
        .iter()
        .map(|(k, v)| Override::parse(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config: Config = Config::load(None, &overrides)?;
    config.data.batch_size = BATCH as u64;
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "")?;
    let device = Device::flex();
    let mut runner =
        Runner::with_identity(config, identity, Classify { metrics }, Mlp::new(&WIDTHS, &device))?
            .console(Console::Off)
            .train_split("train", InMemDataset::new(train.to_vec()));
    let start = Instant::now();
    runner.train()?;
    Ok(Run {
        seconds: start.elapsed().as_secs_f64(),
        weights: runner.model().weights(),
    })
}

/// Runs both, interleaved, at least 25 times (after one warm-up of each, whose weights must agree bit
/// for bit), and reports the median times and the median of the paired ratios.
pub fn overhead(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(b) runner overhead against a bare burn loop");
    // A run takes under a second and the difference is a few percent, less than two runs in a row
    // differ here: many pairs steady the median.
    let repeats = options.repeats.max(25);
    let (train, _) = data();
    if bare_loop(&train, true).weights != through_runner(&train, false)?.weights {
        anyhow::bail!(
            "(b): the bare loop and the runner trained different weights, so they did different work"
        );
    }
    let (mut fused, mut burn, mut runner, mut metrics) = (vec![], vec![], vec![], vec![]);
    for round in 0..repeats {
        // The bare loop alternately just before and just after the runner, so that neither side
        // always inherits the state (caches, freed memory) the other leaves.
        if round % 2 == 0 {
            fused.push(bare_loop(&train, true).seconds);
            runner.push(through_runner(&train, false)?.seconds);
        } else {
            runner.push(through_runner(&train, false)?.seconds);
            fused.push(bare_loop(&train, true).seconds);
        }
        metrics.push(through_runner(&train, true)?.seconds);
        burn.push(bare_loop(&train, false).seconds);
    }
    let (f, b) = (median(&fused), median(&burn));
    let (r, m) = (median(&runner), median(&metrics));
    let samples = (EPOCHS * train.len()) as f64;
    // Each runner run against the bare run beside it: the machine's speed drifts over a
    // benchmark by more than the overhead measured, and a pair shares the moment.
    let paired = |side: &[f64]| {
        let ratios: Vec<f64> = side.iter().zip(&fused).map(|(s, f)| s / f).collect();
        (median(&ratios) - 1.0) * 100.0
    };
    let overhead = paired(&runner);
    report.row(
        "(b) runner overhead vs bare burn loop, same optimizer (train 3 epochs)",
        format!("{:.0} samples/s ({r:.3} s)", samples / r),
        format!("bare loop {:.0} samples/s ({f:.3} s)", samples / f),
        format!("{overhead:+.1}%"),
        "≤ +3%",
        Verdict::from(overhead <= 3.0),
    );
    report.row(
        "(b) the same through the runner with metrics on",
        format!("{:.0} samples/s ({m:.3} s)", samples / m),
        format!("bare loop {:.0} samples/s ({f:.3} s)", samples / f),
        format!("{:+.1}%", paired(&metrics)),
        "–",
        Verdict::Info,
    );
    report.row(
        "(b) runner vs bare burn loop with burn's own AdamW",
        format!("{:.0} samples/s", samples / r),
        format!("bare loop {:.0} samples/s", samples / b),
        format!("{:.2}× faster", b / r),
        "–",
        Verdict::Info,
    );
    report.detail(
        "(b) the bare loop visits the items in the runner's shuffled order, and its warm-up run \
         trained the same weights as the runner's, bit for bit"
            .to_owned(),
    );
    report.detail(format!(
        "(b) the overhead is the median over the runs of each runner run's time against the bare \
         loop run beside it (alternately just before and just after); the ratio of the median times is {:+.1}% (metrics on: {:+.1}%)",
        (r / f - 1.0) * 100.0,
        (m / f - 1.0) * 100.0
    ));
    report.detail(format!(
        "(b) seconds per run, bare loop with danling's fused AdamW: {}; runner: {}; runner with \
         metrics: {}; bare loop with burn's AdamW: {}",
        list(&fused),
        list(&runner),
        list(&metrics),
        list(&burn)
    ));
    Ok(())
}

/// Seconds, three decimals, comma-separated.
pub fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}
