//! A checkpoint from a stranger can't hurt: whatever its bytes, every reader (`read_checkpoint`,
//! `load_checkpoint`, `load_model`) returns the checkpoint or an error that names the file and the
//! problem. None panics, hangs or allocates much beyond the file's size, and what loads can be
//! trained on.
//!
//! `files` takes checkpoints apart and puts them together again; `fuzz` makes mutants of one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::OnceLock;

use burn::data::dataset::InMemDataset;
use burn::module::{Module, ParamId};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::store::burn_pack::Scalar;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use danling::checkpoint::{CheckpointError, load_checkpoint, load_model, read_checkpoint};
use danling::config::OptimConfig;
use danling::log::Console;
use danling::metrics::MetricKind;
use danling::optim::build_optimizer;
use danling::runner::{Runner, StepOutput, Task};
use danling::{Config, Identity, Override};

use files::{Parts, Record, file, json, split, with_record};

mod files;
mod fuzz;

#[derive(Module, Debug)]
struct Net {
    hidden: Linear,
    norm: LayerNorm,
    output: Linear,
}

impl Net {
    /// The same weights and parameter ids every time.
    fn new(device: &Device) -> Self {
        device.seed(3);
        let mut net = Self {
            hidden: LinearConfig::new(4, 5).init(device),
            norm: LayerNormConfig::new(5).init(device),
            output: LinearConfig::new(5, 3).init(device),
        };
        net.hidden.weight.id = ParamId::from(11);
        net.norm.gamma.id = ParamId::from(21);
        net.output.weight.id = ParamId::from(31);
        for (bias, id) in [(&mut net.hidden.bias, 12), (&mut net.output.bias, 32)] {
            if let Some(bias) = bias {
                bias.id = ParamId::from(id);
            }
        }
        if let Some(beta) = &mut net.norm.beta {
            beta.id = ParamId::from(22);
        }
        net
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(self.norm.forward(self.hidden.forward(x)))
    }
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
        StepOutput::classification(model.forward(x.clone()), y.clone())
    }

    fn metrics(&self) -> MetricKind {
        MetricKind::Multiclass(3)
    }
}

fn data(n: usize) -> Vec<([f32; 4], i64)> {
    (0..n)
        .map(|i| {
            let class = (i % 3) as i64;
            let x = |k: usize| ((i * 31 + k * 17) % 11) as f32 / 11.0 + class as f32 * (k % 2) as f32;
            ([x(0), x(1), x(2), x(3)], class)
        })
        .collect()
}

/// A checkpoint as the runner writes it (two epochs of a small classifier trained with AdamW), and
/// the same made reproducible: the run's temporary directory and its wall-clock times, which vary
/// from run to run, replaced, and the optimizer's states put in name order. So a mutant's number
/// names the same mutant in every run.
fn checkpoints() -> &'static (Vec<u8>, Vec<u8>) {
    static BYTES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BYTES.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let pairs = [
            ("project_root", root.path().to_str().unwrap()),
            ("progress", "false"),
            ("epochs", "2"),
        ];
        let overrides: Vec<Override> = pairs
            .iter()
            .map(|(k, v)| Override::parse(k, v).unwrap())
            .collect();
        let mut config: Config = Config::load(None, &overrides).unwrap();
        config.data.batch_size = 4;
        let identity = Identity::with_experiment_id(&config, "xxxxxxxxxxxxxxxx", "").unwrap();
        let mut runner = Runner::with_identity(config, identity, Classify, Net::new(&Device::flex()))
            .unwrap()
            .console(Console::Off)
            .train_split("train", InMemDataset::new(data(10)))
            .eval_split("val", InMemDataset::new(data(5)));
        let dir = runner.train().unwrap().dir.unwrap();
        let written = std::fs::read(dir.join("checkpoints/latest.safetensors")).unwrap();
        let mut parts = Parts::of(&written);
        for value in parts.metadata.values_mut() {
            *value = value.replace(root.path().to_str().unwrap(), "/project");
        }
        let mut results: serde_json::Value = serde_json::from_str(&parts.metadata["results"]).unwrap();
        for record in results.as_object_mut().unwrap().values_mut() {
            for metrics in record.as_object_mut().unwrap().values_mut() {
                for (name, value) in metrics.as_object_mut().unwrap() {
                    if danling::results::is_wall_clock(name) {
                        *value = 1.into();
                    }
                }
            }
        }
        parts.metadata.insert("results".into(), results.to_string());
        // burn writes the optimizer's states in hash order: put back in name order.
        let record = parts.tensor("optimizer.record");
        record.data = Record::of(&record.data).bytes();
        record.shape = vec![record.data.len() as u64];
        (written, parts.sealed())
    })
}

