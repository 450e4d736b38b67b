//! `chargpt`: a character-level transformer language model with danling's whole command line. The
//! model, its data and its objective follow Andrej Karpathy's nanoGPT
//! (<https://github.com/karpathy/nanoGPT>, MIT licence).
//!
//! ```sh
//! chargpt train --data.path examples/chargpt/data/sonnets.txt --steps 2000
//! chargpt evaluate RUN/runner.yaml --checkpoint RUN/checkpoints/best.safetensors
//! chargpt sweep --data.path sonnets.txt --steps 500 model.n_layer=2,4
//! ```

use std::process::ExitCode;

use burn::tensor::Device;
use danling::Config;
use danling::cli::{App, BuildError, Parts};
use danling_example_chargpt::CharGptSections;
use danling_example_chargpt::data::{Corpus, token_files};
use danling_example_chargpt::model::Gpt;
use danling_example_chargpt::task::CharGptTask;

/// mimalloc, as the `danling` binary uses it (the `mimalloc` feature of danling).
#[global_allocator]
static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;

/// The app: its sections, and its model, task and splits from the config.
struct CharGpt;

impl App for CharGpt {
    const NAME: &'static str = "chargpt";
    const ABOUT: &'static str = "\
chargpt trains a character-level transformer language model in nanoGPT's shape (model.n_layer,
model.n_head, model.n_embd, model.block_size) on the text file data.path (or on the token files
chargpt-tokens writes into the directory data.path: train.bin, val.bin and vocab.txt, read window by
window from disk), and reports the perplexity of the next character.";
    type Sections = CharGptSections;
    type Task = CharGptTask;

    fn build(config: &Config<CharGptSections>, device: &Device) -> Result<Parts<CharGptTask>, BuildError> {
        let (model, data) = (&config.sections.model, &config.sections.data);
        let path = data.path.clone().unwrap_or_default();
        if path.is_dir() {
            let (vocab, train, val) = token_files(&path, model.block_size)?;
            let gpt = Gpt::new(model, vocab.len(), device);
            let task = CharGptTask::new(vocab.len());
            return Ok(Parts::new(task, gpt).train("train", train).eval("val", val));
        }
        let corpus = Corpus::read(&path, data.val_fraction)?;
        let (train, val) = corpus.windows(model.block_size)?;
        let gpt = Gpt::new(model, corpus.vocab.len(), device);
        let task = CharGptTask::new(corpus.vocab.len());
        Ok(Parts::new(task, gpt).train("train", train).eval("val", val))
    }
}

fn main() -> ExitCode {
    danling::cli::main::<CharGpt>()
}
