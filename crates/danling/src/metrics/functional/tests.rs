//! Parity with torchmetrics and scikit-learn on the vendored reference cases, plus edge cases.
//!
//! `tests/fixtures/metrics.json` holds torchmetrics 1.9's values (computed in float32, so they agree
//! with exact f64 values to about 1e-7) and, where available, scikit-learn/scipy's (float64, compared
//! to 1e-9).

use proptest::prelude::*;
use serde_json::Value;

use super::*;

const FIXTURE: &str = include_str!("../../../tests/fixtures/metrics.json");

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| {
            v.as_array().map_or_else(
                || vec![v.as_f64().unwrap()],
                |row| row.iter().map(|x| x.as_f64().unwrap()).collect(),
            )
        })
        .collect()
}

fn ints(value: &Value) -> Vec<i64> {
    floats(value).iter().map(|&x| x as i64).collect()
}

/// Our value of `metric` for a reference case.
fn compute(case: &Value, metric: &str) -> Option<f64> {
    let preds = floats(&case["preds"]);
    let threshold = case["threshold"].as_f64().unwrap_or(0.5);
    Some(match case["task"].as_str().unwrap() {
        "binary" => {
            let t = ints(&case["targets"]);
            match metric {
                "auroc" => binary_auroc(&preds, &t),
                "auprc" => binary_auprc(&preds, &t),
                "accuracy" => binary_accuracy(&preds, &t, threshold),
                "precision" => binary_precision(&preds, &t, threshold),
                "recall" => binary_recall(&preds, &t, threshold),
                "f1" => binary_f1(&preds, &t, threshold),
                "mcc" => binary_mcc(&preds, &t, threshold),
                _ => return None,
            }
        }
        "multiclass" => {
            let (t, c) = (
                ints(&case["targets"]),
                case["num_classes"].as_u64().unwrap() as usize,
            );
            match metric {
                "auroc" => multiclass_auroc(&preds, &t, c),
                "auprc" => multiclass_auprc(&preds, &t, c),
                "accuracy" => multiclass_accuracy(&preds, &t, c),
                "f1" => multiclass_f1(&preds, &t, c),
                "mcc" => multiclass_mcc(&preds, &t, c),
                _ => return None,
            }
        }
        "multilabel" => {
            let (t, l) = (
                ints(&case["targets"]),
                case["num_labels"].as_u64().unwrap() as usize,
            );
            match metric {
                "auroc" => multilabel_auroc(&preds, &t, l),
                "auprc" => multilabel_auprc(&preds, &t, l),
                "accuracy" => multilabel_accuracy(&preds, &t, l, threshold),
                "f1" => multilabel_f1(&preds, &t, l, threshold),
                "mcc" => multilabel_mcc(&preds, &t, l, threshold),
                _ => return None,
            }
        }
        "regression" => {
            let t = floats(&case["targets"]);
            match metric {
                "pearson" => pearson(&preds, &t),
                "spearman" => spearman(&preds, &t),
                "r2" => r2(&preds, &t),
                "mse" => mse(&preds, &t),
                "rmse" => rmse(&preds, &t),
                "mae" => mae(&preds, &t),
                _ => return None,
            }
        }
        _ => return None,
    })
}

