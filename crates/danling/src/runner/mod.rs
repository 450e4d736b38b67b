//! The runner: the platform (device, gradient step) and the platform-agnostic loops that train,
//! evaluate and infer, record results and write the run's files.

mod adapt;
mod base;
mod buffers;
pub mod callback;
mod ema;
mod error;
mod evaluate;
mod events;
mod fetch;
mod fit;
mod grads;
mod hooks;
mod mixed;
mod pending;
mod persist;
mod platform;
mod report;
mod retention;
mod session;
mod start;
mod step;
mod task;
mod timing;
mod train;

pub use crate::state::{EpochProgress, LossScaler, State};
pub use base::{Predictions, Runner, Trained, shuffled_order};
pub use callback::{Callback, CallbackError, Control};
pub use error::RunnerError;
pub use evaluate::EMA_METRIC_PREFIX;
pub use fit::PAUSED;
pub use grads::{
    clamp, clip_norm, global_norm, gradients_from_slice, gradients_to_vec, parameters_from_slice,
    parameters_to_vec,
};
#[cfg(feature = "mpi")]
pub use platform::Mpi;
pub use platform::{
    Adapter, Collective, CollectiveError, CollectiveProblem, Found, Launched, Local, Platform, PlatformError,
    ReduceOp, end_world, process_rank,
};
pub use session::{Recorded, Role, Session};
pub use task::{StepOutput, Targets, Task};
