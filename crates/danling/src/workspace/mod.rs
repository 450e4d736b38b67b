//! The run directory: its layout, atomic file writes, and the lock that keeps two trainings out of it.

mod atomic;
mod direct;
mod error;
mod lock;
mod rundir;
mod session;

pub use atomic::{AtomicFile, PendingFiles, StagedFiles, link_atomic, write_atomic};
pub use error::WorkspaceError;
pub use lock::RunLock;
pub use rundir::{RunDir, StartMode, files, runner_tree, runner_yaml, timestamp};
pub use session::{Recorded, Role, Workspace};
