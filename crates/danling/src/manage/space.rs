//! The distributions a search sweep samples, in the spelling of Hydra's optuna sweeper where it has
//! one: `uniform(a,b)` (Hydra's `interval(a,b)`), `loguniform(a,b)` (`tag(log, interval(a,b))`),
//! `int(a,b)` (`int(interval(a,b))`, and `tag(log, int(interval(a,b)))` on a log scale) and
//! `choice(a,b,...)`. Bounds are inclusive.
//!
//! Each distribution has an *internal* scale on which samplers work: the value itself for
//! `uniform`, its logarithm for the log ones, `[a - 0.5, b + 0.5]` rounded for integers (so that
//! every integer has the same width), and the index for a choice. A sampled float keeps 4
//! significant digits: a trial's run name stays readable, and a finer learning rate than that is
//! never what decides a search.

use serde_json::Value;

use crate::Override;
use crate::rng::Rng;

/// The significant digits a sampled float keeps.
const DIGITS: i32 = 4;

/// One key's distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// A float between `low` and `high`.
    Uniform {
        /// The low end.
        low: f64,
        /// The high end.
        high: f64,
    },
    /// A float between `low` and `high`, uniform in its logarithm; `low > 0`.
    LogUniform {
        /// The low end, above 0.
        low: f64,
        /// The high end.
        high: f64,
    },
    /// An integer from `low` to `high`, uniform in its logarithm when `log` (then `low >= 1`).
    Int {
        /// The lowest integer.
        low: i64,
        /// The highest integer.
        high: i64,
        /// Uniform in the logarithm.
        log: bool,
    },
    /// One of these values.
    Choice(Vec<Value>),
}

