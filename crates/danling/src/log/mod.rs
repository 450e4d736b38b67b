//! Logging: tracing to the console and to `run.log`, and TensorBoard event files.

mod runlog;
pub mod tensorboard;

pub use runlog::{Console, LogError, LogGuard, init_logging, log_header};
