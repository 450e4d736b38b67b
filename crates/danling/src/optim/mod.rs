//! Optimizers built from the `optim` section, and DanLing's learning-rate scheduler.

mod build;
pub mod scheduler;

pub use build::build_optimizer;
pub use scheduler::{LrScheduler, SchedulerError, default_scaling};
