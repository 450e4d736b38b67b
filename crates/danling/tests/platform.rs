//! The platform seam: a data-parallel platform is one implementation of [`Platform`], and the
//! runner's loops need no change for it. Two ranks simulated on two threads of one process, which
//! exchange through shared memory, train like one process on the global batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Barrier, Mutex};

use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, activation};
use danling::config;
use danling::log::Console;
use danling::metrics::MetricKind;
use danling::results::Results;
use danling::runner::{
    Collective, CollectiveError, CollectiveProblem, Local, Platform, ReduceOp, Runner, StepOutput, Task,
    Trained, gradients_from_slice, gradients_to_vec, parameters_from_slice, parameters_to_vec,
};
use danling::workspace::{RunState, RunStatus};
use danling::{Config, Identity, Override};

#[derive(Module, Debug)]
struct Net {
    hidden: Linear,
    output: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        device.seed(9);
        let net = Self {
            hidden: LinearConfig::new(4, 16).init(device),
            output: LinearConfig::new(16, 3).init(device),
        };
        // burn draws a parameter's initial values when it is first read: read them here, on this
        // thread, before any rank's thread draws from the process-wide RNG.
        let _ = parameters_to_vec(&net);
        net
    }
}

/// A net with other initial weights than [`Net::new`]'s.
fn other_net(device: &Device) -> Net {
    let net = Net::new(device);
    let shifted: Vec<f32> = parameters_to_vec(&net).iter().map(|v| v + 0.25).collect();
    parameters_from_slice(net, &shifted).unwrap()
}

struct Classify;

impl Task for Classify {
    type Model = Net;
    type Item = ([f32; 4], i64);
    type Batch = (Tensor<2>, Tensor<1, Int>);

    fn collate(&self, items: Vec<Self::Item>, device: &Device) -> Self::Batch {
        common::collate(items, device)
    }

    fn forward(&self, model: &Net, (x, y): &Self::Batch) -> StepOutput {
        let hidden = activation::relu(model.hidden.forward(x.clone()));
        StepOutput::classification(model.output.forward(hidden), y.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(3)
    }
}

fn data(n: usize, offset: usize) -> Vec<([f32; 4], i64)> {
    (offset..offset + n)
        .map(|i| {
            let class = (i % 3) as i64;
            let jitter = |k: usize| ((i * 31 + k * 17) % 11) as f32 / 11.0 - 0.5;
            let x = [
                class as f32 + jitter(0),
                jitter(1),
                1.0 - class as f32 + jitter(2),
                jitter(3),
            ];
            (x, class)
        })
        .collect()
}

/// What the ranks share: a slot each, and a barrier.
struct Hub {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

/// One rank of a world of `hub`'s size, inside this process.
struct Threads {
    rank: usize,
    world: usize,
    hub: Arc<Hub>,
    device: Device,
}

impl Threads {
    /// Every rank's `mine`, in rank order: the one primitive the collectives are built on.
    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        self.hub.slots.lock().unwrap()[self.rank] = mine;
        self.hub.barrier.wait();
        let all = self.hub.slots.lock().unwrap().clone();
        // Nobody writes the next exchange into a slot before everyone has read this one.
        self.hub.barrier.wait();
        all
    }
}

fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
}

impl Platform for Threads {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn kind(&self) -> config::Device {
        config::Device::Flex
    }

    /// Rank 0's weights on every rank, as a data-parallel platform must start.
    fn prepare<M: Module>(&self, model: M) -> Result<M, CollectiveError> {
        let model = model.to_device(&self.train_device()).train();
        let mine = parameters_to_vec(&model)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let rank0: Vec<f32> = f32s(&self.exchange(mine)[0]).collect();
        Ok(parameters_from_slice(model, &rank0).unwrap())
    }

    fn all_reduce_gradients<M: Module>(
        &self,
        model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError> {
        let mine: Vec<u8> = gradients_to_vec(model, &gradients)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let all = self.exchange(mine);
        let mut sum: Vec<f32> = f32s(&all[0]).collect();
        for other in &all[1..] {
            for (total, value) in sum.iter_mut().zip(f32s(other)) {
                *total += value;
            }
        }
        Ok(gradients_from_slice(model, &sum, &self.device).unwrap())
    }

    /// The test's net has no buffers: nothing to give the other rank.
    fn broadcast_buffers<M: Module>(&self, _model: &mut M) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), CollectiveError> {
        let mine = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let all = self.exchange(mine);
        for (i, value) in values.iter_mut().enumerate() {
            let of = |bytes: &Vec<u8>| f64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
            *value = all
                .iter()
                .map(of)
                .reduce(|a, b| match op {
                    ReduceOp::Sum => a + b,
                    ReduceOp::Max => a.max(b),
                })
                .unwrap();
        }
        Ok(())
    }

    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
        Ok(self.exchange(bytes))
    }

    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CollectiveError> {
        *bytes = self.exchange(std::mem::take(bytes)).swap_remove(0);
        Ok(())
    }

    fn barrier(&self) -> Result<(), CollectiveError> {
        self.hub.barrier.wait();
        Ok(())
    }
}

