//! Unit and property tests of the results history.
use proptest::prelude::*;
use serde_json::json;

use super::ScoreMode::{Max, Min};
use super::*;

/// A record from a JSON object, in its order (JSON cannot hold NaN: see [`history`]).
fn record(value: Value) -> Record {
    serde_json::from_value(value).unwrap()
}

/// A record with a `train` loss and, in `val`, the metric `name` or, when `score` is `None`, not it.
fn entry(name: &str, score: Option<f64>) -> Record {
    let mut record = record(json!({"train": {"loss": 0.1}, "val": {"count": 1}}));
    record["val"].extend(score.map(|score| (name.to_owned(), score)));
    record
}

/// A history scoring the metric `name` at each index, lacking it where the score is `None`.
fn history(name: &str, scores: &[(u64, Option<f64>)]) -> Results {
    let mut results = Results::new();
    for &(index, score) in scores {
        results.insert(index, entry(name, score));
    }
    results
}

/// The index of an entry, to compare entries by index.
fn index_of(entry: Option<(u64, &Record)>) -> Option<u64> {
    entry.map(|(index, _)| index)
}

#[test]
fn default_mode_is_min_for_losses_and_errors_and_max_otherwise() {
    for name in ["loss", "error", "mse", "rmse", "mae", "val_loss", "nll_loss"] {
        assert_eq!(ScoreMode::default_for(name), Min, "{name}");
    }
    for name in ["acc", "f1", "auroc", "lossy", "loss_scale", "Loss", "_loss_"] {
        assert_eq!(ScoreMode::default_for(name), Max, "{name}");
    }
    assert_eq!(Scoring::default(), Scoring::new(None, "loss", Some(Min)));
    assert_eq!(Scoring::new(None, "acc", None).mode, Max);
    assert_eq!(Scoring::new(None, "acc", Some(Min)).mode, Min);
    assert_eq!(serde_json::to_value([Min, Max]).unwrap(), json!(["min", "max"]));
}

#[test]
fn is_better_is_strict_and_never_true_for_nan() {
    assert!(Min.is_better(1.0, 2.0) && Max.is_better(2.0, 1.0));
    for mode in [Min, Max] {
        assert!(!mode.is_better(1.0, 1.0));
        assert!(!mode.is_better(f64::NAN, 1.0) && !mode.is_better(1.0, f64::NAN));
    }
}

#[test]
fn score_split_falls_back_from_configured_to_val_validate_second_first() {
    let split_of = |splits: Value| {
        let mut results = Results::new();
        results.insert(1, record(splits));
        results.score_split(&Scoring::default())
    };
    let configured = Scoring::new(Some("train".into()), "loss", None);
    assert_eq!(Results::new().score_split(&configured).as_deref(), Some("train"));
    assert_eq!(Results::new().score_split(&Scoring::default()), None);
    let all = json!({"train": {}, "test": {}, "validate": {}, "val": {}});
    assert_eq!(split_of(all).as_deref(), Some("val"));
    let no_val = json!({"train": {}, "test": {}, "validate": {}});
    assert_eq!(split_of(no_val).as_deref(), Some("validate"));
    let neither = json!({"train": {}, "test": {}, "dev": {}});
    assert_eq!(split_of(neither).as_deref(), Some("test"));
    assert_eq!(split_of(json!({"train": {}})).as_deref(), Some("train"));
    assert_eq!(split_of(json!({})), None);
}

#[test]
fn score_split_comes_from_the_latest_result_and_applies_to_every_index() {
    let mut results = Results::new();
    results.insert(2, record(json!({"train": {"loss": 2.0}, "dev": {"loss": 1.0}})));
    results.insert(1, record(json!({"train": {"loss": 1.0}, "val": {"loss": 0.5}})));
    let scoring = Scoring::default();
    assert_eq!(results.score_split(&scoring).as_deref(), Some("dev"));
    assert_eq!(
        (results.score(1, &scoring), results.score(2, &scoring)),
        (None, Some(1.0))
    );
    assert_eq!(index_of(results.best(&scoring)), Some(2));
}

#[test]
fn insert_merges_results_of_the_same_index_keeping_order() {
    let mut results = Results::new();
    results.insert(3, record(json!({"train": {"loss": 1.0, "acc": 0.5}})));
    results.insert(1, record(json!({"train": {"loss": 9.0}})));
    results.insert(
        3,
        record(json!({"val": {"loss": 2.0}, "train": {"lr": 0.1, "loss": 0.5}})),
    );
    let merged = results.get(3).unwrap();
    assert_eq!(
        merged,
        &record(json!({"train": {"loss": 0.5, "acc": 0.5, "lr": 0.1}, "val": {"loss": 2.0}}))
    );
    assert!(merged.keys().eq(["train", "val"]) && merged["train"].keys().eq(["loss", "acc", "lr"]));
    assert_eq!(results.len(), 2);
    assert!(results.iter().map(|(index, _)| index).eq([1, 3]));
    assert_eq!(index_of(results.latest()), Some(3));
}

