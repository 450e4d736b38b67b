//! Gradient post-processing over a whole model: PyTorch's `clip_grad_norm_` (one norm over all
//! gradients) and `clip_grad_value_`, and the global norm used to detect non-finite gradients.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The L2 norm over every gradient of `model`, as a one-element tensor on the device.
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    total(model, grads, true).map(Tensor::sqrt)
}

/// The sum of every gradient element of `model`, as a one-element tensor on the device: finite
/// exactly when every gradient is (unless the sum overflows). One pass, no temporaries.
pub fn sum<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    total(model, grads, false)
}

/// The sum of every gradient element, or of their squares.
fn total<M: Module>(model: &M, grads: &GradientsParams, squared: bool) -> Option<Tensor<1>> {
    struct Total<'a> {
        grads: &'a GradientsParams,
        squared: bool,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Total<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let sum = if self.squared {
                    grad.square().sum()
                } else {
                    grad.sum()
                };
                self.total = Some(match self.total.take() {
                    Some(total) => total + sum,
                    None => sum,
                });
            }
        }
    }
    let mut visitor = Total {
        grads,
        squared,
        total: None,
    };
    model.visit(&mut visitor);
    visitor.total
}

/// Multiplies every gradient of `model` by `factor` (a one-element tensor), on the device.
pub fn scale<M: Module>(model: &M, grads: &mut GradientsParams, factor: &Tensor<1>) {
    map(model, grads, |grad, rank| grad.mul(factor.clone().reshape(rank)));
}

/// Clamps every gradient element of `model` to `[-value, value]`.
pub fn clamp<M: Module>(model: &M, grads: &mut GradientsParams, value: f64) {
    map(model, grads, |grad, _| grad.clamp(-value, value));
}

/// PyTorch's `clip_grad_norm_`: scales all gradients by `min(1, max_norm / (norm + 1e-6))`, where
/// `norm` is `total_norm` (the global norm, computed by the caller).
pub fn clip_norm<M: Module>(model: &M, grads: &mut GradientsParams, total_norm: &Tensor<1>, max_norm: f64) {
    let factor = (total_norm.clone() + 1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    scale(model, grads, &factor);
}

/// Applies `f` to each gradient; `f` gets the gradient and a shape of ones of the same rank, for
/// broadcasting.
fn map<M: Module>(model: &M, grads: &mut GradientsParams, f: impl FnMut(Tensor<1>, [usize; 1]) -> Tensor<1>) {
    struct Mapper<'a, F> {
        grads: &'a mut GradientsParams,
        f: F,
    }
    impl<F: FnMut(Tensor<1>, [usize; 1]) -> Tensor<1>> ModuleVisitor for Mapper<'_, F> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                let shape = grad.shape();
                let flat: Tensor<1> = grad.flatten(0, D - 1);
                let mapped = (self.f)(flat, [1]);
                self.grads.register::<D>(param.id, mapped.reshape(shape));
            }
        }
    }
    let mut mapper = Mapper { grads, f };
    model.visit(&mut mapper);
}
