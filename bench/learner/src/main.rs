//! The two example apps' models trained by burn-train's `Learner` (`SupervisedTraining`), to time
//! beside the same training by danling's runner (`mnist train`, `chargpt train`).
//!
//! ```sh
//! learner prepare-mnist DIR [TRAIN_IMAGES]      # the digits as MNIST IDX files, train replicated
//! learner mnist DIR ARTIFACTS [options]          # burn's MNIST CNN on DIR
//! learner chargpt FILE ARTIFACTS [options]       # the char GPT on the text FILE
//! learner bare-mnist DIR [options]               # burn's MNIST CNN in a bare burn loop
//! learner bare-chargpt FILE [options]            # the char GPT in a bare burn loop
//! ```
//!
//! The bare loops are what the runner's overhead is measured against: the same shuffled order
//! (`danling::runner::shuffled_order`), the example's `collate` and `forward` on the training
//! thread, backward and burn's Adam, and nothing else (no metrics, evaluation, logs or files).
//!
//! Options: `--epochs N` (2), `--batch-size N` (64), `--lr X` (0.001), `--seed N` (1016),
//! `--workers N` (0: batches built on the training thread, as danling does), `--metrics full|minimal`
//! (full: loss, accuracy, AUROC, AUPRC, F1 and for chargpt perplexity; minimal: loss and accuracy,
//! and perplexity for chargpt), and for chargpt `--block-size` (32), `--n-layer` (2), `--n-head` (2),
//! `--n-embd` (32), `--val-fraction` (0.1).
//!
//! The batches and the loss are the examples' own (`Task::collate` and `Task::forward`, a
//! cross-entropy), the optimizer burn's Adam with PyTorch's epsilon as danling's `optim.type: adam`
//! builds it, and the learning rate constant.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::optim::AdamConfig;
use burn::tensor::Device;
use burn::train::metric::{
    AccuracyMetric, AucPrMetric, AurocMetric, ClassReduction, FBetaScoreMetric, LossMetric, PerplexityMetric,
};
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainOutput, TrainStep,
};
use danling::runner::{StepOutput, Targets, Task};
use danling_example_chargpt::data::{Corpus, Window};
use danling_example_chargpt::model::{Gpt, ModelConfig as GptConfig};
use danling_example_chargpt::task::{CharBatch, CharGptTask};
use danling_example_mnist::data::{MnistDataset, MnistItem, Split, digits_as_mnist, write_idx};
use danling_example_mnist::model::{Model, ModelConfig};
use danling_example_mnist::task::{MnistBatch, MnistTask};

/// mimalloc, as the example apps (`mnist`, `chargpt`) use it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: danling::alloc::MiMalloc = danling::alloc::MiMalloc;

/// A danling step output as burn-train's classification output (loss, logits, classes).
fn classification(out: StepOutput) -> ClassificationOutput {
    let (Some(output), Some(Targets::Classes(targets))) = (out.outputs, out.targets) else {
        panic!("a classification task gives logits and classes");
    };
    ClassificationOutput::new(out.loss, output, targets)
}

/// burn's MNIST CNN, as a model the Learner trains.
#[derive(Module, Debug)]
pub struct MnistNet {
    model: Model,
}

impl TrainStep for MnistNet {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        let out = classification(MnistTask::default().forward(&self.model, &batch));
        let grads = out.loss.backward();
        TrainOutput::new(self, grads, out)
    }
}

impl InferenceStep for MnistNet {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        classification(MnistTask::default().forward(&self.model, &batch))
    }
}

/// The char GPT, as a model the Learner trains; the task holds the vocabulary size.
#[derive(Module, Debug)]
pub struct GptNet {
    model: Gpt,
    vocab_size: usize,
}

impl TrainStep for GptNet {
    type Input = CharBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: CharBatch) -> TrainOutput<ClassificationOutput> {
        let out = classification(CharGptTask::new(self.vocab_size).forward(&self.model, &batch));
        let grads = out.loss.backward();
        TrainOutput::new(self, grads, out)
    }
}

