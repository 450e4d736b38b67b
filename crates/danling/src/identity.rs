//! Experiment and run identity, derived from git and the canonical config.
//!
//! An experiment is one commit; a run is one config of an experiment; `uuid` also folds in the
//! uncommitted changes, so two runs from different dirty trees never share an id. The formulas are a
//! contract: the same input gives the same `id` on every machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{Config, Sections, canonical_config};

/// The experiment id used when there is no git, no repository, or no commit.
pub const NO_GIT_EXPERIMENT_ID: &str = "xxxxxxxxxxxxxxxx";

/// UUIDv5(`NAMESPACE_URL`, `"https://danling.org"`), the root of every danling identity.
pub fn namespace_danling() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://danling.org")
}

/// Why the identity could not be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A git command that should work inside a repository failed.
    #[error("`git {command}` failed in {}: {message}", dir.display())]
    Git {
        /// The git arguments.
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// What git said.
        message: String,
    },
}

/// What git says about a working directory: HEAD's SHA and the uncommitted diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitState {
    /// HEAD's full SHA, or `None` outside a repository (or without git, or before the first commit).
    pub head: Option<String>,
    /// The bytes of `git diff HEAD --binary`; empty on a clean tree or outside git.
    pub diff: Vec<u8>,
}

impl GitState {
    /// Runs `git` in `dir`. A missing git or a directory outside any repository is not an error.
    pub fn discover(dir: &Path) -> Result<Self, IdentityError> {
        let head = match Command::new("git")
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .current_dir(dir)
            .output()
        {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            _ => return Ok(Self::default()),
        };
        // `--no-color` and `--no-ext-diff` keep a user's git config from changing the bytes hashed.
        let args = ["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"];
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| IdentityError::Git {
                command: args.join(" "),
                dir: dir.to_owned(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(IdentityError::Git {
                command: args.join(" "),
                dir: dir.to_owned(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(Self {
            head: Some(head),
            diff: out.stdout,
        })
    }
}

/// Who a run is: the ids, names and directories derived from git and the config.
///
/// Serialised as the `identity` half of `runner.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// HEAD's 40-hex SHA, or 16 × `x` outside git (or the config's `experiment_id`).
    pub experiment_id: String,
    /// UUIDv5(`NAMESPACE_DANLING`, `experiment_id`).
    pub experiment_uuid: Uuid,
    /// `run_uuid` as 32 lowercase hex digits.
    pub run_id: String,
    /// UUIDv5(`experiment_uuid`, canonical config).
    pub run_uuid: Uuid,
    /// UUIDv5(`run_uuid`, SHA-256 hex of the uncommitted diff).
    pub uuid: Uuid,
    /// `{experiment_id[..8]}-{run_id[..8]}-{uuid hex[..8]}`, unless the config sets `id`.
    pub id: String,
    /// `{experiment_name}-{run_name}`, unless the config sets `name`.
    pub name: String,
    /// The run directory: `{project_root}/{name}-{id}`, unless the config sets `dir`.
    pub dir: PathBuf,
    /// `{dir}/{checkpoint_dir_name}`, unless the config sets `checkpoint_dir`.
    pub checkpoint_dir: PathBuf,
    /// Whether the working tree had uncommitted changes.
    pub git_dirty: bool,
    /// The danling version that derived this identity.
    pub danling_version: String,
    /// The run this one was continued from, when it was continued from another run's checkpoint
    /// under a different id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
}

/// Where a run that was continued under a new id came from: the lineage `runner.yaml` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The id of the run whose checkpoint was continued.
    pub id: String,
    /// The checkpoint file it was continued from, as given.
    pub checkpoint: PathBuf,
    /// The optimizer step of that checkpoint.
    pub step: u64,
}

impl Identity {
    /// Derives the identity of `config`, asking git about the current working directory.
    pub fn new<S: Sections>(config: &Config<S>) -> Result<Self, IdentityError> {
        let git = GitState::discover(Path::new("."))?;
        Ok(Self::from_git(config, &git))
    }

    /// Derives the identity of `config` from a known git state.
    pub fn from_git<S: Sections>(config: &Config<S>, git: &GitState) -> Self {
        let experiment_id = config
            .experiment_id
            .clone()
            .or_else(|| git.head.clone())
            .unwrap_or_else(|| NO_GIT_EXPERIMENT_ID.to_owned());
        Self::derive(config, experiment_id, &git.diff)
    }

    /// Derives the identity of `config` with a given experiment id and diff, without running git.
    pub fn with_experiment_id<S: Sections>(
        config: &Config<S>,
        experiment_id: &str,
        diff: &str,
    ) -> Result<Self, IdentityError> {
        Ok(Self::derive(config, experiment_id.to_owned(), diff.as_bytes()))
    }

    fn derive<S: Sections>(config: &Config<S>, experiment_id: String, diff: &[u8]) -> Self {
        let canonical = canonical_config(&config.to_value());
        let Uuids {
            experiment_uuid,
            run_uuid,
            uuid,
        } = Uuids::derive(&experiment_id, &canonical, diff);
        let run_id = run_uuid.simple().to_string();

        let id = config.id.clone().unwrap_or_else(|| {
            let uuid_hex = uuid.simple().to_string();
            format!(
                "{}-{}-{}",
                prefix(&experiment_id, 8),
                &run_id[..8],
                &uuid_hex[..8]
            )
        });
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", config.experiment_name, config.run_name));
        let dir = config
            .dir
            .clone()
            .unwrap_or_else(|| config.project_root.join(format!("{name}-{id}")));
        let checkpoint_dir = config
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| dir.join(&config.checkpoint_dir_name));

        Self {
            experiment_id,
            experiment_uuid,
            run_id,
            run_uuid,
            uuid,
            id,
            name,
            dir,
            checkpoint_dir,
            git_dirty: !diff.is_empty(),
            danling_version: crate::VERSION.to_owned(),
            parent: None,
        }
    }
}

/// The three UUIDs of the identity chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uuids {
    /// UUIDv5(`NAMESPACE_DANLING`, experiment id).
    pub experiment_uuid: Uuid,
    /// UUIDv5(`experiment_uuid`, canonical config).
    pub run_uuid: Uuid,
    /// UUIDv5(`run_uuid`, SHA-256 hex of the diff).
    pub uuid: Uuid,
}

impl Uuids {
    /// Runs the chain over an experiment id, a canonical config string and the uncommitted diff.
    pub fn derive(experiment_id: &str, canonical: &str, diff: &[u8]) -> Self {
        let experiment_uuid = Uuid::new_v5(&namespace_danling(), experiment_id.as_bytes());
        let run_uuid = Uuid::new_v5(&experiment_uuid, canonical.as_bytes());
        let uuid = Uuid::new_v5(&run_uuid, hex(&Sha256::digest(diff)).as_bytes());
        Self {
            experiment_uuid,
            run_uuid,
            uuid,
        }
    }
}

/// The first `n` characters of `s` (all of it when shorter).
fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
