use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn config(kind: SchedKind) -> SchedConfig {
    SchedConfig {
        kind,
        warmup_steps: None,
        cooldown_steps: None,
        final_lr_ratio: None,
        final_lr: None,
        min_lr: None,
        scaling: Some(Scaling::Percentile),
    }
}

/// The fixture's `args` (Python `LRScheduler` keyword arguments) as a `SchedConfig`.
fn config_from_args(args: &Value) -> SchedConfig {
    let steps = |key: &str| args.get(key).and_then(Value::as_u64);
    let float = |key: &str| args.get(key).and_then(Value::as_f64);
    let kind = match args["method"].as_str() {
        Some("constant") => SchedKind::Constant,
        Some("linear") => SchedKind::Linear,
        Some("cosine") | None => SchedKind::Cosine,
        Some(other) => panic!("unknown method {other}"),
    };
    let (final_lr_ratio, final_lr) = (float("final_lr_ratio"), float("final_lr"));
    let scaling = match args.get("scaling").and_then(Value::as_str) {
        Some("percentile") => Scaling::Percentile,
        Some("numerical") => Scaling::Numerical,
        None => default_scaling(final_lr_ratio, final_lr),
        Some(other) => panic!("unknown scaling {other}"),
    };
    SchedConfig {
        kind,
        warmup_steps: steps("warmup_steps"),
        cooldown_steps: steps("cooldown_steps"),
        final_lr_ratio,
        final_lr,
        min_lr: float("min_lr"),
        scaling: Some(scaling),
    }
}

/// The fixture was produced by Python DanLing 0.4.8 (torch 2.15), along these lines:
///
/// ```python
/// import json, torch
/// from danling.optim import LRScheduler
///
/// cases = [dict(base_lr=0.1, args=dict(total_steps=100, method="cosine")), ...]
/// for case in cases:
///     optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=case["base_lr"])
///     scheduler = LRScheduler(optimizer, **case["args"])
///     lrs = []
///     for _ in range(case["args"]["total_steps"]):
///         lrs.append(optimizer.param_groups[0]["lr"])  # the lr before each optimizer step
///         optimizer.step()
///         scheduler.step()
///     case["lr_before_each_step"] = lrs
/// json.dump({"source": "Python DanLing LRScheduler (danling 0.4.8, torch 2.15); lr read from "
///            "the optimizer before each optimizer step", "cases": cases}, open("lr_scheduler.json", "w"))
/// ```
///
/// The port is bit-exact against these numbers; the 1e-9 tolerance covers serde_json's default float
/// parsing (without `float_roundtrip`), which can read a reference value one ulp off.
#[test]
fn matches_python_danling_reference() {
    let fixture: Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/lr_scheduler.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut worst = 0.0_f64;
    for (index, case) in cases.iter().enumerate() {
        let base_lr = case["base_lr"].as_f64().unwrap();
        let args = &case["args"];
        let total_steps = args["total_steps"].as_u64().unwrap();
        let expected = case["lr_before_each_step"].as_array().unwrap();
        assert_eq!(expected.len() as u64, total_steps, "case {index}: fixture length");
        let mut scheduler = LrScheduler::new(&config_from_args(args), base_lr, total_steps)
            .unwrap_or_else(|e| panic!("case {index} ({args}): {e}"));
        for (step, want) in expected.iter().enumerate() {
            let want = want.as_f64().unwrap();
            let got = scheduler.lr();
            let error = (got - want).abs();
            let ok = if want == 0.0 {
                error <= 1e-15
            } else {
                error <= 1e-9 * want.abs()
            };
            assert!(
                ok,
                "case {index} ({args}), step {step}: expected {want:e}, got {got:e}"
            );
            if want != 0.0 {
                worst = worst.max(error / want.abs());
            }
            scheduler.step();
        }
    }
    eprintln!("max relative error against Python DanLing: {worst:e}");
}

#[test]
fn danling_defaults_resolve_from_total_steps() {
    let scheduler = LrScheduler::new(&config(SchedKind::Cosine), 0.1, 100).unwrap();
    assert_eq!((scheduler.warmup_steps, scheduler.cooldown_steps), (5, 20));
    assert_eq!(
        (scheduler.final_lr, scheduler.min_lr),
        (0.1 * DEFAULT_FINAL_LR_RATIO, DEFAULT_MIN_LR)
    );
    assert_eq!(scheduler.lr_at(99), DEFAULT_MIN_LR, "cooldown ends at min_lr");
    assert_eq!(default_scaling(None, Some(0.0)), Scaling::Numerical);
    assert_eq!(default_scaling(Some(0.1), Some(0.0)), Scaling::Percentile);
    assert_eq!(default_scaling(None, None), Scaling::Percentile);
}

#[test]
fn final_lr_wins_and_lowers_min_lr() {
    let sched = SchedConfig {
        final_lr_ratio: Some(0.5),
        final_lr: Some(0.0),
        min_lr: Some(1e-3),
        warmup_steps: Some(0),
        cooldown_steps: Some(0),
        scaling: Some(Scaling::Numerical),
        ..config(SchedKind::Linear)
    };
    let scheduler = LrScheduler::new(&sched, 1.0, 10).unwrap();
    assert_eq!(scheduler.min_lr, 0.0);
    assert_eq!(scheduler.lr_at(9), 0.0);
}

#[test]
fn none_keeps_base_lr() {
    let mut scheduler = LrScheduler::new(&config(SchedKind::None), 0.3, 10).unwrap();
    for _ in 0..15 {
        assert_eq!(scheduler.lr(), 0.3);
        scheduler.step();
    }
    assert_eq!(scheduler.steps_taken(), 15);
}

