//! `danling sweep`: the Cartesian product of some config keys' values, each trial an ordinary run
//! trained by a child `danling train`, N at once (`trials.rs`). Re-running a sweep skips the finished
//! trials and resumes the others.
//!
//! Values follow Hydra's syntax: `KEY=a,b` is a choice of two, brackets make one list value
//! (`model.hidden=[64],[128,64]`), and `range(start,stop[,step])` counts from start up to (not
//! including) stop. A file's `sweep:` mapping gives the same, a list or such a string per key; a key
//! swept on the command line replaces the file's.

use crate::Override;
use serde_json::Value;

use super::space::{Dist, top_level_split};
use sha2::{Digest, Sha256};

/// One swept key and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The dotted config key.
    pub key: String,
    /// Its values: a grid's, in order, or a distribution sampled by `--trials`.
    pub values: Values,
}

/// The values of a swept key.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Every one of these, crossed with the other grid keys.
    Grid(Vec<Value>),
    /// `--trials` draws from this.
    Sampled(Dist),
}

impl Axis {
    /// A grid axis.
    pub fn grid(key: &str, values: Vec<Value>) -> Self {
        Self {
            key: key.to_owned(),
            values: Values::Grid(values),
        }
    }

    /// The axis as its record spells it: the grid's values as JSON, or the distribution.
    pub fn spec(&self) -> String {
        match &self.values {
            Values::Grid(values) => Value::Array(values.clone()).to_string(),
            Values::Sampled(dist) => dist.spec(),
        }
    }
}

/// `range(start,stop[,step])` as its numbers.
fn range(inner: &str, key: &str) -> Result<Vec<Value>, String> {
    let bad = || format!("sweep `{key}`: range({inner}) needs numbers: range(start, stop[, step])");
    let numbers: Vec<f64> = inner
        .split(',')
        .map(|n| n.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (start, stop, step) = match numbers.as_slice() {
        [start, stop] => (*start, *stop, 1.0),
        [start, stop, step] => (*start, *stop, *step),
        _ => return Err(bad()),
    };
    if step == 0.0 || !step.is_finite() || (stop - start) / step > 10_000.0 {
        return Err(format!(
            "sweep `{key}`: range({inner}) has a step of 0 or more than 10000 values"
        ));
    }
    let integers = numbers.iter().all(|n| n.fract() == 0.0);
    let mut values = Vec::new();
    let mut k = 0.0;
    loop {
        let x = start + k * step;
        if (step > 0.0 && x >= stop - step.abs() * 1e-9) || (step < 0.0 && x <= stop + step.abs() * 1e-9) {
            break;
        }
        values.push(if integers {
            Value::from(x as i64)
        } else {
            serde_json::json!(x)
        });
        k += 1.0;
    }
    if values.is_empty() {
        return Err(format!("sweep `{key}`: range({inner}) is empty"));
    }
    Ok(values)
}

/// The values of `key` written as `text`: a grid (`a,b`, `[1],[2,3]`, `range(0,3)`) or one
/// distribution (`loguniform(1e-4,0.1)`, [`Dist::parse`]).
pub fn parse_values(key: &str, text: &str) -> Result<Values, String> {
    let parts = top_level_split(text);
    if let [one] = parts.as_slice()
        && let Some(dist) = Dist::parse(key, one)?
    {
        return Ok(Values::Sampled(dist));
    }
    let mut values = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("sweep `{key}={text}`: an empty value"));
        }
        if Dist::parse(key, part)?.is_some() {
            return Err(format!(
                "sweep `{key}={text}`: a distribution is the key's whole value, not one of a grid's"
            ));
        }
        if let Some(inner) = part.strip_prefix("range(").and_then(|p| p.strip_suffix(')')) {
            values.extend(range(inner, key)?);
            continue;
        }
        let parsed = Override::parse(key, part).map_err(|e| format!("sweep `{key}={text}`: {e}"))?;
        values.push(parsed.value);
    }
    Ok(Values::Grid(values))
}

