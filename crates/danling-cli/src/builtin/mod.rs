//! The built-in task: an MLP on a small tabular data set, for `danling train | evaluate | infer`.

mod data;
mod model;
mod task;

pub use data::load_splits;
pub use model::Mlp;
pub use task::TabularTask;
