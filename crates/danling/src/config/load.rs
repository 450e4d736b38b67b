//! Reading config files, applying dotted overrides, and turning the merged tree into a typed config.
//!
//! The layers are merged as JSON trees (defaults < file < overrides) and deserialised once, so a wrong
//! key or type is reported the same way wherever it came from.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::data::DataConfig;
use super::error::{ConfigError, DeError};
use super::schema::{Config, NoSections, Sections};

/// One command-line override: a dotted key and a value parsed as YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The key's path, one element per dotted part.
    pub path: Vec<String>,
    /// The value, parsed as YAML (`0.01` is a number, `[64,32]` a list, `abc` a string).
    pub value: Value,
}

impl Override {
    /// Parses `key` (dotted, without leading dashes) and its value text.
    pub fn parse(key: &str, value: &str) -> Result<Self, ConfigError> {
        let arg = format!("--{key} {value}");
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        if path.iter().any(|part| part.is_empty()) {
            return Err(ConfigError::BadOverride {
                arg,
                reason: "empty key part".into(),
            });
        }
        let value =
            parse_yaml_value(value).map_err(|message| ConfigError::BadOverride { arg, reason: message })?;
        Ok(Self { path, value })
    }

    /// The dotted key.
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

/// Reads a config document from a file, choosing the format by extension.
///
/// A `runner.yaml` document (a mapping with `config` and `identity`) is accepted: its `config` is used.
pub fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let parsed = match ext.as_deref() {
        Some("yaml" | "yml") => parse_yaml_value(&text),
        Some("json") => serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()),
        Some("toml") => toml::from_str::<Value>(&text).map_err(|e| e.to_string()),
        _ => {
            return Err(ConfigError::UnsupportedFormat {
                path: path.to_owned(),
            });
        }
    };
    let value = parsed.map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message: one_line(&message),
    })?;
    match value {
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(map) => Ok(unwrap_runner_document(map)),
        _ => Err(ConfigError::NotAMapping {
            source_name: path.display().to_string(),
        }),
    }
}

/// `runner.yaml` holds `{config, identity}` and the run's runtime facts (`world_size`, `device`);
/// reading it back means reading its `config`.
fn unwrap_runner_document(mut map: Map<String, Value>) -> Value {
    const RUNTIME: [&str; 2] = ["world_size", "device"];
    let others = map
        .keys()
        .filter(|k| !["config", "identity"].contains(&k.as_str()));
    if others.clone().all(|k| RUNTIME.contains(&k.as_str()))
        && map.contains_key("identity")
        && let Some(config) = map.remove("config").filter(Value::is_object)
    {
        return config;
    }
    Value::Object(map)
}

/// Parses YAML with YAML 1.2 booleans only (`yes`, `on` and friends stay strings).
pub(crate) fn parse_yaml_value(text: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let message = e.to_string();
        if message.contains("non-finite float") {
            // JSON, and so the canonical config, has no NaN or infinity.
            return "non-finite numbers (.nan, .inf) are not accepted".to_owned();
        }
        message.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
    })
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sets each override's value in `tree`, creating intermediate mappings as needed.
pub fn apply_overrides(tree: &mut Value, overrides: &[Override]) -> Result<(), ConfigError> {
    for item in overrides {
        let mut node = &mut *tree;
        for (depth, part) in item.path.iter().enumerate() {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                return Err(ConfigError::BadOverride {
                    arg: format!("--{}", item.key()),
                    reason: format!("`{}` is not a mapping", item.path[..depth].join(".")),
                });
            };
            node = map.entry(part.clone()).or_insert(Value::Null);
        }
        *node = item.value.clone();
    }
    Ok(())
}

impl<S: Sections> Config<S> {
    /// Reads `file` (if any), applies `overrides`, and resolves and validates the result.
    pub fn load(file: Option<&Path>, overrides: &[Override]) -> Result<Self, ConfigError> {
        let mut tree = match file {
            Some(path) => read_file(path)?,
            None => Value::Object(Map::new()),
        };
        apply_overrides(&mut tree, overrides)?;
        Self::from_value(tree)
    }