/// Splits `text` at the commas outside brackets, braces, parentheses and quotes.
pub(crate) fn top_level_split(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '{' | '(') => depth += 1,
            (None, ']' | '}' | ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// `name(inner)` as its name and inner text, when `text` is one call.
pub(crate) fn call(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    let open = text.find('(')?;
    let name = &text[..open];
    let inner = text[open + 1..].strip_suffix(')')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some((name, inner))
}

/// The words of an unknown distribution's error.
const KNOWN: &str = "uniform(a,b), loguniform(a,b), int(a,b), choice(a,b,...) or range(start,stop[,step])";

impl Dist {
    /// The distribution `text` spells for `key`: `None` when `text` is not a call of one (a grid
    /// value, or `range(...)`); an error names the key and what is wrong.
    pub fn parse(key: &str, text: &str) -> Result<Option<Dist>, String> {
        let Some((name, inner)) = call(text) else {
            return Ok(None);
        };
        let at = |message: String| format!("sweep `{key}={}`: {message}", text.trim());
        let numbers = |inner: &str| -> Result<(f64, f64), String> {
            let parts = top_level_split(inner);
            let parsed: Vec<f64> = parts
                .iter()
                .map(|p| p.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| at(format!("`{name}` takes two numbers, low and high")))?;
            match parsed.as_slice() {
                [low, high] if low.is_finite() && high.is_finite() => Ok((*low, *high)),
                _ => Err(at(format!("`{name}` takes two finite numbers, low and high"))),
            }
        };
        let integers = |(low, high): (f64, f64)| -> Result<(i64, i64), String> {
            if low.fract() != 0.0 || high.fract() != 0.0 || low.abs() > 9e15 || high.abs() > 9e15 {
                return Err(at("`int` takes two integers".to_owned()));
            }
            Ok((low as i64, high as i64))
        };
        let dist = match name {
            "range" => return Ok(None),
            "uniform" | "interval" => {
                let (low, high) = numbers(inner)?;
                Dist::Uniform { low, high }
            }
            "loguniform" => {
                let (low, high) = numbers(inner)?;
                Dist::LogUniform { low, high }
            }
            "int" => {
                let inner = call(inner)
                    .filter(|(n, _)| *n == "interval")
                    .map_or(inner, |(_, i)| i);
                let (low, high) = integers(numbers(inner)?)?;
                Dist::Int {
                    low,
                    high,
                    log: false,
                }
            }
            "choice" => {
                let mut values = Vec::new();
                for part in top_level_split(inner) {
                    let part = part.trim();
                    if part.is_empty() {
                        return Err(at("`choice` has an empty value".to_owned()));
                    }
                    values.push(Override::parse(key, part).map_err(|e| at(e.to_string()))?.value);
                }
                Dist::Choice(values)
            }
            "tag" => {
                let (tag, rest) = inner.split_once(',').ok_or_else(|| {
                    at("`tag` takes a tag and a distribution: tag(log, interval(a,b))".into())
                })?;
                if tag.trim() != "log" {
                    return Err(at(format!("the tag `{}` is not `log`", tag.trim())));
                }
                match call(rest) {
                    Some(("interval", inner)) => {
                        let (low, high) = numbers(inner)?;
                        Dist::LogUniform { low, high }
                    }
                    Some(("int", inner)) => {
                        let inner = call(inner)
                            .filter(|(n, _)| *n == "interval")
                            .map_or(inner, |(_, i)| i);
                        let (low, high) = integers(numbers(inner)?)?;
                        Dist::Int { low, high, log: true }
                    }
                    _ => {
                        return Err(at(
                            "`tag(log, ...)` takes interval(a,b) or int(interval(a,b))".into()
                        ));
                    }
                }
            }
            other => return Err(at(format!("unknown distribution `{other}`: write {KNOWN}"))),
        };
        dist.check().map_err(at)?;
        Ok(Some(dist))
    }

    /// Whether the distribution has a value to draw: a range that is not empty, a log scale above 0.
    fn check(&self) -> Result<(), String> {
        match *self {
            Dist::Uniform { low, high } if low >= high => {
                Err(format!("the range is empty: {low} is not below {high}"))
            }
            Dist::LogUniform { low, high } if low <= 0.0 => Err(format!(
                "a log-uniform range must stay above 0, and {low} does not (from {low} to {high})"
            )),
            Dist::LogUniform { low, high } if low >= high => {
                Err(format!("the range is empty: {low} is not below {high}"))
            }
            Dist::Int { low, high, .. } if low > high => {
                Err(format!("the range is empty: {low} is above {high}"))
            }
            Dist::Int { low, log: true, .. } if low < 1 => Err(format!(
                "a log-scale integer range must stay at 1 or above, and {low} does not"
            )),
            Dist::Choice(ref values) if values.is_empty() => Err("`choice` has no values".into()),
            _ => Ok(()),
        }
    }

    /// The distribution as one canonical spelling (for the sweep's record and its group).
    pub fn spec(&self) -> String {
        match self {
            Dist::Uniform { low, high } => format!("uniform({low},{high})"),
            Dist::LogUniform { low, high } => format!("loguniform({low},{high})"),
            Dist::Int {
                low,
                high,
                log: false,
            } => format!("int({low},{high})"),
            Dist::Int { low, high, log: true } => format!("tag(log,int({low},{high}))"),
            Dist::Choice(values) => format!(
                "choice({})",
                values.iter().map(Value::to_string).collect::<Vec<_>>().join(",")
            ),
        }
    }

    /// A value of the distribution that config validation can check: its low end, or first choice.
    pub fn example(&self) -> Value {
        match self {
            Dist::Uniform { low, .. } | Dist::LogUniform { low, .. } => serde_json::json!(low),
            Dist::Int { low, .. } => Value::from(*low),
            Dist::Choice(values) => values[0].clone(),
        }
    }

    /// Whether samplers see it as categories (a choice) rather than numbers.
    pub fn is_categorical(&self) -> bool {
        matches!(self, Dist::Choice(_))
    }

    /// The internal scale's bounds; for a choice, `[0, n)`.
    pub fn bounds(&self) -> (f64, f64) {
        match *self {
            Dist::Uniform { low, high } => (low, high),
            Dist::LogUniform { low, high } => (low.ln(), high.ln()),
            Dist::Int {
                low,
                high,
                log: false,
            } => (low as f64 - 0.5, high as f64 + 0.5),
            Dist::Int { low, high, log: true } => ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln()),
            Dist::Choice(ref values) => (0.0, values.len() as f64),
        }
    }

    /// The value at internal point `x` (clamped into range, rounded as the distribution rounds).
    pub fn value(&self, x: f64) -> Value {
        let (lo, hi) = self.bounds();
        let x = x.clamp(lo, hi);
        match *self {
            Dist::Uniform { low, high } => serde_json::json!(round(x).clamp(low, high)),
            Dist::LogUniform { low, high } => serde_json::json!(round(x.exp()).clamp(low, high)),
            Dist::Int {
                low,
                high,
                log: false,
            } => Value::from((x.round() as i64).clamp(low, high)),
            Dist::Int { low, high, log: true } => Value::from((x.exp().round() as i64).clamp(low, high)),
            Dist::Choice(ref values) => values[(x.floor() as usize).min(values.len() - 1)].clone(),
        }
    }

    /// The internal point of `value`; `None` when the value is not one of this distribution.
    pub fn internal(&self, value: &Value) -> Option<f64> {
        match *self {
            Dist::Uniform { .. } => value.as_f64(),
            Dist::LogUniform { .. } => value.as_f64().filter(|v| *v > 0.0).map(f64::ln),
            Dist::Int { log: false, .. } => value.as_i64().map(|v| v as f64),
            Dist::Int { log: true, .. } => value.as_i64().filter(|v| *v > 0).map(|v| (v as f64).ln()),
            Dist::Choice(ref values) => values.iter().position(|v| v == value).map(|i| i as f64 + 0.5),
        }
    }

    /// A draw from the distribution itself (uniform on the internal scale).
    pub fn sample(&self, rng: &mut Rng) -> Value {
        let (lo, hi) = self.bounds();
        self.value(lo + rng.uniform() * (hi - lo))
    }
}