#[test]
fn matches_torchmetrics_to_float32_precision() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        for (metric, expected) in case["expected"].as_object().unwrap() {
            let Some(got) = compute(case, metric) else {
                continue;
            };
            let expected = expected.as_f64().unwrap();
            assert!(
                (got - expected).abs() <= 2e-7 * expected.abs().max(1.0),
                "{} {metric}: expected {expected}, got {got}",
                case["name"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "checked {checked}");
}

#[test]
fn matches_scikit_learn_and_scipy_to_1e_9() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let reference = case.get("sklearn").or_else(|| case.get("scipy_sklearn"));
        for (metric, expected) in reference.and_then(Value::as_object).into_iter().flatten() {
            // scikit-learn binarised binary_ties with pred >= 0.5, unlike torchmetrics' strict `>`.
            if case["name"] == "binary_ties" && matches!(metric.as_str(), "f1" | "mcc") {
                continue;
            }
            let Some(got) = compute(case, metric) else {
                continue;
            };
            let expected = expected.as_f64().unwrap();
            assert!(
                (got - expected).abs() <= 1e-9 * expected.abs().max(1.0),
                "{} {metric}: expected {expected}, got {got}",
                case["name"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "checked {checked}");
}

#[test]
fn undefined_values_are_nan() {
    assert!(binary_auroc(&[0.1, 0.9], &[1, 1]).is_nan(), "one class");
    assert!(binary_auprc(&[0.1, 0.9], &[0, 0]).is_nan(), "no positives");
    assert!(
        binary_precision(&[0.1, 0.2], &[1, 0], 0.5).is_nan(),
        "no positive predictions"
    );
    assert!(binary_mcc(&[0.9], &[1], 0.5).is_nan(), "n = 1");
    assert!(binary_accuracy(&[], &[], 0.5).is_nan(), "no samples");
    assert!(
        pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan(),
        "constant input"
    );
    assert!(r2(&[1.0, 2.0], &[3.0, 3.0]).is_nan(), "constant targets");
    assert!(mse(&[], &[]).is_nan());
    assert!(
        multiclass_auroc(&[0.5, 0.5, 0.2], &[0], 2).is_nan(),
        "length mismatch"
    );
    assert!(
        multiclass_accuracy(&[0.9, 0.1], &[5], 2).is_nan(),
        "target out of range"
    );
    assert!(
        multilabel_f1(&[0.1; 3], &[0; 4], 2, 0.5).is_nan(),
        "length mismatch"
    );
}

#[test]
fn ties_count_half() {
    assert_eq!(binary_auroc(&[0.5, 0.5, 0.5, 0.5], &[0, 1, 0, 1]), 0.5);
    assert_eq!(binary_auroc(&[0.2, 0.5, 0.5, 0.9], &[0, 0, 1, 1]), 0.875);
    assert_eq!(binary_auprc(&[0.5, 0.5], &[0, 1]), 0.5);
}

#[test]
fn ignored_targets_equal_removing_those_samples() {
    let preds = [0.1, 0.8, 0.4, 0.35, 0.9, 0.6];
    let targets = [0, 1, -100, 1, -100, 0];
    let (kept_p, kept_t) = ([0.1, 0.8, 0.35, 0.6], [0, 1, 1, 0]);
    assert_eq!(binary_auroc(&preds, &targets), binary_auroc(&kept_p, &kept_t));
    assert_eq!(binary_auprc(&preds, &targets), binary_auprc(&kept_p, &kept_t));
    assert_eq!(binary_f1(&preds, &targets, 0.5), binary_f1(&kept_p, &kept_t, 0.5));
    let mc = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4];
    assert_eq!(
        multiclass_accuracy(&mc, &[0, -100, 2], 3),
        multiclass_accuracy(&[0.7, 0.2, 0.1, 0.3, 0.3, 0.4], &[0, 2], 3)
    );
}

#[test]
fn logits_give_the_same_metrics_as_probabilities() {
    let logits = [2.0, -1.0, 0.5, 0.1, 3.0, -2.0, -1.0, 0.0, 1.5, 1.0, 1.0, -3.0];
    let targets = [0, 1, 2, 1];
    let shifted: Vec<f64> = logits.iter().map(|x| x + 5.0).collect();
    for metric in [
        multiclass_auroc,
        multiclass_auprc,
        multiclass_accuracy,
        multiclass_f1,
        multiclass_mcc,
    ] {
        let (a, b) = (metric(&logits, &targets, 3), metric(&shifted, &targets, 3));
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    let binary_logits = [-2.0, 0.3, 1.5, -0.2];
    let probs: Vec<f64> = binary_logits
        .iter()
        .map(|x: &f64| 1.0 / (1.0 + (-x).exp()))
        .collect();
    assert_eq!(
        binary_auroc(&binary_logits, &[0, 1, 1, 0]),
        binary_auroc(&probs, &[0, 1, 1, 0])
    );
    assert_eq!(
        binary_f1(&binary_logits, &[0, 1, 1, 0], 0.5),
        binary_f1(&probs, &[0, 1, 1, 0], 0.5)
    );
}

proptest! {
    #[test]
    fn auroc_equals_the_pairwise_definition(scores in proptest::collection::vec(0u8..5, 1..40), labels in proptest::collection::vec(0i64..2, 40)) {
        let preds: Vec<f64> = scores.iter().map(|&s| f64::from(s) / 4.0).collect();
        let targets = &labels[..preds.len()];
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &ti) in targets.iter().enumerate() {
            for (j, &tj) in targets.iter().enumerate() {
                if ti == 1 && tj == 0 {
                    pairs += 1.0;
                    wins += if preds[i] > preds[j] { 1.0 } else if preds[i] == preds[j] { 0.5 } else { 0.0 };
                }
            }
        }
        let got = binary_auroc(&preds, targets);
        if pairs == 0.0 {
            prop_assert!(got.is_nan());
        } else {
            prop_assert!((got - wins / pairs).abs() < 1e-12);
        }
    }

    #[test]
    fn metrics_never_panic(preds in proptest::collection::vec(-3.0f64..3.0, 0..30), targets in proptest::collection::vec(-100i64..4, 0..30), k in 0usize..4) {
        let _ = (binary_auroc(&preds, &targets), binary_mcc(&preds, &targets, 0.5));
        let _ = (multiclass_auroc(&preds, &targets, k), multiclass_mcc(&preds, &targets, k), multiclass_f1(&preds, &targets, k));
        let _ = (multilabel_auprc(&preds, &targets, k), multilabel_mcc(&preds, &targets, k, 0.5));
    }
}