    /// Resolves a config tree (missing keys take their defaults) and validates it.
    pub fn from_value(tree: Value) -> Result<Self, ConfigError> {
        let mut config = Self::from_written(tree)?;
        config.resolve()?;
        Ok(config)
    }

    /// A config as a run directory records it (the `config` of `runner.yaml`): the keys are typed
    /// and a missing one takes its default, but nothing is resolved or validated again, so that a
    /// run whose file a person edited is still read as it stands.
    pub fn from_written(tree: Value) -> Result<Self, ConfigError> {
        let Value::Object(map) = tree else {
            return Err(ConfigError::NotAMapping {
                source_name: "document".into(),
            });
        };
        let core_keys = core_keys();
        let (mut core, mut user): (Map<String, Value>, Map<String, Value>) = map
            .into_iter()
            .partition(|(key, _)| key != DATA && core_keys.contains(key));
        let left = split_data(&mut core, &mut user);
        let core_keys: Vec<&str> = core_keys.iter().map(String::as_str).collect();

        let mut config: Config<S> = deserialize(Value::Object(core), &[])?;
        config.sections =
            deserialize(Value::Object(user), &core_keys).map_err(|e| data_suggestion(e, &left))?;
        // What `to_value` hashes and records: sections that cannot be written as JSON (a map with
        // keys that are not strings, say) are refused here, never dropped there.
        if let Err(error) = serde_json::to_string(&config.sections) {
            return Err(ConfigError::invalid_value(
                "(sections)",
                error.to_string(),
                "sections that serialise to JSON",
            ));
        }
        Ok(config)
    }

    /// The full resolved config as one mapping: core keys in their documented order, then the sections.
    ///
    /// The sections go through JSON text rather than straight to a [`Value`]: serde_json writes an
    /// `f32` as its shortest round-trip text (`0.35`), which parses back to the `f64` closest to it,
    /// where the direct way widens the `f32` to `0.3499999940395355`. So `runner.yaml` and the
    /// canonical config show the number the user wrote.
    pub fn to_value(&self) -> Value {
        let mut map = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let sections = serde_json::to_string(&self.sections)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        if let Some(Value::Object(mut sections)) = sections {
            // One `data` mapping: the runner's keys first, then the sections'.
            if let (Some(Value::Object(theirs)), Some(Value::Object(ours))) =
                (sections.remove(DATA), map.get_mut(DATA))
            {
                ours.extend(theirs);
            }
            map.extend(sections);
        }
        Value::Object(map)
    }
}

/// The mapping whose keys the runner ([`DataConfig::KEYS`]) and the user's sections share.
const DATA: &str = "data";

/// Moves the runner's keys of the `data` mapping from `user` into `core`; the rest stays for the
/// sections, and so does a `data` that is not a mapping (their deserialiser names it). Returns the
/// first key left to the sections.
fn split_data(core: &mut Map<String, Value>, user: &mut Map<String, Value>) -> Option<String> {
    let Some(Value::Object(data)) = user.get_mut(DATA) else {
        return None;
    };
    let ours: Map<String, Value> = DataConfig::KEYS
        .iter()
        .filter_map(|&key| data.remove(key).map(|value| (key.to_owned(), value)))
        .collect();
    let left = data.keys().next().cloned();
    if data.is_empty() {
        user.remove(DATA);
    }
    core.insert(DATA.to_owned(), Value::Object(ours));
    left
}

