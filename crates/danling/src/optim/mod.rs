//! Optimizers built from the `optim` section, its parameter groups, and DanLing's learning-rate
//! scheduler.

mod adamw;
mod build;
mod groups;
pub mod scheduler;

pub use adamw::FusedAdamW;
pub use build::build_optimizer;
pub use groups::ParamGroups;
pub use scheduler::{LrScheduler, SchedulerError, default_scaling};