#[test]
fn steps_past_the_end_keep_the_final_lr() {
    let sched = SchedConfig {
        cooldown_steps: Some(0),
        ..config(SchedKind::Linear)
    };
    let scheduler = LrScheduler::new(&sched, 0.1, 10).unwrap();
    let last = scheduler.lr_at(9);
    assert_eq!(last, 0.1 * DEFAULT_FINAL_LR_RATIO);
    for step in [10, 11, 1_000, u64::MAX] {
        assert_eq!(scheduler.lr_at(step), last);
    }
}

#[test]
fn state_round_trips_through_serde() {
    let mut scheduler = LrScheduler::new(&config(SchedKind::Cosine), 0.1, 50).unwrap();
    for _ in 0..7 {
        scheduler.step();
    }
    let json = serde_json::to_string(&scheduler).unwrap();
    let restored: LrScheduler = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, scheduler);
    assert_eq!(restored.lr(), scheduler.lr_at(7));
}

#[test]
fn errors_name_the_key_and_value() {
    let cases = [
        (config(SchedKind::Linear), 0.1, 0, "total_steps"),
        (config(SchedKind::Linear), f64::NAN, 10, "optim.lr"),
        (config(SchedKind::Linear), -0.1, 10, "optim.lr"),
        (
            SchedConfig {
                warmup_steps: Some(11),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.warmup_steps",
        ),
        (
            SchedConfig {
                cooldown_steps: Some(11),
                ..config(SchedKind::None)
            },
            0.1,
            10,
            "sched.cooldown_steps",
        ),
        (
            SchedConfig {
                warmup_steps: Some(6),
                cooldown_steps: Some(5),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.cooldown_steps",
        ),
        (
            SchedConfig {
                final_lr_ratio: Some(1.5),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.final_lr_ratio",
        ),
        (
            SchedConfig {
                final_lr_ratio: Some(f64::NAN),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.final_lr_ratio",
        ),
        (
            SchedConfig {
                final_lr: Some(0.2),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.final_lr",
        ),
        (
            SchedConfig {
                final_lr: Some(-1e-3),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.final_lr",
        ),
        (
            SchedConfig {
                min_lr: Some(f64::NAN),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.min_lr",
        ),
        (
            SchedConfig {
                min_lr: Some(-1.0),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.min_lr",
        ),
        (
            SchedConfig {
                min_lr: Some(0.5),
                ..config(SchedKind::Cosine)
            },
            0.1,
            10,
            "sched.min_lr",
        ),
    ];
    for (sched, base_lr, total_steps, key) in cases {
        let error = LrScheduler::new(&sched, base_lr, total_steps).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.key(), key, "{message}");
        assert!(
            message.contains(&format!("`{key}`")) && !message.contains('\n'),
            "{message}"
        );
    }
    let message = LrScheduler::new(
        &SchedConfig {
            warmup_steps: Some(11),
            ..config(SchedKind::Linear)
        },
        0.1,
        10,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "config key `sched.warmup_steps`: invalid value 11, expected at most the 10 total steps"
    );
}

fn valid_configs() -> impl Strategy<Value = (SchedConfig, f64, u64)> {
    let kind = prop_oneof![
        Just(SchedKind::Constant),
        Just(SchedKind::Linear),
        Just(SchedKind::Cosine),
        Just(SchedKind::None)
    ];
    let scaling = prop_oneof![Just(Scaling::Percentile), Just(Scaling::Numerical)];
    (
        1u64..400,
        1e-6f64..10.0,
        kind,
        scaling,
        any::<[bool; 5]>(),
        proptest::array::uniform5(0.0f64..=1.0),
    )
        .prop_map(|(total, base_lr, kind, scaling, set, unit)| {
            // Warmup leaves room for the default cooldown, cooldown for the warmup in force.
            let warmup = (unit[0] * (total - total / 5) as f64) as u64;
            let warmup_in_force = if set[0] { warmup } else { total / 20 };
            let cooldown = (unit[1] * (total - warmup_in_force) as f64) as u64;
            let sched = SchedConfig {
                kind,
                warmup_steps: set[0].then_some(warmup),
                cooldown_steps: set[1].then_some(cooldown),
                final_lr_ratio: set[2].then_some(unit[2]),
                final_lr: set[3].then_some(unit[3] * base_lr),
                min_lr: set[4].then_some(unit[4] * base_lr),
                scaling: Some(scaling),
            };
            (sched, base_lr, total)
        })
}

proptest! {
    #[test]
    fn lr_stays_finite_and_within_bounds((sched, base_lr, total) in valid_configs()) {
        let mut scheduler = LrScheduler::new(&sched, base_lr, total).unwrap();
        // DanLing lowers min_lr to final_lr when that is smaller.
        let floor = sched.min_lr.map(|min_lr| sched.final_lr.map_or(min_lr, |last| min_lr.min(last)));
        for step in 0..total + 3 {
            let lr = scheduler.lr();
            prop_assert!(lr.is_finite(), "step {step}: {lr}");
            prop_assert!(lr <= base_lr, "step {step}: {lr} > {base_lr}");
            if let Some(floor) = floor {
                prop_assert!(lr >= floor, "step {step}: {lr} < {floor}");
            }
            prop_assert_eq!(lr, scheduler.lr_at(step));
            if sched.kind == SchedKind::None {
                prop_assert_eq!(lr, base_lr);
            }
            scheduler.step();
        }
        let mut resumed = scheduler.clone();
        resumed.set_steps_taken(total / 2);
        prop_assert_eq!(resumed.lr(), scheduler.lr_at(total / 2));
    }
}