#[test]
fn best_prefers_the_later_index_on_ties_and_skips_nan_and_missing_scores() {
    let nan = Some(f64::NAN);
    let scores = [
        (1, Some(0.5)),
        (2, Some(0.3)),
        (3, nan),
        (4, Some(0.3)),
        (5, None),
        (6, Some(0.4)),
    ];
    let (results, scoring) = (history("loss", &scores), Scoring::default());
    assert_eq!(index_of(results.best(&scoring)), Some(4));
    assert_eq!(
        (results.best_score(&scoring), results.score(5, &scoring)),
        (Some(0.3), None)
    );
    assert_eq!(results.stale_count(&scoring), 1);
    assert!(!results.is_latest_best(&scoring));
    assert!(results.should_stop(&scoring, Some(1)) && !results.should_stop(&scoring, Some(2)));
    assert!(!results.should_stop(&scoring, None));

    let results = history("acc", &[(1, Some(0.5)), (2, Some(0.9)), (3, Some(0.9))]);
    let scoring = Scoring::new(None, "acc", None);
    assert_eq!(index_of(results.best(&scoring)), Some(3));
    assert!(results.is_latest_best(&scoring) && results.stale_count(&scoring) == 0);
}

#[test]
fn nan_scores_are_never_best_but_count_as_evaluations() {
    let scoring = Scoring::default();
    let mut results = history("loss", &[(1, Some(f64::NAN)), (2, None), (3, Some(f64::NAN))]);
    assert_eq!(results.best(&scoring), None);
    assert!(results.score(1, &scoring).unwrap().is_nan());
    assert_eq!(results.stale_count(&scoring), 2);
    assert!(results.should_stop(&scoring, Some(2)) && !results.should_stop(&scoring, Some(3)));
    results.insert(4, entry("loss", Some(7.0)));
    assert_eq!(
        (results.best_score(&scoring), results.stale_count(&scoring)),
        (Some(7.0), 0)
    );
}

#[test]
fn documents_have_the_exact_shape_and_key_order() {
    let scores = [(10, Some(10.0)), (2, Some(f64::INFINITY)), (1, Some(1.0))];
    let (results, scoring) = (history("loss", &scores), Scoring::default());
    let (name, id, time) = ("run", "abc", "2024-01-02T03:04:05Z");
    assert_eq!(
        results.results_document(name, id, time).to_string(),
        r#"{"name":"run","id":"abc","timestamp":"2024-01-02T03:04:05Z","results":{"1":{"train":{"loss":0.1},"val":{"count":1.0,"loss":1.0}},"2":{"train":{"loss":0.1},"val":{"count":1.0,"loss":null}},"10":{"train":{"loss":0.1},"val":{"count":1.0,"loss":10.0}}}}"#
    );
    assert_eq!(
        results.latest_document(name, id, time).unwrap().to_string(),
        r#"{"name":"run","id":"abc","timestamp":"2024-01-02T03:04:05Z","index":10,"train":{"loss":0.1},"val":{"count":1.0,"loss":10.0}}"#
    );
    assert_eq!(
        results
            .best_document(&scoring, name, id, time)
            .unwrap()
            .to_string(),
        r#"{"name":"run","id":"abc","timestamp":"2024-01-02T03:04:05Z","index":1,"train":{"loss":0.1},"val":{"count":1.0,"loss":1.0}}"#
    );
    assert_eq!(Results::new().latest_document(name, id, time), None);
    let mut clash = Results::new();
    clash.insert(3, record(json!({"index": {"loss": 1.0}, "val": {"loss": 2.0}})));
    let latest = clash.latest_document(name, id, time).unwrap();
    assert_eq!(
        (&latest["index"], &latest["val"]),
        (&json!(3), &json!({"loss": 2.0}))
    );
    assert_eq!(Results::new().best_document(&scoring, name, id, time), None);
}

