//! The `danling` command: danling's command line with its built-in task, an MLP on a small tabular
//! data set. Any program gets the same command line with its own model through [`danling::cli`].

mod builtin;
mod task;

use std::process::ExitCode;

use burn::tensor::Device;
use danling::Config;
use danling::cli::{App, BuildError, Parts};

use crate::builtin::{Mlp, TabularTask, load_splits};
use crate::task::TaskSections;

/// mimalloc, never handing freed memory back (see [`danling::alloc`]).
#[global_allocator]
static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;

/// The built-in task as an app.
struct Builtin;

impl App for Builtin {
    const NAME: &'static str = "danling";
    const ABOUT: &'static str = "\
danling trains its built-in task, an MLP (model.hidden, model.dropout, model.activation,
model.norm) on the data set named by data.name (digits, breast_cancer, diabetes, synthetic, csv,
mnist, imagefolder).";
    type Sections = TaskSections;
    type Task = TabularTask;

    fn build(config: &Config<TaskSections>, device: &Device) -> Result<Parts<TabularTask>, BuildError> {
        let splits = load_splits(&config.sections.data, config.seed)?;
        let task = TabularTask::new(splits.metrics);
        let model = Mlp::new(&config.sections.model, splits.inputs, task.outputs(), device);
        let mut parts = Parts::new(task, model).train("train", splits.train);
        for (name, split) in splits.eval {
            parts = parts.eval(&name, split);
        }
        Ok(parts)
    }
}

fn main() -> ExitCode {
    danling::cli::main::<Builtin>()
}