/// The runner's checkpoint, made reproducible.
fn checkpoint() -> &'static [u8] {
    &checkpoints().1
}

/// The readers a checkpoint meets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reader {
    /// `read_checkpoint`, as `resume` scans a checkpoint directory.
    Read,
    /// `load_model`, as `pretrained`, `evaluate` and `infer` load weights; then a forward pass.
    Model,
    /// `load_checkpoint`, as a run resumes; then an optimizer step.
    Resume,
}

const READERS: [Reader; 3] = [Reader::Read, Reader::Model, Reader::Resume];

/// What `reader` makes of the file at `path`: `Ok` when it loads (and the model loaded runs),
/// `Err` with the error otherwise; a panic is a test failure, described.
fn run(reader: Reader, path: &Path) -> Result<Result<(), CheckpointError>, String> {
    let device = Device::flex();
    let x = |device: &Device| Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 8], [2, 4]), device);
    catch_unwind(AssertUnwindSafe(|| match reader {
        Reader::Read => read_checkpoint(path).map(|_| ()),
        Reader::Model => load_model(Net::new(&device), path).map(|net| {
            net.forward(x(&device)).into_data();
        }),
        Reader::Resume => {
            let device = device.autodiff();
            let model = Net::new(&device);
            let optimizer = build_optimizer(&OptimConfig::default()).unwrap();
            load_checkpoint(path, model, optimizer).map(|(net, mut optimizer, _)| {
                let grads = GradientsParams::from_grads(net.forward(x(&device)).sum().backward(), &net);
                let net = optimizer.step(1e-3, net, grads);
                net.forward(x(&device)).into_data();
            })
        }
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("{reader:?} panicked: {message}")
    })
}

/// Writes `bytes` to a file and checks every reader: each returns `Ok` or an error naming the file
/// that is not an I/O error, and those in `failing` fail with a message containing `needle`.
fn check(bytes: &[u8], failing: &[Reader], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stranger.safetensors");
    std::fs::write(&path, bytes).unwrap();
    for reader in READERS {
        let outcome = run(reader, &path).unwrap_or_else(|panic| panic!("{panic}"));
        match outcome {
            Ok(()) => assert!(
                !failing.contains(&reader),
                "{reader:?} accepted the file ({needle})"
            ),
            Err(err) => {
                let message = err.to_string();
                assert!(
                    message.contains(path.to_str().unwrap()) && !message.contains('\n'),
                    "{reader:?}: {message}"
                );
                assert!(
                    !matches!(err, CheckpointError::Read { .. }),
                    "{reader:?}: {message}"
                );
                if failing.contains(&reader) {
                    assert!(
                        message.contains(needle),
                        "{reader:?}: `{message}` lacks `{needle}`"
                    );
                }
            }
        }
    }
}

#[test]
fn the_real_checkpoint_loads_in_every_reader() {
    check(&checkpoints().0, &[], "");
    check(checkpoint(), &[], "");
    // And so it does taken apart and put together again.
    check(&Parts::of(checkpoint()).sealed(), &[], "");
    check(&with_record(|_| ()), &[], "");
}

#[test]
fn a_header_length_past_the_file_is_refused_before_anything_is_allocated() {
    for length in [1u64 << 63, u64::MAX, 1 << 40, checkpoint().len() as u64] {
        let mut bytes = checkpoint().to_vec();
        bytes[..8].copy_from_slice(&length.to_le_bytes());
        check(&bytes, &READERS, "header length");
    }
    check(&[1, 2, 3], &READERS, "shorter than its 8-byte header length");
}

#[test]
fn a_header_over_the_limit_is_refused_even_inside_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stranger.safetensors");
    let length = 100_000_001u64;
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&length.to_le_bytes()).unwrap();
    // Sparse: no disk is used for the zeros.
    file.set_len(length + 8).unwrap();
    for reader in READERS {
        let err = run(reader, &path).unwrap().map(|_| ()).unwrap_err().to_string();
        assert!(
            err.contains("stranger.safetensors") && err.contains("limit"),
            "{err}"
        );
    }
}