/// An axis from the command line: `KEY=V1,V2...`.
pub fn parse_axis(arg: &str) -> Result<Axis, String> {
    let (key, text) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}` is not a sweep: write KEY=V1,V2 (optim.lr=0.1,0.01)"))?;
    let key = key.trim().trim_start_matches("--").to_owned();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!("`{arg}`: the key is not a dotted config key"));
    }
    Ok(Axis {
        values: parse_values(&key, text)?,
        key,
    })
}

/// The axes of a file's `sweep:` mapping.
pub fn file_axes(sweep: &indexmap::IndexMap<String, Value>) -> Result<Vec<Axis>, String> {
    sweep
        .iter()
        .map(|(key, spec)| {
            let values = match spec {
                Value::Array(values) => Values::Grid(values.clone()),
                Value::String(text) => parse_values(key, text)?,
                other => Values::Grid(vec![other.clone()]),
            };
            if values == Values::Grid(Vec::new()) {
                return Err(format!("sweep `{key}` has no values"));
            }
            Ok(Axis {
                key: key.clone(),
                values,
            })
        })
        .collect()
}

/// The file's axes with the command line's: a key on both takes the command line's values, in the
/// file's place.
pub fn merge(file: Vec<Axis>, cli: Vec<Axis>) -> Vec<Axis> {
    let mut axes = file;
    for axis in cli {
        match axes.iter_mut().find(|a| a.key == axis.key) {
            Some(existing) => *existing = axis,
            None => axes.push(axis),
        }
    }
    axes
}

/// Every combination of the grid axes, the last varying fastest (the sampled ones are left out).
pub fn product(axes: &[Axis]) -> Vec<Vec<(String, Value)>> {
    let mut trials: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for axis in axes {
        let Values::Grid(values) = &axis.values else {
            continue;
        };
        trials = trials
            .into_iter()
            .flat_map(|trial| {
                values.iter().map(move |value| {
                    let mut next = trial.clone();
                    next.push((axis.key.clone(), value.clone()));
                    next
                })
            })
            .collect();
    }
    trials
}

/// A value as a run name and the log write it: strings bare, the rest as compact JSON.
pub fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run-name suffix of a trial: `lr=0.01_hidden=[128,64]`, safe in one path component.
pub fn suffix(trial: &[(String, Value)]) -> String {
    trial
        .iter()
        .map(|(key, value)| format!("{}={}", key.rsplit('.').next().unwrap_or(key), shown(value)))
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The default group of a sweep: from the base config (without the swept keys), the sweep's axes
/// and, for a search, `search` (its sampler and pruner; not its number of trials, so that more
/// trials extend the same sweep).
pub fn default_group(base: &Value, axes: &[Axis], search: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(crate::config::canonical_config(base));
    for axis in axes {
        hasher.update(axis.key.as_bytes());
        hasher.update(axis.spec());
    }
    hasher.update(search);
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("sweep-{hex}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hydra_syntax_gives_choices_lists_and_ranges() {
        let grid = |arg: &str| match parse_axis(arg).unwrap().values {
            Values::Grid(values) => values,
            Values::Sampled(dist) => panic!("{arg} parsed as {dist:?}"),
        };
        assert_eq!(grid("optim.lr=0.1,0.01"), [json!(0.1), json!(0.01)]);
        assert_eq!(
            grid("model.hidden=[64],[128,64]"),
            [json!([64]), json!([128, 64])]
        );
        assert_eq!(grid("seed=range(1,4)"), [json!(1), json!(2), json!(3)]);
        assert_eq!(grid("x=range(0,1,0.5),7"), [json!(0.0), json!(0.5), json!(7)]);
        assert_eq!(grid("model.activation=relu,'a,b'"), [json!("relu"), json!("a,b")]);
        assert_eq!(
            parse_axis("optim.lr=loguniform(1e-4,0.1)").unwrap().values,
            Values::Sampled(Dist::LogUniform { low: 1e-4, high: 0.1 })
        );
        assert!(
            parse_axis("optim.lr=uniform(0,1),0.5")
                .unwrap_err()
                .contains("whole value")
        );
        assert!(
            parse_axis("optim.lr=gauss(0,1)")
                .unwrap_err()
                .contains("unknown distribution")
        );
        assert!(parse_axis("optim.lr").unwrap_err().contains("KEY=V1,V2"));
        assert!(parse_axis("seed=range(1)").unwrap_err().contains("range(1)"));
        assert!(parse_axis("seed=1,,2").unwrap_err().contains("empty"));
    }

    #[test]
    fn the_product_varies_the_last_axis_fastest_and_the_command_line_replaces_the_file() {
        let file = vec![
            Axis::grid("a", vec![json!(1), json!(2)]),
            Axis::grid("b", vec![json!("x")]),
        ];
        let cli = vec![
            Axis::grid("b", vec![json!("y"), json!("z")]),
            Axis::grid("c", vec![json!(true)]),
            Axis {
                key: "d".into(),
                values: Values::Sampled(Dist::Uniform { low: 0.0, high: 1.0 }),
            },
        ];
        let axes = merge(file, cli);
        assert_eq!(
            axes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        let trials = product(&axes);
        assert_eq!(trials.len(), 4);
        assert_eq!(
            trials[1],
            vec![
                ("a".into(), json!(1)),
                ("b".into(), json!("z")),
                ("c".into(), json!(true))
            ]
        );
        assert_eq!(suffix(&trials[0]), "a=1_b=y_c=true");
    }
}