fn config(root: &std::path::Path, accum: &str) -> Config {
    let pairs = [
        ("project_root", root.to_str().unwrap()),
        ("progress", "false"),
        ("epochs", "3"),
        ("accum_steps", accum),
        ("optim.type", "adamw"),
        ("optim.lr", "0.02"),
        ("sched.type", "cosine"),
        ("max_grad_norm", "1.0"),
        ("score_name", "accuracy"),
    ];
    let overrides: Vec<Override> = pairs
        .iter()
        .map(|(k, v)| Override::parse(k, v).unwrap())
        .collect();
    Config::load(None, &overrides).unwrap()
}

fn train<P: Platform>(
    mut config: Config,
    platform: P,
    model: Net,
    batch_size: usize,
) -> (Trained, Vec<Vec<f32>>) {
    config.data.batch_size = batch_size as u64;
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let mut runner = Runner::with_platform(config, identity, platform, Classify, model)
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data(37, 0)))
        .eval_split("val", InMemDataset::new(data(13, 100)));
    let trained = runner.train().unwrap();
    let model = runner.model();
    let weights = [model.hidden.weight.val(), model.output.weight.val()]
        .into_iter()
        .map(|t| t.into_data().try_to_vec::<f32>().unwrap())
        .collect();
    (trained, weights)
}

fn close(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every value of two results histories, side by side.
fn values(results: &Results) -> Vec<(String, f64)> {
    let tree = serde_json::to_value(results).unwrap();
    let mut out = Vec::new();
    for (index, record) in tree.as_object().unwrap() {
        for (split, metrics) in record.as_object().unwrap() {
            for (name, value) in metrics.as_object().unwrap() {
                if !danling::results::is_wall_clock(name) {
                    out.push((
                        format!("{index}.{split}.{name}"),
                        value.as_f64().unwrap_or(f64::NAN),
                    ));
                }
            }
        }
    }
    out
}

/// The training tests, one at a time: each seeds the device's process-wide RNG and draws its
/// initial weights from it.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn two_ranks_on_threads_train_like_one_process_on_the_global_batch() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    for accum in ["1", "2"] {
        // One process, batches of 10: 37 rows is 3 full batches and one of 7.
        let root = tempfile::tempdir().unwrap();
        let local = Local::new(config::Device::Flex, config::Precision::F32).unwrap();
        let (expected, expected_weights) = train(config(root.path(), accum), local, Net::new(&device), 10);

        // Two ranks of 5 each: the last global batch of 7 splits into 4 and 3.
        let hub = Arc::new(Hub {
            barrier: Barrier::new(2),
            slots: Mutex::new(vec![Vec::new(); 2]),
        });
        let root = tempfile::tempdir().unwrap();
        let ranks: Vec<_> = (0..2)
            .map(|rank| {
                let platform = Threads {
                    rank,
                    world: 2,
                    hub: hub.clone(),
                    device: device.clone(),
                };
                // Rank 1 starts from other weights: the platform's `prepare` gives it rank 0's.
                let model = if rank == 0 {
                    Net::new(&device)
                } else {
                    other_net(&device)
                };
                let config = config(root.path(), accum);
                std::thread::spawn(move || train(config, platform, model, 5))
            })
            .collect();
        let ranks: Vec<(Trained, Vec<Vec<f32>>)> = ranks.into_iter().map(|r| r.join().unwrap()).collect();

        let (first, first_weights) = &ranks[0];
        assert_eq!(first.state, expected.state, "accum {accum}: the same steps");
        assert_eq!(
            first_weights, &ranks[1].1,
            "accum {accum}: every rank holds the same weights, bit for bit"
        );
        let gap = close(first_weights, &expected_weights);
        assert!(
            gap < 1e-5,
            "accum {accum}: weights differ by {gap} from one process"
        );
        eprintln!("accum {accum}: largest weight difference from one process {gap:e}");
        assert_eq!(
            values(&first.results),
            values(&ranks[1].0.results),
            "every rank reports the same results"
        );
        for ((name, got), (_, want)) in values(&first.results).iter().zip(values(&expected.results)) {
            assert!((got - want).abs() < 1e-5, "accum {accum}: {name} {got} vs {want}");
        }
        assert!(
            first.dir.is_some() && ranks[1].0.dir.is_none(),
            "only rank 0 writes"
        );
    }
}

/// One process whose gradient all-reduce fails at optimizer step `fail_at` (counted from 1), as a
/// real platform's would when what it received does not fit the model: here the sum arrives one
/// value short, and the platform's own unflattening refuses it.
struct FailingReduce {
    local: Local,
    fail_at: u64,
    steps: std::cell::Cell<u64>,
}

