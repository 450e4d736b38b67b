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

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

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
    struct Flatten(Vec<f32>);
    impl ModuleVisitor for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                return;
            }
            super::grads::extend_f32(&mut self.0, &param.val().into_data().convert::<f32>());
        }
    }
    let mut visitor = Flatten(Vec::new());
    model.visit(&mut visitor);
    visitor.0
}

/// `model` with its buffers replaced by `values`, laid out as [`buffers_to_vec`] lays them out.
/// `None` when `values` has another length.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))] // used by the MPI platform
pub(super) fn buffers_from_slice<M: Module>(model: M, values: &[f32]) -> Option<M> {
    struct Assign<'a> {
        values: &'a [f32],
        at: usize,
        short: bool,
    }
    impl ModuleMapper for Assign<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.is_require_grad() {
                return param;
            }
            let shape = param.lazy_shape().to_vec();
            let len = shape.iter().product::<usize>();
            let Some(part) = self.values.get(self.at..self.at + len) else {
                self.short = true;
                return param;
            };
            self.at += len;
            // In the buffer's own dtype (from f32 exactly when it is f32).
            let dtype = param.val().dtype();
            let tensor = Tensor::from_data(
                TensorData::new(part.to_vec(), shape),
                (&param.lazy_device(), dtype),
            );
            let id = param.id;
            param.transform_for_load(tensor, id)
        }
    }
    let mut mapper = Assign {
        values,
        at: 0,
        short: false,
    };
    let model = model.map(&mut mapper);
    (!mapper.short && mapper.at == values.len()).then_some(model)
}