/// A typo in the `data` mapping, which the sections saw: the runner's keys are candidates too. A
/// program without a `data` section of its own is told of the first key it did not know.
fn data_suggestion(error: ConfigError, left: &Option<String>) -> ConfigError {
    match error {
        ConfigError::UnknownKey {
            key,
            closest: suggested,
        } if key == DATA || (suggested.is_none() && key.starts_with("data.")) => {
            let key = match (key == DATA, left) {
                (true, Some(first)) => format!("{DATA}.{first}"),
                _ => key,
            };
            let field = key.strip_prefix("data.").unwrap_or("");
            let closest = closest(field, &DataConfig::KEYS).map(|c| format!("{DATA}.{c}"));
            ConfigError::UnknownKey { key, closest }
        }
        other => other,
    }
}

/// The names of the core keys, in declaration order, read off the serialised default so that the
/// list can never drift from the struct.
pub(crate) fn core_keys() -> Vec<String> {
    match serde_json::to_value(Config::<NoSections>::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Deserialises `tree` into `T`, turning serde's error into a [`ConfigError`] that names the dotted
/// key. `siblings` are extra known keys at the top level, offered as suggestions for a typo there.
fn deserialize<T: DeserializeOwned>(tree: Value, siblings: &[&str]) -> Result<T, ConfigError> {
    let tree = serde_value::to_value(tree).map_err(|e| ConfigError::NotAMapping {
        source_name: e.to_string(),
    })?;
    let deserializer = serde_value::ValueDeserializer::<DeError>::new(tree);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = dotted(error.path());
        match error.into_inner() {
            DeError::UnknownField { field, expected } => {
                // The path ends with the unknown key itself; suggestions live beside it.
                let parent = key
                    .strip_suffix(field.as_str())
                    .unwrap_or("")
                    .trim_end_matches('.');
                let mut candidates: Vec<&str> = expected.to_vec();
                if parent.is_empty() {
                    candidates.extend_from_slice(siblings);
                }
                let closest = closest(&field, &candidates).map(|c| {
                    if parent.is_empty() {
                        c
                    } else {
                        format!("{parent}.{c}")
                    }
                });
                ConfigError::UnknownKey { key, closest }
            }
            DeError::WrongType { found, expected } => ConfigError::WrongType { key, expected, found },
            DeError::InvalidValue { found, expected } => ConfigError::InvalidValue {
                key,
                value: found,
                expected,
            },
            DeError::Custom(message) => ConfigError::InvalidValue {
                key,
                value: message,
                expected: "a valid value".into(),
            },
        }
    })
}

fn dotted(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            _ => {}
        }
    }
    out
}

/// The candidate closest to `key`, if it is close enough to be a plausible typo.
fn closest(key: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(key, c), *c))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;
    use crate::config::canonical_config;
    use crate::identity::{GitState, Identity};
    use crate::workspace::runner_yaml;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Floats {
        model: FloatModel,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct FloatModel {
        dropout: f32,
        scales: Vec<f32>,
    }

    impl Default for FloatModel {
        fn default() -> Self {
            Self {
                dropout: 0.35,
                scales: vec![0.1, 1e-7],
            }
        }
    }

    impl Sections for Floats {}

    #[test]
    fn a_sections_f32_is_its_shortest_text_in_runner_yaml_and_the_canonical_config() {
        let config: Config<Floats> = Config::load(None, &[]).unwrap();
        let value = config.to_value();
        assert_eq!(value["model"], json!({"dropout": 0.35, "scales": [0.1, 1e-7]}));
        let canonical = canonical_config(&value);
        assert!(
            canonical.contains(r#""model":{"dropout":0.35,"scales":[0.1,1e-7]}"#),
            "{canonical}"
        );
        let identity = Identity::from_git(&config, &GitState::default());
        let yaml = runner_yaml(&value, &identity).unwrap();
        assert!(yaml.contains("dropout: 0.35\n"), "{yaml}");
        assert!(!yaml.contains("0.3499999"), "{yaml}");
        // And it reads back to the same f32.
        let again: Config<Floats> = Config::from_value(value).unwrap();
        assert_eq!(again.sections, config.sections);
    }
}
