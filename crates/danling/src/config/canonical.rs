//! The canonical form of a config: RFC 8785 (JSON Canonicalization Scheme) over the resolved config,
//! minus the keys that do not change what is trained. Identity hashes exactly this string.

use serde_json::Value;

/// Top-level keys left out of the canonical config: runtime, progress and I/O knobs that do not change
/// what is trained, so that changing them keeps the run's identity.
pub const IGNORED_KEYS: &[&str] = &[
    "experiment_id",
    "run_id",
    "id",
    "name",
    "group",
    "sweep",
    "dir",
    "project_root",
    "checkpoint_dir",
    "checkpoint_dir_name",
    "log",
    "metrics_log",
    "log_interval",
    "save_interval",
    "save_steps",
    "keep_latest_k",
    "tensorboard",
    "checkpoint",
    "resume",
    "requeue",
    "preempt_signal",
    "mlflow",
    "device",
    "progress",
];

/// Ignored keys inside a section, as `section.key`: speed knobs of a section whose other keys count.
pub const IGNORED_NESTED_KEYS: &[&str] = &["data.workers", "data.prefetch"];

/// The canonical config string of a resolved config tree: its top-level mapping without
/// [`IGNORED_KEYS`] and [`IGNORED_NESTED_KEYS`], as RFC 8785 JSON.
pub fn canonical_config(config: &Value) -> String {
    match config {
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(key, _)| !IGNORED_KEYS.contains(&key.as_str()))
                .map(|(key, value)| {
                    let mut value = value.clone();
                    if let Value::Object(section) = &mut value {
                        for nested in IGNORED_NESTED_KEYS {
                            if let Some(inner) = nested
                                .strip_prefix(key.as_str())
                                .and_then(|k| k.strip_prefix('.'))
                            {
                                section.remove(inner);
                            }
                        }
                    }
                    (key.clone(), value)
                })
                .collect();
            canonical_json(&Value::Object(kept))
        }
        other => canonical_json(other),
    }
}

/// Serialises `value` as RFC 8785 JSON: no whitespace, object members sorted by the UTF-16 code units
/// of their names, strings with minimal escapes, numbers in ECMAScript's shortest round-trip form
/// (`1.0` is `1`, `1e-7` is `1e-7`, `1e21` is `1e+21`).
///
/// JSON numbers are IEEE 754 doubles under RFC 8785, so integers beyond 2^53 lose precision here,
/// exactly as they would in any conforming implementation.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Without serde_json's `arbitrary_precision` every number is an f64 (`None` is unreachable).
        Value::Number(n) => write_number(out, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, x: f64) {
    if x.is_finite() {
        out.push_str(ryu_js::Buffer::new().format_finite(x));
    } else {
        // JSON cannot hold NaN or infinities; serde_json never produces them in a `Value`.
        out.push_str("null");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{09}' => out.push_str("\\t"),
            '\u{0A}' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\u{0D}' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn number(x: f64) -> String {
        canonical_json(&json!(x))
    }

    #[test]
    fn numbers_use_ecmascript_shortest_form() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(1e-7), "1e-7");
        assert_eq!(number(0.000001), "0.000001");
        assert_eq!(number(0.01), "0.01");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(1e21), "1e+21");
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(number(123.456), "123.456");
        assert_eq!(number(5e-324), "5e-324");
        assert_eq!(number(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(canonical_json(&json!(1016)), "1016");
        assert_eq!(canonical_json(&json!(-3)), "-3");
    }

    #[test]
    fn rfc8785_appendix_numbers() {
        // RFC 8785, Appendix B: IEEE 754 bit patterns and their canonical text.
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x41b3de4355555556, "333333333.3333334"),
        ];
        for (bits, text) in cases {
            assert_eq!(number(f64::from_bits(*bits)), *text, "bits {bits:#018x}");
        }
    }

    #[test]
    fn members_are_sorted_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: sorting by UTF-16 puts U+1F600 (a surrogate pair) before U+FB33.
        let value =
            json!({"\u{20ac}": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "\u{1f600}": 5, "\u{80}": 6, "\u{f6}": 7});
        assert_eq!(
            canonical_json(&value),
            "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"\u{f6}\":7,\"\u{20ac}\":1,\"\u{1f600}\":5,\"\u{fb33}\":3}"
        );
    }

    #[test]
    fn strings_use_minimal_escapes() {
        let value = json!("a\"b\\c\u{1}\u{1f}\n\t/\u{7f}é");
        assert_eq!(
            canonical_json(&value),
            "\"a\\\"b\\\\c\\u0001\\u001f\\n\\t/\u{7f}é\""
        );
    }

    #[test]
    fn nested_values_have_no_whitespace() {
        let value = json!({"b": [1.5, true, null, {"z": 0, "a": "x"}], "a": {}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{},"b":[1.5,true,null,{"a":"x","z":0}]}"#
        );
    }

    #[test]
    fn ignored_keys_are_left_out_of_the_canonical_config() {
        let config = json!({"seed": 1, "log_interval": 7, "project_root": "x", "optim": {"lr": 0.1}});
        assert_eq!(canonical_config(&config), r#"{"optim":{"lr":0.1},"seed":1}"#);
        let config = json!({"data": {"batch_size": 8, "workers": 4, "prefetch": 2}});
        assert_eq!(canonical_config(&config), r#"{"data":{"batch_size":8}}"#);
    }

    #[test]
    fn the_readme_names_every_ignored_key() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("Ignored keys do not change what is trained")
            .expect("the README's paragraph on ignored keys");
        let paragraph = &readme[start..start + readme[start..].find("\n\n").unwrap_or(0)];
        for key in IGNORED_KEYS.iter().chain(IGNORED_NESTED_KEYS) {
            assert!(
                paragraph.contains(&format!("`{key}`")),
                "the README does not name `{key}`"
            );
        }
    }
}