/// `x` to [`DIGITS`] significant digits.
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(DIGITS - 1 - x.abs().log10().floor() as i32);
    // Parse the printed value back, so that 0.003162 is stored as the float that prints so.
    format!("{}", (x * scale).round() / scale).parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Option<Dist>, String> {
        Dist::parse("optim.lr", text)
    }

    #[test]
    fn our_spellings_and_hydras_give_the_same_distributions() {
        let log = Some(Dist::LogUniform { low: 1e-4, high: 0.1 });
        assert_eq!(parse("loguniform(1e-4,0.1)").unwrap(), log);
        assert_eq!(parse("tag(log, interval(1e-4, 0.1))").unwrap(), log);
        assert_eq!(
            parse("uniform(0, 0.5)").unwrap(),
            parse("interval(0,0.5)").unwrap()
        );
        let int = Some(Dist::Int {
            low: 16,
            high: 256,
            log: false,
        });
        assert_eq!(parse("int(16,256)").unwrap(), int);
        assert_eq!(parse("int(interval(16, 256))").unwrap(), int);
        assert!(matches!(
            parse("tag(log,int(interval(16,256)))").unwrap(),
            Some(Dist::Int { log: true, .. })
        ));
        assert_eq!(
            parse("choice(relu, 'a,b', [1,2])").unwrap(),
            Some(Dist::Choice(vec![json!("relu"), json!("a,b"), json!([1, 2])]))
        );
        // Grid values are not distributions.
        for grid in ["0.1", "[1,2]", "range(1,4)", "relu"] {
            assert_eq!(parse(grid).unwrap(), None, "{grid}");
        }
    }

    #[test]
    fn bad_distributions_are_one_line_naming_the_key_and_the_fault() {
        for (text, says) in [
            ("uniform(1,1)", "empty"),
            ("uniform(2,1)", "empty"),
            ("int(5,4)", "empty"),
            ("loguniform(0,1)", "above 0"),
            ("loguniform(-1,1)", "above 0"),
            ("tag(log,int(0,8))", "1 or above"),
            ("normal(0,1)", "unknown distribution `normal`"),
            ("uniform(a,1)", "two numbers"),
            ("uniform(0,1,2)", "two finite numbers"),
            ("int(0.5,3)", "two integers"),
            ("choice()", "empty value"),
            ("tag(lin,interval(0,1))", "not `log`"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(
                error.contains("optim.lr") && error.contains(says),
                "{text}: {error}"
            );
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn draws_stay_in_range_with_four_digits_and_map_back_to_their_point() {
        let dists = [
            parse("loguniform(1e-5,0.3)").unwrap().unwrap(),
            parse("uniform(-1,2)").unwrap().unwrap(),
            parse("int(1,6)").unwrap().unwrap(),
            parse("tag(log,int(interval(8,512)))").unwrap().unwrap(),
            parse("choice(a,b,c)").unwrap().unwrap(),
        ];
        let mut rng = Rng::from_parts(&[3]);
        for dist in &dists {
            let (lo, hi) = dist.bounds();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..2000 {
                let value = dist.sample(&mut rng);
                let x = dist.internal(&value).unwrap();
                assert!(x >= lo - 1e-9 && x <= hi + 1e-9, "{} {value}", dist.spec());
                assert_eq!(dist.value(x), value, "{}", dist.spec());
                if let Some(f) = value.as_f64().filter(|_| value.is_f64()) {
                    let digits = format!("{:e}", f)
                        .split('e')
                        .next()
                        .unwrap()
                        .replace(['.', '-'], "")
                        .len();
                    assert!(digits <= 4, "{f}");
                }
                seen.insert(value.to_string());
            }
            if let Dist::Int { low: 1, high: 6, .. } = dist {
                // Both ends of an integer range are drawn.
                assert_eq!(seen.len(), 6);
            }
            if dist.is_categorical() {
                assert_eq!(seen.len(), 3);
            }
        }
    }
}