impl InferenceStep for GptNet {
    type Input = CharBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: CharBatch) -> ClassificationOutput {
        classification(CharGptTask::new(self.vocab_size).forward(&self.model, &batch))
    }
}

/// An example task's `collate` as a burn batcher.
#[derive(Clone)]
struct Collate<T>(T);

impl Batcher<MnistItem, MnistBatch> for Collate<MnistTask> {
    fn batch(&self, items: Vec<MnistItem>, device: &Device) -> MnistBatch {
        self.0.collate(items, device)
    }
}

impl Batcher<Window, CharBatch> for Collate<CharGptTask> {
    fn batch(&self, items: Vec<Window>, device: &Device) -> CharBatch {
        self.0.collate(items, device)
    }
}

/// The command line's options.
#[derive(Debug, Clone)]
struct Options {
    epochs: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
    workers: usize,
    full_metrics: bool,
    gpt: GptConfig,
    val_fraction: f64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            epochs: 2,
            batch_size: 64,
            lr: 1e-3,
            seed: 1016,
            workers: 0,
            full_metrics: true,
            gpt: GptConfig {
                block_size: 32,
                n_layer: 2,
                n_head: 2,
                n_embd: 32,
                dropout: 0.0,
            },
            val_fraction: 0.1,
        };
        let mut rest = args.iter();
        while let Some(key) = rest.next() {
            let value = rest.next().ok_or_else(|| format!("{key} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{key} {value}: {e}");
            let int = || value.parse::<usize>().map_err(|e| bad(&e));
            match key.as_str() {
                "--epochs" => options.epochs = int()?,
                "--batch-size" => options.batch_size = int()?,
                "--lr" => options.lr = value.parse().map_err(|e| bad(&e))?,
                "--seed" => options.seed = value.parse().map_err(|e| bad(&e))?,
                "--workers" => options.workers = int()?,
                "--metrics" => options.full_metrics = value == "full",
                "--block-size" => options.gpt.block_size = int()?,
                "--n-layer" => options.gpt.n_layer = int()?,
                "--n-head" => options.gpt.n_head = int()?,
                "--n-embd" => options.gpt.n_embd = int()?,
                "--val-fraction" => options.val_fraction = value.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("unknown option {key}")),
            }
        }
        Ok(options)
    }

    /// burn's Adam as danling's `optim: {type: adam}` builds it: betas (0.9, 0.999), PyTorch's
    /// epsilon 1e-8, no weight decay.
    fn optimizer(&self) -> AdamConfig {
        AdamConfig::new()
            .with_beta_1(0.9)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
    }
}

