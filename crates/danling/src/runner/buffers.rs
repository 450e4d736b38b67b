//! A model's buffers: the float tensors that are not trained but change as the model trains, such as
//! BatchNorm's running statistics (burn's `RunningState`).
//!
//! burn keeps each update of a `RunningState` pending, per thread, and publishes it only when the
//! module is synced (`valid()` or `train()`): read between two steps, without a sync, the model gives
//! its statistics one update old. The runner therefore publishes them after every optimizer step
//! ([`sync`]), so that whatever reads the model between steps (a step checkpoint, a stop on a
//! signal, evaluation, the caller after `train`) sees exactly the state the next step would use.
//!
//! On N ranks, each rank's forward passes update its own statistics from its own shard of the batch
//! (BatchNorm normalises by the local batch, as PyTorch's DDP without SyncBatchNorm does). After each
//! optimizer step rank 0's buffers are broadcast to every rank, as DDP's default
//! `broadcast_buffers=True` does before each forward: every rank then holds the same model, the one
//! rank 0 writes into a checkpoint, so a resume is exact on every rank and evaluation on N ranks
//! equals evaluation of that checkpoint on one.

use super::grads::{Floats, floats_from_slice, floats_to_vec};
use burn::module::Module;

/// Publishes the pending updates of every `RunningState` in `model`, in place (the states are
/// shared with the copy `valid` returns, which is dropped).
pub(super) fn sync<M: Module>(model: &M) {
    drop(model.valid());
}

/// Every buffer of `model` (a float tensor that does not require a gradient), flattened in the
/// model's visit order into one host vector. Frozen parameters are included: they are the same on
/// every rank, so a broadcast leaves them as they are.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))] // used by the MPI platform
pub(super) fn buffers_to_vec<M: Module>(model: &M) -> Vec<f32> {
    floats_to_vec(model, Floats::Buffers)
}

/// `model` with its buffers replaced by `values`, laid out as [`buffers_to_vec`] lays them out, each
/// in its own dtype. `None` when `values` has another length.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))] // used by the MPI platform
pub(super) fn buffers_from_slice<M: Module>(model: M, values: &[f32]) -> Option<M> {
    floats_from_slice(model, values, Floats::Buffers)
}