#[test]
fn a_header_that_is_not_utf8_or_not_json_is_refused() {
    let (header, data) = split(checkpoint());
    let mut bad = header.clone();
    bad[3] = 0xff;
    check(&file(&bad, &data), &READERS, "not UTF-8");
    check(
        &file(b"{\"__metadata__\": {\"state\": \"{", &data),
        &READERS,
        "header is not JSON",
    );
    check(&file(b"[1, 2, 3]", &data), &READERS, "unreadable header");
    check(&file(&vec![b'['; 100_000], &[]), &READERS, "header is not JSON");
}

/// The real checkpoint's header with `from` replaced by `to` (once), data unchanged.
fn edited(from: &str, to: &str) -> Vec<u8> {
    let (header, data) = split(checkpoint());
    let text = String::from_utf8(header).unwrap();
    assert!(text.contains(from), "{from} in {text}");
    file(text.replacen(from, to, 1).trim_end().as_bytes(), &data)
}

/// The `data_offsets` of tensor `name` in the real checkpoint's header.
fn offsets(name: &str) -> (u64, u64) {
    let (_, header) = safetensors::SafeTensors::read_metadata(checkpoint()).unwrap();
    let (begin, end) = header.info(name).unwrap().data_offsets;
    (begin as u64, end as u64)
}

#[test]
fn offsets_past_the_end_overlapping_or_out_of_order_are_refused() {
    let (begin, end) = offsets("scheduler.state");
    let at = |b: u64, e: u64| format!("\"data_offsets\":[{b},{e}]");
    let original = at(begin, end);
    // Past the end, by one byte and by far (a length no file holds).
    check(
        &edited(&original, &at(begin, end + 1)),
        &READERS,
        "outside the file",
    );
    check(
        &edited(&original, &at(begin, u64::MAX)),
        &READERS,
        "outside the file",
    );
    // Ending before it begins.
    check(&edited(&original, &at(end, begin)), &READERS, "before it begins");
    // Overlapping the tensor before it.
    check(&edited(&original, &at(begin - 1, end - 1)), &READERS, "overlap");
    // Two tensors at the same bytes (and another's left to no tensor).
    let (first, _) = offsets("optimizer.record");
    check(
        &edited(&original, &at(first, first + end - begin)),
        &READERS,
        "overlap",
    );
    // A gap before a tensor.
    let (begin, end) = offsets("model.output.bias");
    check(
        &edited(&at(begin, end), &at(begin + 4, end + 4)),
        &READERS,
        "belong to no tensor",
    );
    // Bytes after the last tensor.
    let mut longer = checkpoint().to_vec();
    longer.extend_from_slice(&[0; 16]);
    check(&longer, &READERS, "16 bytes after its last tensor");
}

#[test]
fn an_unknown_dtype_is_refused() {
    let bytes = edited("\"dtype\":\"U8\"", "\"dtype\":\"Q9\"");
    check(&bytes, &READERS, "unknown dtype `Q9`");
}

#[test]
fn a_shape_whose_size_overflows_or_does_not_match_the_bytes_is_refused() {
    let shape = |name: &str| {
        let parts = Parts::of(checkpoint());
        format!(
            "{:?}",
            parts.tensors.iter().find(|t| t.name == name).unwrap().shape
        )
        .replace(' ', "")
    };
    let weight = shape("model.hidden.weight");
    let huge = format!("[{},{},4]", u64::MAX / 2, u64::MAX / 2);
    check(&edited(&weight, &huge), &READERS, "overflows");
    check(
        &edited(&format!("\"shape\":{weight}"), "\"shape\":[18446744073709551616]"),
        &READERS,
        "unreadable header",
    );
    check(&edited(&weight, "[5,5]"), &READERS, "need 100");
    let mut parts = Parts::of(checkpoint());
    parts.tensor("model.hidden.weight").shape = vec![4, 4];
    check(&parts.sealed(), &READERS, "need 64");
}

