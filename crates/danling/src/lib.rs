//! danling sets up everything around a neural-network training loop on burn: config with files and
//! overrides, experiment identity from git and the config, the run directory, logging, results and
//! scores. The user writes the model; danling does the rest, correctly.
//!
//! ```
//! use danling::{Config, Identity, Override};
//!
//! let overrides = [Override::parse("optim.lr", "0.01")?];
//! let config: Config = Config::load(None, &overrides)?;
//! let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "")?;
//! assert_eq!(identity.name, "DanLing-Run");
//! assert!(identity.id.starts_with("xxxxxxxx-"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "mimalloc")]
pub mod alloc;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod env;
pub mod fs;
pub mod identity;
pub mod log;
pub mod manage;
pub mod metrics;
mod nonfinite;
pub mod optim;
pub mod results;
pub mod rng;
pub mod runner;
pub mod signals;
pub mod state;
pub mod workspace;

pub use config::{Budget, Config, ConfigError, Device, NoSections, Override, Precision, Sections};
pub use identity::{Identity, IdentityError, Parent};
pub use results::{Results, ScoreMode, Scoring};
pub use runner::{Runner, RunnerError, Session, StepOutput, Targets, Task};
pub use workspace::{RunDir, StartMode, WorkspaceError};

/// The version of this crate, as written into `runner.yaml` and the `run.log` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The items most programs need.
pub mod prelude {
    pub use crate::{Config, Identity, Override, Results, Scoring, Sections, Session, StartMode};
}
