//! The optimizer part of a checkpoint: burn's record of the optimizer state, keyed by `ParamId`s,
//! and the `param_ids` that give a loaded model the ids it had when saved.
//!
//! burn decodes a record defensively (its lengths are checked), but then trusts what it finds: a
//! state tensor without a parameter id, a rank over 8, or a tensor whose rank differs from its
//! parameter's panics while loading, and one of another shape panics at the next optimizer step. So
//! the record is checked against the model first.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::store::burn_pack::{Reader, Scalar};
use burn::tensor::{Bytes, DType, Tensor};

use super::path::{ModulePath, PathMapper, PathVisitor, map_with_path, visit_with_path};

/// The alignment burn wants of a tensor's bytes (that of its widest element type).
const MAX_ALIGN: usize = align_of::<u128>();

/// The scalar key suffix under which burn records each parameter's rank.
const RANK: &str = ".__rank";

/// The largest integer an optimizer's state holds: burn's optimizers keep only step counts, and
/// one near `u64::MAX` would overflow at the next step.
const MAX_COUNT: u64 = u32::MAX as u64;

/// Loads `record` (burn's bytes) into `optimizer` for `model`, after checking that every state
/// tensor belongs to a parameter of the model and fits it.
pub(crate) fn load_optimizer<M: Module>(
    record: Vec<u8>,
    model: &M,
    optimizer: ModuleOptimizer,
) -> Result<ModuleOptimizer, String> {
    // Taken as they are where the allocator aligned them for any element (as it does a buffer of
    // this size): burn copies bytes it is not told are aligned into memory that is, a second pass
    // over a record twice the model's size. Shared, so that the check reads the same bytes as the
    // load, not a copy.
    let bytes = match record.as_ptr().align_offset(MAX_ALIGN) {
        0 => Bytes::from_elems(record),
        _ => Bytes::from_bytes_vec(record),
    }
    .shared();
    check(bytes.clone(), &shapes(model))?;
    optimizer.from_bytes(bytes).map_err(|e| e.to_string())
}

/// Checks a record against the model's parameters (id to shape).
///
/// Each state tensor must carry the id of a parameter, be named under it, be a float, and have the
/// parameter's rank with each dimension the parameter's or 1 (Adafactor's factored moments are
/// `[rows, 1]` and `[1, cols]`). Each recorded rank must be its parameter's, and each integer small
/// enough to count steps.
fn check(bytes: Bytes, params: &HashMap<u64, Vec<usize>>) -> Result<(), String> {
    let reader = Reader::from_bytes(bytes).map_err(|e| e.to_string())?;
    for (key, value) in reader.scalars() {
        let count = match *value {
            Scalar::Int(n) => u64::try_from(n).ok(),
            Scalar::UInt(n) => Some(n),
            Scalar::Float(_) | Scalar::Bool(_) => continue,
        };
        let Some(count) = count.filter(|&n| n <= MAX_COUNT) else {
            return Err(format!("`{key}` is {value:?}, out of range"));
        };
        // burn reads `{id}.__rank` where `id` parses as a u64; so does this.
        if let Some(id) = key.strip_suffix(RANK).and_then(|id| id.parse::<u64>().ok()) {
            let shape = parameter(params, key, id)?;
            if count != shape.len() as u64 {
                return Err(format!(
                    "`{key}` gives rank {count}, but the parameter has rank {}",
                    shape.len()
                ));
            }
        }
    }
    for tensor in reader.into_tensors().map_err(|e| e.to_string())? {
        let name = &tensor.name;
        let id = tensor
            .param_id
            .ok_or_else(|| format!("tensor `{name}` carries no parameter id"))?;
        let shape = parameter(params, name, id)?;
        if !name.starts_with(&format!("{id}.")) {
            return Err(format!(
                "tensor `{name}` carries the id of another parameter ({id})"
            ));
        }
        if !matches!(tensor.dtype, DType::F64 | DType::F32 | DType::F16 | DType::BF16) {
            return Err(format!(
                "tensor `{name}` has dtype {:?}, not a float",
                tensor.dtype
            ));
        }
        let found: &[usize] = &tensor.shape;
        let fits = found.len() == shape.len() && found.iter().zip(shape).all(|(&f, &p)| f == p || f == 1);
        if !fits {
            return Err(format!(
                "tensor `{name}` has shape {found:?}, which does not fit its parameter's {shape:?}"
            ));
        }
    }
    Ok(())
}

/// The shape of parameter `id`, which `what` is recorded for.
fn parameter<'a>(params: &'a HashMap<u64, Vec<usize>>, what: &str, id: u64) -> Result<&'a [usize], String> {
    params
        .get(&id)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("`{what}` is for parameter id {id}, which is not one of the model's"))
}

/// Each float parameter's id and shape.
fn shapes<M: Module>(model: &M) -> HashMap<u64, Vec<usize>> {
    struct Collect(HashMap<u64, Vec<usize>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id.val(), param.lazy_shape().to_vec());
        }
    }
    let mut collect = Collect(HashMap::new());
    model.visit(&mut collect);
    collect.0
}

/// Each float parameter's module path (`layers.0.weight`) and its `ParamId`.
pub(crate) fn param_ids<M: Module>(model: &M) -> BTreeMap<String, u64> {
    struct Collect(BTreeMap<String, u64>);
    impl PathVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, at: &ModulePath, param: &Param<Tensor<D>>) {
            self.0.insert(at.burn_name(), param.id.val());
        }
    }
    visit_with_path(model, Collect(BTreeMap::new())).0
}

/// Refuses two paths recorded with the same id.
pub(crate) fn distinct_ids(ids: &BTreeMap<String, u64>) -> Result<(), String> {
    let mut paths: HashMap<u64, &str> = HashMap::with_capacity(ids.len());
    for (path, &id) in ids {
        if let Some(other) = paths.insert(id, path) {
            return Err(format!("`{other}` and `{path}` have the same id"));
        }
    }
    Ok(())
}

/// Gives each float parameter the id recorded for its path. Two paths recorded with the same id
/// are refused: the two parameters would share one optimizer state (and one gradient).
pub(crate) fn assign_param_ids<M: Module>(model: M, ids: &BTreeMap<String, u64>) -> Result<M, String> {
    distinct_ids(ids)?;
    struct Assign<'a>(&'a BTreeMap<String, u64>);
    impl PathMapper for Assign<'_> {
        fn map_float<const D: usize>(
            &mut self,
            at: &ModulePath,
            mut param: Param<Tensor<D>>,
        ) -> Param<Tensor<D>> {
            if let Some(&id) = self.0.get(&at.burn_name()) {
                param.id = ParamId::from(id);
            }
            param
        }
    }
    Ok(map_with_path(model, Assign(ids)).0)
}
