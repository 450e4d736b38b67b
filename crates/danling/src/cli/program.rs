//! The program a command line belongs to: its name, what it does, and every key of its config with
//! the key's default, which `--help` lists and the completions complete.

use serde_json::Value;

use super::App;

/// What the command line knows of the program it belongs to: its name, what it does, and every
/// config key of its config with the key's default.
#[derive(Debug, Clone)]
pub struct Program {
    /// The program's name ([`App::NAME`]).
    pub name: &'static str,
    /// What it does ([`App::ABOUT`]).
    pub about: &'static str,
    /// Every config key, dotted, with its default as YAML would write it, in the config's order.
    pub keys: Vec<(String, String)>,
}

impl Program {
    /// The program of app `A`.
    pub fn of<A: App>() -> Self {
        Self::new::<A::Sections>(A::NAME, A::ABOUT)
    }

    /// The program `name`, which does `about`, with config sections `S`.
    pub fn new<S: crate::Sections>(name: &'static str, about: &'static str) -> Self {
        let tree = crate::Config::<S>::default().to_value();
        let mut keys = Vec::new();
        flatten("", &tree, &mut keys);
        Self { name, about, keys }
    }

    /// `text` with `{app}` replaced by the program's name.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{app}", self.name)
    }
}

/// The dotted keys of the mappings of `tree` with their leaf values (a list or null is a leaf).
fn flatten(prefix: &str, tree: &Value, keys: &mut Vec<(String, String)>) {
    match tree {
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, keys);
            }
        }
        Value::String(text) => keys.push((prefix.to_owned(), text.clone())),
        leaf => keys.push((prefix.to_owned(), leaf.to_string())),
    }
}

/// The help heading of every other config key of a command that reads a config: listed for `--help`
/// and the completions, parsed as overrides.
pub const ALL_KEYS: &str = "Config keys (default)";
