//! Config: typed core keys with documented defaults, the user's sections, files in YAML, JSON or TOML,
//! dotted command-line overrides, validation, and the canonical form that identity hashes.
//!
//! Precedence is defaults < file < overrides. Everything is resolved and validated in one place,
//! [`Config::load`], which returns a typed [`ConfigError`] naming the key or file at fault.

mod canonical;
mod data;
mod device;
mod error;
mod load;
mod schema;
mod validate;

pub use canonical::{IGNORED_KEYS, IGNORED_NESTED_KEYS, canonical_config, canonical_json};
pub use data::DataConfig;
pub use device::{AUTO_ORDER, DEVICE_SPELLINGS, Device};
pub use error::ConfigError;
pub use load::{Override, apply_overrides, read_file};
pub use schema::{
    Budget, Config, DEFAULT_EPOCHS, EmaConfig, MlflowConfig, NoSections, NonFinite, OptimConfig, OptimKind,
    ParamGroupConfig, Precision, PreemptSignal, Resume, Scaling, SchedConfig, SchedKind, Sections,
};
pub use validate::{at_least_one, non_negative, positive};

#[cfg(test)]
mod tests;
