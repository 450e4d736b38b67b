//! Optimizers built from the `optim` section, and DanLing's learning-rate scheduler.

mod adamw;
mod build;
pub mod scheduler;

pub use adamw::FusedAdamW;
pub use build::build_optimizer;
pub use scheduler::{LrScheduler, SchedulerError, default_scaling};
