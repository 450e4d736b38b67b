//! The file-system leaves: atomic writes, writes past the page cache, the run-directory lock, and the
//! one I/O error they all report.

mod atomic;
mod direct;
mod lock;

use std::io;
use std::path::PathBuf;

pub(crate) use atomic::sync_dir;
pub use atomic::{AtomicFile, PendingFiles, StagedFiles, link_atomic, write_atomic};
pub use lock::{LOCK_FILE, LockError, RunLock, lock_holder};

/// An I/O operation on a path failed: what was being done, to which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done ("write", "create directory", ...).
    pub action: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// A `map_err` adapter: the error of doing `action` to `path`.
    pub fn at(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self { action, path, source }
    }
}