impl Platform for FailingReduce {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn device(&self) -> &Device {
        self.local.device()
    }
    fn kind(&self) -> config::Device {
        self.local.kind()
    }
    fn prepare<M: Module>(&self, model: M) -> Result<M, CollectiveError> {
        self.local.prepare(model)
    }
    fn all_reduce_gradients<M: Module>(
        &self,
        model: &M,
        gradients: GradientsParams,
    ) -> Result<GradientsParams, CollectiveError> {
        self.steps.set(self.steps.get() + 1);
        let mut received = gradients_to_vec(model, &gradients);
        let expected = received.len() as u64;
        if self.steps.get() == self.fail_at {
            received.pop();
        }
        gradients_from_slice(model, &received, self.device()).ok_or_else(|| {
            let problem = CollectiveProblem::Length {
                what: "the model's gradients",
                received: received.len() as u64,
                expected,
            };
            CollectiveError::new(Collective::AllReduceGradients, self.rank(), problem)
        })
    }
    fn broadcast_buffers<M: Module>(&self, model: &mut M) -> Result<(), CollectiveError> {
        self.local.broadcast_buffers(model)
    }
    fn all_reduce(&self, values: &mut [f64], op: ReduceOp) -> Result<(), CollectiveError> {
        self.local.all_reduce(values, op)
    }
    fn all_gather(&self, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
        self.local.all_gather(bytes)
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<(), CollectiveError> {
        self.local.broadcast(bytes)
    }
    fn barrier(&self) -> Result<(), CollectiveError> {
        self.local.barrier()
    }
}

#[test]
fn a_failed_collective_ends_the_run_with_one_line_naming_it_and_the_rank() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex();
    let root = tempfile::tempdir().unwrap();
    let mut config = config(root.path(), "1");
    config.data.batch_size = 10;
    let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
    let platform = FailingReduce {
        local: Local::new(config::Device::Flex, config::Precision::F32).unwrap(),
        fail_at: 3,
        steps: std::cell::Cell::new(0),
    };
    let mut runner = Runner::with_platform(config, identity, platform, Classify, Net::new(&device))
        .unwrap()
        .console(Console::Off)
        .train_split("train", InMemDataset::new(data(37, 0)))
        .eval_split("val", InMemDataset::new(data(13, 100)));
    let before = parameters_to_vec(runner.model());
    let error = runner.train().unwrap_err();
    let message = error.to_string();
    let danling::RunnerError::Collective(failed) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(
        (failed.collective, failed.rank),
        (Collective::AllReduceGradients, 0)
    );
    assert!(
        !error.is_collective(),
        "met by one rank: the job is aborted, not ended together"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.starts_with("collective `all_reduce_gradients` failed on rank 0:")
            && message.contains("the model's gradients"),
        "{message}"
    );
    // The run stopped at the failed step: two steps taken, none on this rank's own gradients.
    assert_eq!(runner.state().step, 2, "no step after the failed all-reduce");
    assert_ne!(
        parameters_to_vec(runner.model()),
        before,
        "the first two steps trained"
    );
    let status = std::fs::read_to_string(runner.identity().dir.join("status.json")).unwrap();
    let status: RunStatus = serde_json::from_str(&status).unwrap();
    assert_eq!(status.status, RunState::Failed);
    assert_eq!(status.reason.as_deref(), Some(message.as_str()));
}

#[test]
fn shards_cover_every_row_once_as_evenly_as_the_length_allows() {
    struct Rank(usize, usize);
    impl Platform for Rank {
        fn rank(&self) -> usize {
            self.0
        }
        fn world_size(&self) -> usize {
            self.1
        }
        fn device(&self) -> &Device {
            unreachable!()
        }
        fn kind(&self) -> config::Device {
            config::Device::Flex
        }
        fn prepare<M: Module>(&self, _: M) -> Result<M, CollectiveError> {
            unreachable!()
        }
        fn all_reduce_gradients<M: Module>(
            &self,
            _: &M,
            _: GradientsParams,
        ) -> Result<GradientsParams, CollectiveError> {
            unreachable!()
        }
        fn broadcast_buffers<M: Module>(&self, _: &mut M) -> Result<(), CollectiveError> {
            unreachable!()
        }
        fn all_reduce(&self, _: &mut [f64], _: ReduceOp) -> Result<(), CollectiveError> {
            unreachable!()
        }
        fn all_gather(&self, _: Vec<u8>) -> Result<Vec<Vec<u8>>, CollectiveError> {
            unreachable!()
        }
        fn broadcast(&self, _: &mut Vec<u8>) -> Result<(), CollectiveError> {
            unreachable!()
        }
        fn barrier(&self) -> Result<(), CollectiveError> {
            unreachable!()
        }
    }
    for world in 1..=5 {
        for len in 0..=12 {
            let rows: Vec<usize> = (100..100 + len).collect();
            let shards: Vec<&[usize]> = (0..world).map(|r| Rank(r, world).shard(&rows)).collect();
            assert_eq!(shards.concat(), rows, "world {world}, {len} rows");
            let sizes: Vec<usize> = shards.iter().map(|s| s.len()).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }
}
