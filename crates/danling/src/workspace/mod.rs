//! The run directory: its layout, and the files it holds from one attempt to the next.

mod error;
pub mod metrics_log;
pub mod mlflow;
mod rundir;
mod status;

pub use error::WorkspaceError;
pub use metrics_log::{Keep, MetricsLog, Point};
pub use rundir::{RunDir, StartMode, files, runner_tree, runner_yaml, timestamp};
pub use status::{Observed, RunState, RunStatus, Standing, last_write, mark_pruned};
