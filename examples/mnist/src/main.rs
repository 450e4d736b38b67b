//! `mnist`: burn's MNIST CNN with danling's whole command line. The model and the data pipeline it
//! trains are adapted from burn's MNIST example (<https://github.com/tracel-ai/burn>,
//! `examples/mnist`, © Nathaniel Simard and the Burn Framework contributors, MIT or Apache-2.0).
//!
//! ```sh
//! mnist train --data.path ~/data/mnist --epochs 3
//! mnist evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors
//! mnist sweep --data.path ~/data/mnist optim.lr=0.01,0.001
//! ```

use std::process::ExitCode;

use burn::tensor::Device;
use danling::Config;
use danling::cli::{App, BuildError, Parts};
use danling_example_mnist::MnistSections;
use danling_example_mnist::data::{Format, MnistDataset, Split, read_image_folders};
use danling_example_mnist::model::Model;
use danling_example_mnist::task::MnistTask;

/// mimalloc, as the `danling` binary uses it (the `mimalloc` feature of danling).
#[global_allocator]
static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;

/// The app: its sections, and its model, task and splits from the config.
struct Mnist;

impl App for Mnist {
    const NAME: &'static str = "mnist";
    const ABOUT: &'static str = "\
mnist trains burn's MNIST CNN (model.channels, model.hidden, model.dropout) on the IDX files in
data.path: train-images-idx3-ubyte and the rest, as downloaded (.gz or not); or, with
data.format imagefolder, on PNG digits in data.path/train/0..9 and data.path/test (or val).
data.shift N shifts each training image by up to N pixels.";
    type Sections = MnistSections;
    type Task = MnistTask;

    fn build(config: &Config<MnistSections>, device: &Device) -> Result<Parts<MnistTask>, BuildError> {
        let data = &config.sections.data;
        let dir = data.path.clone().unwrap_or_default();
        let model = Model::new(&config.sections.model, device);
        let task = MnistTask {
            shift: data.shift.unwrap_or(0),
        };
        if data.format == Some(Format::Imagefolder) {
            let (train, (name, eval)) = read_image_folders(&dir)?;
            return Ok(Parts::new(task, model).train("train", train).eval(&name, eval));
        }
        let train = MnistDataset::read(&dir, Split::Train, data.limit)?;
        let test = MnistDataset::read(&dir, Split::Test, data.limit)?;
        Ok(Parts::new(task, model).train("train", train).eval("test", test))
    }
}

fn main() -> ExitCode {
    danling::cli::main::<Mnist>()
}
