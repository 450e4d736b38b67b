//! Errors from the run directory.

use std::io;
use std::path::PathBuf;

use crate::fs::{IoError, LockError};

/// Why the run directory or one of its files could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// An I/O operation on a path failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Another live process holds the run directory's lock.
    #[error("run dir {} is in use by PID {pid} (lock file {}); stop that process first", dir.display(), lock.display())]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The process that holds it.
        pid: u32,
    },
    /// A fresh start was asked for in a run directory that already holds checkpoints.
    #[error(
        "run dir {} already holds checkpoints in {}: set `resume: true` to continue it, or pass --overwrite to start again",
        dir.display(),
        checkpoint_dir.display()
    )]
    ExistingCheckpoints {
        /// The run directory.
        dir: PathBuf,
        /// Its checkpoint directory.
        checkpoint_dir: PathBuf,
    },
    /// A document could not be serialised.
    #[error("cannot serialise {}: {message}", path.display())]
    Serialize {
        /// The file it was meant for.
        path: PathBuf,
        /// The serialiser's message.
        message: String,
    },
}

impl WorkspaceError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let at = IoError::at(action, path);
        move |source| Self::Io(at(source))
    }
}

impl From<LockError> for WorkspaceError {
    fn from(error: LockError) -> Self {
        match error {
            LockError::Io(error) => Self::Io(error),
            LockError::Held { dir, lock, pid } => Self::Locked { dir, lock, pid },
        }
    }
}
