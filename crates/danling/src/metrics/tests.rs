//! Streaming metrics, multi-task metrics and meters.

use super::*;

const PREDS: [f64; 8] = [0.9, 0.2, 0.65, 0.4, 0.3, 0.8, 0.55, 0.1];
const LABELS: [i64; 8] = [1, 0, 1, 1, 0, 1, 0, 0];

fn fed(mode: MetricMode, chunks: usize) -> Metrics {
    let mut metrics = binary_metrics().with_mode(mode);
    for (p, t) in PREDS.chunks(chunks).zip(LABELS.chunks(chunks)) {
        metrics.update(p, TargetSlice::Labels(t));
    }
    metrics
}

#[test]
fn exact_mode_gives_dataset_level_values_whatever_the_batching() {
    let whole = fed(MetricMode::Exact, 8).compute();
    assert_eq!(fed(MetricMode::Exact, 3).compute(), whole);
    assert_eq!(whole["auroc"], functional::binary_auroc(&PREDS, &LABELS));
    let names: Vec<&str> = whole.keys().map(String::as_str).collect();
    assert_eq!(names, ["auroc", "auprc", "accuracy", "f1", "mcc"]);
}

#[test]
fn stream_mode_averages_batch_values_weighted_by_batch_size() {
    let streamed = fed(MetricMode::Stream, 4).compute();
    let first = functional::binary_accuracy(&PREDS[..4], &LABELS[..4], 0.5);
    let second = functional::binary_accuracy(&PREDS[4..], &LABELS[4..], 0.5);
    assert_eq!(streamed["accuracy"], (first + second) / 2.0);
    assert_eq!(
        fed(MetricMode::Stream, 8).compute(),
        fed(MetricMode::Exact, 8).compute()
    );
}

#[test]
fn stream_mode_skips_batches_where_a_metric_is_undefined() {
    let mut metrics = binary_metrics().with_mode(MetricMode::Stream);
    metrics.update(&[0.9, 0.8], TargetSlice::Labels(&[1, 1]));
    metrics.update(&[0.9, 0.2], TargetSlice::Labels(&[1, 0]));
    assert_eq!(
        metrics.compute()["auroc"],
        1.0,
        "the one-class batch has no AUROC"
    );
    assert_eq!(metrics.compute()["accuracy"], 1.0);
}

#[test]
fn merging_equals_feeding_everything_to_one() {
    for mode in [MetricMode::Exact, MetricMode::Stream] {
        let mut a = binary_metrics().with_mode(mode);
        let mut b = binary_metrics().with_mode(mode);
        a.update(&PREDS[..4], TargetSlice::Labels(&LABELS[..4]));
        b.update(&PREDS[4..], TargetSlice::Labels(&LABELS[4..]));
        assert!(a.merge(&b));
        assert_eq!(a.compute(), fed(mode, 4).compute(), "{mode:?}");
    }
    assert!(
        !binary_metrics().merge(&multiclass_metrics(3)),
        "different kinds do not merge"
    );
}

#[test]
fn state_survives_serialisation_and_reset_forgets() {
    let metrics = fed(MetricMode::Exact, 3);
    let text = serde_json::to_string(&metrics).unwrap();
    let back: Metrics = serde_json::from_str(&text).unwrap();
    assert_eq!(back, metrics);
    let mut metrics = metrics;
    metrics.reset();
    assert!(metrics.compute()["auroc"].is_nan());
}

#[test]
fn factories_use_designs_names() {
    let names = |m: Metrics| m.compute().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(multiclass_metrics(3)),
        ["auroc", "auprc", "accuracy", "f1", "mcc"]
    );
    assert_eq!(
        names(multilabel_metrics(2)),
        ["auroc", "auprc", "accuracy", "f1", "mcc"]
    );
    assert_eq!(
        names(regression_metrics(1)),
        ["pearson", "spearman", "r2", "mse", "rmse"]
    );
}

#[test]
fn regression_with_several_outputs_averages_over_outputs() {
    let mut metrics = regression_metrics(2);
    metrics.update(
        &[1.0, 10.0, 2.0, 20.0, 3.0, 30.0],
        TargetSlice::Values(&[1.0, 10.0, 2.0, 21.0, 3.0, 30.0]),
    );
    let mse = metrics.compute()["mse"];
    assert!((mse - (0.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
}

#[test]
fn multitask_metrics_nest_by_task_and_average_across_tasks() {
    let mut metrics = MultiTaskMetrics::new()
        .with_task("a", binary_metrics())
        .with_task("b", binary_metrics());
    assert!(metrics.update("a", &PREDS, TargetSlice::Labels(&LABELS)));
    assert!(metrics.update("b", &[0.9, 0.1], TargetSlice::Labels(&[1, 0])));
    assert!(!metrics.update("c", &[0.5], TargetSlice::Labels(&[1])));
    let out = metrics.compute();
    let keys: Vec<&str> = out.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a", "b", "average"]);
    assert_eq!(
        out["average"]["auroc"],
        (out["a"]["auroc"] + out["b"]["auroc"]) / 2.0
    );
}

#[test]
fn average_meters_track_val_avg_sum_count_and_merge() {
    let mut meter = AverageMeter::default();
    assert!(meter.avg().is_nan());
    meter.update(2.0, 3.0);
    meter.update(4.0, 1.0);
    assert_eq!(
        (meter.val, meter.sum, meter.count, meter.avg()),
        (4.0, 10.0, 4.0, 2.5)
    );
    let mut other = AverageMeter::default();
    other.update(1.0, 6.0);
    meter.merge(&other);
    assert_eq!(
        (meter.val, meter.sum, meter.count, meter.avg()),
        (1.0, 16.0, 10.0, 1.6)
    );

    let mut meters = AverageMeters::default();
    meters.update("loss", 1.0, 2.0);
    meters.update("time", 0.5, 1.0);
    let mut more = AverageMeters::default();
    more.update("loss", 4.0, 2.0);
    meters.merge(&more);
    assert_eq!(meters.averages()["loss"], 2.5);
    assert_eq!(meters.get("time").unwrap().count, 1.0);
}