#[test]
fn duplicate_names_and_keys_are_refused() {
    let (header, data) = split(checkpoint());
    let text = String::from_utf8(header).unwrap();
    let text = text.trim_end();
    let (begin, end) = offsets("model.output.bias");
    let twice = format!(
        "{},\"model.output.bias\":{{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[{begin},{end}]}}}}",
        &text[..text.len() - 1]
    );
    check(
        &file(twice.as_bytes(), &data),
        &READERS,
        "`model.output.bias` twice",
    );
    let metadata_twice = text.replacen("\"__metadata__\":{", "\"__metadata__\":{\"state\":\"{}\",", 1);
    check(&file(metadata_twice.as_bytes(), &data), &READERS, "`state` twice");
    let two_metadata = format!("{{\"__metadata__\":{{}},{}", &text[1..]);
    check(
        &file(two_metadata.as_bytes(), &data),
        &READERS,
        "`__metadata__` twice",
    );
}

#[test]
fn metadata_that_is_not_strings_or_not_json_is_refused() {
    let mut parts = Parts::of(checkpoint());
    let state = parts.metadata["state"].clone();
    parts.metadata.insert("state".into(), "{\"epoch\": ".into());
    check(&parts.sealed(), &[Reader::Read, Reader::Resume], "state: ");
    let bytes = Parts::of(checkpoint()).sealed();
    let (header, data) = split(&bytes);
    let text = String::from_utf8(header).unwrap();
    let not_a_string = text.replacen(
        &format!("\"state\":{}", json(&state)),
        &format!("\"state\":{state}"),
        1,
    );
    check(
        &file(not_a_string.trim_end().as_bytes(), &data),
        &READERS,
        "metadata `state`",
    );
    // Huge metadata is fine as long as it is within the file and the header limit.
    let mut parts = Parts::of(checkpoint());
    parts.metadata.insert("padding".into(), "x".repeat(1 << 20));
    check(&parts.sealed(), &[], "");
}

#[test]
fn state_config_or_param_ids_of_the_wrong_shape_are_refused() {
    for (key, value, readers) in [
        ("state", "[]", &[Reader::Read, Reader::Resume][..]),
        ("state", "{\"epoch\": -1}", &[Reader::Read, Reader::Resume]),
        ("state", &"[".repeat(10_000), &[Reader::Read, Reader::Resume]),
        ("config", "null", &[Reader::Read, Reader::Resume]),
        ("config", "{\"epochs\": \"x\"}", &[]),
        ("results", "{\"a\": 1}", &[Reader::Read, Reader::Resume]),
        ("identity", "{}", &[Reader::Read, Reader::Resume]),
        ("param_ids", "{\"hidden.weight\": \"x\"}", &[Reader::Resume]),
        ("format", "something else", &[Reader::Read, Reader::Resume]),
    ] {
        let mut parts = Parts::of(checkpoint());
        parts.metadata.insert(key.into(), value.into());
        check(&parts.sealed(), readers, key);
    }
    // Counts no run reaches, which would overflow as the run went on.
    for key in ["epoch", "step", "iter", "skipped"] {
        let mut parts = Parts::of(checkpoint());
        let mut state: serde_json::Value = serde_json::from_str(&parts.metadata["state"]).unwrap();
        state[key] = u64::MAX.into();
        parts.metadata.insert("state".into(), state.to_string());
        let needle = format!("state: `{key}` is 18446744073709551615");
        check(&parts.sealed(), &[Reader::Read, Reader::Resume], &needle);
    }
    // Two parameters given the same id would share one optimizer state.
    let mut parts = Parts::of(checkpoint());
    let mut ids: BTreeMap<String, u64> = serde_json::from_str(&parts.metadata["param_ids"]).unwrap();
    let id = ids["hidden.bias"];
    ids.insert("output.bias".into(), id);
    parts
        .metadata
        .insert("param_ids".into(), serde_json::to_string(&ids).unwrap());
    check(&parts.sealed(), &[Reader::Resume], "the same id");
}

