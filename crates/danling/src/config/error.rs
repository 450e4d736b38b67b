//! Config errors, and the serde error type that keeps enough structure to name the key at fault.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::de::{Expected, Unexpected};

/// Why a config could not be read, parsed, overridden or validated.
///
/// Every message is one line that names the file or the dotted key at fault, so the CLI can print it
/// as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file's extension names no format danling reads.
    #[error("config file {}: unsupported extension (expected .yaml, .yml, .json or .toml)", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid YAML, JSON or TOML.
    #[error("cannot parse config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// The document's top level is not a mapping.
    #[error("config {source_name}: the top level must be a mapping of keys to values")]
    NotAMapping {
        /// The file, or "overrides".
        source_name: String,
    },
    /// A key that no part of the config knows.
    #[error("unknown config key `{key}`{}", suggestion(closest.as_deref()))]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// The closest known key at the same level, if one is close enough.
        closest: Option<String>,
    },
    /// A value of the wrong type.
    #[error("config key `{key}`: expected {expected}, found {found}")]
    WrongType {
        /// The dotted key.
        key: String,
        /// What the key takes.
        expected: String,
        /// What was given.
        found: String,
    },
    /// A value of the right type but outside what the key accepts.
    #[error("config key `{key}`: invalid value {value}, expected {expected}")]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// The value as given.
        value: String,
        /// What the key accepts.
        expected: String,
    },
    /// Two keys that cannot be set together.
    #[error("config keys `{first}` and `{second}` cannot both be set: {reason}")]
    Conflict {
        /// One key.
        first: String,
        /// The other key.
        second: String,
        /// What to do instead.
        reason: String,
    },
    /// A command-line override that is not `--a.b value` or `--a.b=value`.
    #[error("bad override `{arg}`: {reason}")]
    BadOverride {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn suggestion(closest: Option<&str>) -> String {
    closest
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

impl ConfigError {
    /// An out-of-range value.
    pub fn invalid_value(key: &str, value: impl fmt::Display, expected: &str) -> Self {
        Self::InvalidValue {
            key: key.to_owned(),
            value: value.to_string(),
            expected: expected.to_owned(),
        }
    }
}

/// A serde error that records what went wrong as data rather than as a formatted string, so that
/// [`ConfigError`] can name the key and suggest the closest one.
#[derive(Debug)]
pub(crate) enum DeError {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    WrongType {
        found: String,
        expected: String,
    },
    InvalidValue {
        found: String,
        expected: String,
    },
    Custom(String),
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::UnknownField { field, .. } => write!(f, "unknown field `{field}`"),
            DeError::WrongType { found, expected } => write!(f, "expected {expected}, found {found}"),
            DeError::InvalidValue { found, expected } => {
                write!(f, "invalid value {found}, expected {expected}")
            }
            DeError::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

impl serde::de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Custom(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        DeError::WrongType {
            found: describe_found(&unexp),
            expected: describe_expected(exp),
        }
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        DeError::InvalidValue {
            found: describe_value(&unexp),
            expected: describe_expected(exp),
        }
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        DeError::WrongType {
            found: format!("a list of length {len}"),
            expected: describe_expected(exp),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::InvalidValue {
            found: format!("{variant:?}"),
            expected: one_of(expected),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::UnknownField {
            field: field.to_owned(),
            expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::Custom(format!("missing key `{field}`"))
    }
}

fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    format!("one of {}", quoted.join(", "))
}

/// Names the kind of value a user gave, in config-file words.
fn describe_found(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Unit | Unexpected::Option => "null".into(),
        Unexpected::Bool(b) => format!("boolean {b}"),
        Unexpected::Unsigned(n) => format!("integer {n}"),
        Unexpected::Signed(n) => format!("integer {n}"),
        Unexpected::Float(x) => format!("number {x}"),
        Unexpected::Char(c) => format!("string {:?}", c.to_string()),
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

fn describe_value(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Str(s) => format!("{s:?}"),
        Unexpected::Unsigned(n) => n.to_string(),
        Unexpected::Signed(n) => n.to_string(),
        Unexpected::Float(x) => x.to_string(),
        other => describe_found(other),
    }
}

/// Turns serde's names for Rust types into config-file words.
fn describe_expected(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "a string" => text,
        "string or map" => "a string".into(),
        "option" => "a value or null".into(),
        "a sequence" => "a list".into(),
        "path string" => "a path".into(),
        _ if text.starts_with("struct ") || text.starts_with("a map") => "a mapping".into(),
        _ => text,
    }
}