/// The Learner's run over `train` and `valid`, timed; prints the throughput line.
#[allow(clippy::too_many_arguments)]
fn train<M, I, D, V, B>(
    what: &str,
    artifacts: &Path,
    model: M,
    batcher: B,
    train: D,
    valid: V,
    options: &Options,
    metrics: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
) where
    M: LearnerModel,
    I: Clone + Send + Sync + std::fmt::Debug + 'static,
    D: Dataset<I> + 'static,
    V: Dataset<I> + 'static,
    B: Batcher<I, <M as TrainStep>::Input> + Batcher<I, <M as InferenceStep>::Input> + Clone + 'static,
    <M as TrainStep>::Input: Clone + std::fmt::Debug,
    <M as InferenceStep>::Input: Clone + std::fmt::Debug,
{
    let samples = train.len() * options.epochs;
    let (n_train, n_valid) = (train.len(), valid.len());
    let dataloader_train = DataLoaderBuilder::<_, <M as TrainStep>::Input>::new(batcher.clone())
        .batch_size(options.batch_size)
        .shuffle(options.seed)
        .num_workers(options.workers)
        .build(train);
    let dataloader_valid = DataLoaderBuilder::<_, <M as InferenceStep>::Input>::new(batcher)
        .batch_size(options.batch_size)
        .num_workers(options.workers)
        .build(valid);
    let training = SupervisedTraining::new(artifacts, dataloader_train, dataloader_valid)
        .renderer(Box::new(CliMetricsRenderer::new()))
        .with_default_checkpointers()
        .num_epochs(options.epochs);
    let training = metrics(training);
    // Tracked for training on the autodiff device, as danling's runner prepares it
    // (`model.to_device(&device.autodiff()).train()`).
    let device = Device::flex().autodiff();
    let model = model.to_device(&device).train();
    let learner = Learner::new(model, options.optimizer().init(), options.lr);
    eprintln!(
        "learner {what}: {} epochs of {n_train} train samples, validating on {n_valid} each epoch, batch {}",
        options.epochs, options.batch_size
    );
    let start = Instant::now();
    let result = training.launch(learner);
    drop(result.renderer);
    let seconds = start.elapsed().as_secs_f64();
    if let Some(error) = result.error {
        eprintln!("learner {what}: training failed: {error}");
        std::process::exit(1);
    }
    eprintln!(
        "learner {what}: trained {samples} samples in {seconds:.3} s ({:.1} samples/s, validation and checkpoints included)",
        samples as f64 / seconds
    );
}

fn mnist(dir: &Path, artifacts: &Path, options: &Options) -> Result<(), String> {
    let train_set = MnistDataset::read(dir, Split::Train, None).map_err(|e| e.to_string())?;
    let test_set = MnistDataset::read(dir, Split::Test, None).map_err(|e| e.to_string())?;
    let device = Device::flex();
    device.seed(options.seed);
    let model = MnistNet {
        model: Model::new(&ModelConfig::default(), &device),
    };
    let full = options.full_metrics;
    train(
        "mnist",
        artifacts,
        model,
        Collate(MnistTask::default()),
        train_set,
        test_set,
        options,
        |t| {
            let t = t.metrics((LossMetric::new(), AccuracyMetric::new()));
            match full {
                true => t.metrics((
                    AurocMetric::multiclass(ClassReduction::Macro),
                    AucPrMetric::multiclass(ClassReduction::Macro),
                    FBetaScoreMetric::multiclass(1.0, 1, ClassReduction::Macro),
                )),
                false => t,
            }
        },
    );
    Ok(())
}

fn chargpt(file: &Path, artifacts: &Path, options: &Options) -> Result<(), String> {
    let corpus = Corpus::read(file, options.val_fraction).map_err(|e| e.to_string())?;
    let (train_set, val_set) = corpus
        .windows(options.gpt.block_size)
        .map_err(|e| e.to_string())?;
    let device = Device::flex();
    device.seed(options.seed);
    let vocab_size = corpus.vocab.len();
    let model = GptNet {
        model: Gpt::new(&options.gpt, vocab_size, &device),
        vocab_size,
    };
    let full = options.full_metrics;
    train(
        "chargpt",
        artifacts,
        model,
        Collate(CharGptTask::new(vocab_size)),
        train_set,
        val_set,
        options,
        |t| {
            let t = t.metrics((LossMetric::new(), AccuracyMetric::new(), PerplexityMetric::new()));
            match full {
                true => t.metrics((
                    AurocMetric::multiclass(ClassReduction::Macro),
                    AucPrMetric::multiclass(ClassReduction::Macro),
                    FBetaScoreMetric::multiclass(1.0, 1, ClassReduction::Macro),
                )),
                false => t,
            }
        },
    );
    Ok(())
}

