//! Mixed precision (`precision: f16` or `bf16`, on a GPU device). burn has no automatic mixed
//! precision, so this is the usual recipe by hand:
//!
//! - the master weights and the optimizer state stay f32;
//! - the platform makes half precision the device's default float type, so batches are built in
//!   it, and each micro-batch runs forward and backward on a working copy of the model cast from the
//!   master *inside* the autodiff graph: the backward pass of that cast hands the master its
//!   gradient, in f32;
//! - with f16, the loss is scaled before backward and the gradients unscaled after, by a dynamic
//!   [`LossScaler`](crate::state::LossScaler) kept in every checkpoint (bf16 has f32's range and
//!   needs none);
//! - evaluation and inference run on a half-precision copy too, as the batches are half precision.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{FloatDType, Tensor};

use crate::config::Precision;

/// The half-precision type of the working copy, or `None` for f32 training.
pub(super) fn half(precision: Precision) -> Option<FloatDType> {
    match precision {
        Precision::F32 => None,
        Precision::F16 => Some(FloatDType::F16),
        Precision::Bf16 => Some(FloatDType::BF16),
    }
}

/// `model` with every float parameter cast to `dtype` (a no-op for those already in it). On an
/// autodiff model the cast is part of the graph: gradients flow back to the original parameters.
pub(super) fn cast<M: Module>(model: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|tensor| tensor.cast(dtype))
        }
    }
    model.map(&mut Cast(dtype))
}

/// `model` with f32 master weights: what the runner trains and saves, whatever dtype the model was
/// built or a checkpoint was written in.
pub(super) fn master<M: Module>(model: M) -> M {
    cast(model, FloatDType::F32)
}