#[test]
fn a_model_tensor_of_the_wrong_dtype_is_refused() {
    let mut parts = Parts::of(checkpoint());
    parts.tensor("model.hidden.weight").dtype = "I32".into();
    check(&parts.sealed(), &[Reader::Model, Reader::Resume], "has dtype I32");
    let mut parts = Parts::of(checkpoint());
    let weight = parts.tensor("model.norm.weight");
    weight.dtype = "U8".into();
    weight.data.truncate(5);
    check(&parts.sealed(), &[Reader::Model, Reader::Resume], "has dtype U8");
    // Another float type is converted.
    let mut parts = Parts::of(checkpoint());
    let bias = parts.tensor("model.output.bias");
    bias.dtype = "F64".into();
    bias.data = bias
        .data
        .chunks(4)
        .flat_map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
        .collect();
    check(&parts.sealed(), &[], "");
}

#[test]
fn an_optimizer_record_that_burn_cannot_decode_is_refused() {
    let mut parts = Parts::of(checkpoint());
    let record = parts.tensor("optimizer.record");
    record.data = (0..record.data.len()).map(|i| (i * 7 % 251) as u8).collect();
    check(&parts.sealed(), &[Reader::Resume], "optimizer state");
    let mut parts = Parts::of(checkpoint());
    let record = parts.tensor("optimizer.record");
    record.data.truncate(record.data.len() - 1);
    record.shape = vec![record.data.len() as u64];
    check(&parts.sealed(), &[Reader::Resume], "optimizer state");
}

/// A change to an optimizer record.
type Change = Box<dyn Fn(&mut Record)>;

#[test]
fn an_optimizer_record_that_burn_decodes_but_cannot_use_is_refused() {
    let cases: Vec<(&str, Change)> = vec![
        ("no parameter id", Box::new(|r| r.tensors[0].id = None)),
        ("not one of the model's", Box::new(|r| r.tensors[0].id = Some(7))),
        (
            "the id of another parameter",
            Box::new(|r| {
                let other = r
                    .tensors
                    .iter()
                    .map(|t| t.id)
                    .find(|&id| id != r.tensors[0].id)
                    .unwrap();
                r.tensors[0].id = other;
            }),
        ),
        (
            "shape",
            Box::new(|r| {
                let t = r.tensors.iter_mut().find(|t| t.shape.len() == 2).unwrap();
                t.shape = vec![t.data.len() / 4];
            }),
        ),
        (
            "shape",
            Box::new(|r| {
                let t = &mut r.tensors[0];
                t.shape = vec![t.data.len() / 4, 1, 1, 1, 1, 1, 1, 1, 1];
            }),
        ),
        (
            "does not fit",
            Box::new(|r| {
                let t = r.tensors.iter_mut().find(|t| t.shape.len() == 2).unwrap();
                t.shape.reverse();
            }),
        ),
        (
            "dtype",
            Box::new(|r| {
                let t = &mut r.tensors[0];
                t.dtype = DType::I32;
            }),
        ),
        (
            "rank",
            Box::new(|r| {
                let key = r.scalars.keys().find(|k| k.ends_with(".__rank")).unwrap().clone();
                r.scalars.insert(key, Scalar::UInt(9));
            }),
        ),
        (
            "rank",
            Box::new(|r| {
                let key = r.scalars.keys().find(|k| k.ends_with(".__rank")).unwrap().clone();
                r.scalars.insert(key, Scalar::UInt(3));
            }),
        ),
        (
            "out of range",
            Box::new(|r| {
                let key = r.scalars.keys().find(|k| k.ends_with(".time")).unwrap().clone();
                r.scalars.insert(key, Scalar::UInt(u64::MAX));
            }),
        ),
    ];
    for (needle, change) in cases {
        check(&with_record(change), &[Reader::Resume], needle);
    }
    // A moment broadcast along a dimension of 1 (as Adafactor's factored moments are) still steps.
    let broadcast = with_record(|r| {
        let t = r.tensors.iter_mut().find(|t| t.shape.len() == 2).unwrap();
        t.shape[0] = 1;
        t.data.truncate(t.shape[1] * 4);
    });
    check(&broadcast, &[], "");
}

#[test]
fn a_full_checkpoint_with_a_flipped_weight_is_refused_by_every_reader() {
    let mut bytes = checkpoint().to_vec();
    let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let (begin, _) = metadata.info("model.hidden.weight").unwrap().data_offsets;
    bytes[8 + header_len + begin] ^= 0x40;
    // `load_model` checks the checksum of a file that carries one, as `evaluate`, `infer` and
    // `pretrained` read it: a damaged weight is an error, not a model that quietly differs.
    check(&bytes, &READERS, "does not match its checksum");
}