/// A bare burn loop over `train`: `options.epochs` shuffled passes in batches, each collated,
/// forwarded, back-propagated and stepped with burn's Adam; prints the train samples/s.
fn bare<T: Task>(what: &str, task: &T, model: T::Model, train: &impl Dataset<T::Item>, options: &Options) {
    use burn::optim::GradientsParams;
    let device = Device::flex().autodiff();
    let mut model = model.to_device(&device).train();
    let mut optimizer = options.optimizer().init();
    let n = train.len();
    let start = Instant::now();
    for epoch in 0..options.epochs as u64 {
        let order = danling::runner::shuffled_order(options.seed, epoch, 0, n);
        for rows in order.chunks(options.batch_size) {
            let items = rows.iter().map(|&i| train.get(i).expect("an item")).collect();
            let batch = task.collate(items, &device);
            let loss = task.forward(&model, &batch).loss;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(options.lr, model, grads);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let samples = n * options.epochs;
    eprintln!(
        "bare {what}: trained {samples} samples in {seconds:.3} s ({:.1} samples/s)",
        samples as f64 / seconds
    );
}

/// Writes the bundled digits as MNIST IDX files in `dir`: the first 1500 images, repeated in order
/// up to `n_train`, as the train split; the other 297 as the test split.
fn prepare_mnist(dir: &Path, n_train: usize) -> Result<(), String> {
    const TRAIN: usize = 1500;
    let (images, labels) = digits_as_mnist().map_err(|e| e.to_string())?;
    let train_images: Vec<_> = images[..TRAIN].iter().cycle().take(n_train).copied().collect();
    let train_labels: Vec<_> = labels[..TRAIN].iter().cycle().take(n_train).copied().collect();
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    write_idx(dir, &train_images, &train_labels, Split::Train.prefix()).map_err(|e| e.to_string())?;
    write_idx(dir, &images[TRAIN..], &labels[TRAIN..], Split::Test.prefix()).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {n_train} train images ({TRAIN} digits repeated) and {} test images to {}",
        images.len() - TRAIN,
        dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    // As `danling::cli::main` does before an app runs.
    #[cfg(feature = "mimalloc")]
    danling::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = |i: usize| {
        args.get(i)
            .map(PathBuf::from)
            .ok_or("missing a path argument".to_owned())
    };
    let run = || -> Result<(), String> {
        match args.first().map(String::as_str) {
            Some("prepare-mnist") => {
                let n = match args.get(2) {
                    Some(n) => n.parse().map_err(|e| format!("train images {n}: {e}"))?,
                    None => 10_000,
                };
                prepare_mnist(&path(1)?, n)
            }
            Some("mnist") => mnist(&path(1)?, &path(2)?, &Options::parse(&args[3..])?),
            Some("chargpt") => chargpt(&path(1)?, &path(2)?, &Options::parse(&args[3..])?),
            Some("bare-mnist") => {
                let options = Options::parse(&args[2..])?;
                let train = MnistDataset::read(&path(1)?, Split::Train, None).map_err(|e| e.to_string())?;
                let device = Device::flex();
                device.seed(options.seed);
                let model = Model::new(&ModelConfig::default(), &device);
                bare("mnist", &MnistTask::default(), model, &train, &options);
                Ok(())
            }
            Some("bare-chargpt") => {
                let options = Options::parse(&args[2..])?;
                let corpus = Corpus::read(&path(1)?, options.val_fraction).map_err(|e| e.to_string())?;
                let (train, _) = corpus.windows(options.gpt.block_size).map_err(|e| e.to_string())?;
                let device = Device::flex();
                device.seed(options.seed);
                let model = Gpt::new(&options.gpt, corpus.vocab.len(), &device);
                bare("chargpt", &CharGptTask::new(corpus.vocab.len()), model, &train, &options);
                Ok(())
            }
            _ => Err("usage: learner prepare-mnist DIR [N] | mnist DIR ARTIFACTS [options] | \
                      chargpt FILE ARTIFACTS [options] | bare-mnist DIR [options] | bare-chargpt FILE [options]"
                .to_owned()),
        }
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("learner: error: {message}");
            ExitCode::from(2)
        }
    }
}