#[test]
fn non_finite_values_are_null_in_the_results_files_and_exact_in_state_json() {
    let scores = [(1, Some(f64::NAN)), (2, Some(f64::NEG_INFINITY)), (3, Some(0.25))];
    let results = history("loss", &scores);
    // The results files hold numbers or null, and null reads back as NaN.
    let doc = results.results_document("run", "abc", "t");
    assert_eq!(doc["results"]["2"]["val"]["loss"], Value::Null);
    let parsed = Results::from_results_document(&doc).unwrap();
    let val = |parsed: &Results, index| parsed.get(index).unwrap()["val"]["loss"];
    assert!(val(&parsed, 1).is_nan() && val(&parsed, 2).is_nan() && val(&parsed, 3) == 0.25);
    assert!(parsed.get(3).unwrap().keys().eq(["train", "val"]));

    // State JSON (a checkpoint's `results`) keeps every value: -inf stays -inf, so that a resumed
    // run scores exactly as the run it continues.
    let stored = serde_json::to_string(&results).unwrap();
    assert!(stored.contains(r#""loss":"-inf""#), "{stored}");
    let back: Results = serde_json::from_str(&stored).unwrap();
    assert!(val(&back, 1).is_nan() && val(&back, 2) == f64::NEG_INFINITY && val(&back, 3) == 0.25);
    assert_eq!(serde_json::to_string(&back).unwrap(), stored);
    let scoring = Scoring::new(Some("val".into()), "loss", None);
    assert_eq!(back.best(&scoring).map(|(index, _)| index), Some(2));

    // The null of earlier checkpoints still reads, as NaN.
    let old: Results = serde_json::from_str(&doc["results"].to_string()).unwrap();
    assert!(val(&old, 2).is_nan());
}

#[test]
fn malformed_documents_are_rejected_with_what_is_wrong() {
    let error = |results: Value| {
        let doc = json!({"name": "run", "results": results});
        Results::from_results_document(&doc).unwrap_err().to_string()
    };
    assert_eq!(
        error(json!({"1": {}, "abc": {}})),
        r#"index "abc" is not an unsigned integer"#
    );
    assert_eq!(
        error(json!({"-1": {}})),
        r#"index "-1" is not an unsigned integer"#
    );
    assert_eq!(error(json!([])), "the document has no `results` object");
    assert_eq!(error(json!({"1": 2})), "`1` is not an object");
    assert_eq!(error(json!({"1": {"val": 2}})), "`1.val` is not an object");
    assert_eq!(
        error(json!({"1": {"val": {"loss": "x"}}})),
        "`1.val.loss` is neither a number nor null"
    );
    let invalid = Results::from_results_document(&json!({"results": {"abc": {}}}));
    assert!(matches!(invalid, Err(ResultsError::InvalidIndex(key)) if key == "abc"));
    assert!(serde_json::from_str::<Results>(r#"{"abc": {}}"#).is_err());
}

/// Random histories with few distinct scores (many ties), NaNs, and indices lacking a score.
fn scores() -> impl Strategy<Value = Vec<(u64, Option<f64>)>> {
    let score = prop_oneof![
        6 => (0u8..4).prop_map(|v| Some(f64::from(v))),
        1 => Just(Some(f64::NAN)),
        1 => Just(None),
    ];
    let steps = prop::collection::vec((1u64..4, score), 0..40);
    steps.prop_map(|steps| {
        let mut index = 0;
        let mut next = |(gap, score)| {
            index += gap;
            (index, score)
        };
        steps.into_iter().map(&mut next).collect()
    })
}

/// The metric and scoring for a mode, relying on the mode the metric name implies.
fn scoring(max: bool) -> (&'static str, Scoring) {
    let name = if max { "acc" } else { "loss" };
    (name, Scoring::new(None, name, None))
}

/// The brute-force best: the last index holding the extreme non-NaN score.
fn brute_best(max: bool, scores: &[(u64, Option<f64>)]) -> Option<(u64, f64)> {
    let valid = scores
        .iter()
        .filter_map(|&(index, score)| Some((index, score.filter(|s| !s.is_nan())?)));
    let valid: Vec<_> = valid.collect();
    let extreme = valid
        .iter()
        .map(|&(_, s)| s)
        .reduce(|a, b| if max { a.max(b) } else { a.min(b) })?;
    valid.into_iter().rev().find(|&(_, s)| s == extreme)
}

proptest! {
    #[test]
    fn best_matches_brute_force_with_ties_to_later_index(scores in scores(), max: bool) {
        let ((name, scoring), expected) = (scoring(max), brute_best(max, &scores));
        let results = history(name, &scores);
        prop_assert_eq!(index_of(results.best(&scoring)), expected.map(|(index, _)| index));
        prop_assert_eq!(results.best_score(&scoring), expected.map(|(_, score)| score));
        let latest = scores.last().map(|&(index, _)| index);
        prop_assert_eq!(results.is_latest_best(&scoring), expected.is_some_and(|(i, _)| Some(i) == latest));
    }

    #[test]
    fn stale_count_counts_evaluations_since_best(scores in scores(), max: bool) {
        let (name, scoring) = scoring(max);
        let evaluations: Vec<u64> = scores.iter().filter(|(_, s)| s.is_some()).map(|&(i, _)| i).collect();
        let expected = match brute_best(max, &scores) {
            Some((best, _)) => evaluations.iter().filter(|&&i| i > best).count(),
            None => evaluations.len(),
        };
        prop_assert_eq!(history(name, &scores).stale_count(&scoring), expected as u64);
    }

    #[test]
    fn early_stop_fires_exactly_when_patience_evaluations_fail_to_improve(
        scores in scores(),
        max: bool,
        patience in prop::option::of(0u64..5),
    ) {
        let (name, scoring) = scoring(max);
        let mut results = Results::new();
        let stopped = scores.iter().position(|&(index, score)| {
            results.insert(index, entry(name, score));
            results.should_stop(&scoring, patience)
        });
        // Reference: a counter that resets on an improvement or a tie and grows otherwise.
        let (mut best, mut stale) = (None::<f64>, 0);
        let expected = scores.iter().position(|&(_, score)| {
            if let Some(score) = score {
                let improves = |best: f64| if max { score >= best } else { score <= best };
                if !score.is_nan() && best.is_none_or(improves) {
                    (best, stale) = (Some(score), 0);
                } else {
                    stale += 1;
                }
            }
            patience.is_some_and(|patience| stale >= patience)
        });
        prop_assert_eq!(stopped, expected);
    }
}
