//! Gradient post-processing over a whole model: PyTorch's `clip_grad_norm_` (one norm over all
//! gradients) and `clip_grad_value_`, and the global norm used to detect non-finite gradients.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};

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

/// Multiplies every gradient of `model` by the number `factor` (the loss scaler's unscaling).
pub fn scale_by<M: Module>(model: &M, grads: &mut GradientsParams, factor: f64) {
    map(model, grads, |grad, _| grad.mul_scalar(factor));
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

/// Every gradient of `model`'s trainable parameters, flattened in the model's visit order into one
/// host vector (zeros for a parameter without a gradient): the buffer a data-parallel platform sums
/// over ranks in one collective.
pub fn gradients_to_vec<M: Module>(model: &M, grads: &GradientsParams) -> Vec<f32> {
    struct Flatten<'a> {
        grads: &'a GradientsParams,
        out: Vec<f32>,
    }
    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() {
                return;
            }
            match self.grads.get::<D>(param.id) {
                Some(grad) => extend_f32(&mut self.out, &grad.into_data().convert::<f32>()),
                None => {
                    let len = param.lazy_shape().iter().product::<usize>();
                    self.out.resize(self.out.len() + len, 0.0);
                }
            }
        }
    }
    let mut visitor = Flatten {
        grads,
        // One allocation of the whole length: growing by doubling copied the buffer again and again.
        out: Vec::with_capacity(trainable_len(model)),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// Appends `data`'s values (f32) to `out`: straight from its bytes where they can be borrowed as
/// f32, else element by element. Never fewer values than `data` holds: a flattened model one tensor
/// short would misalign every rank's collective after it.
pub(super) fn extend_f32(out: &mut Vec<f32>, data: &TensorData) {
    match data.as_slice::<f32>() {
        Ok(values) => out.extend_from_slice(values),
        Err(_) => out.extend(data.iter::<f32>()),
    }
}

/// The number of elements of `model`'s trainable float parameters.
fn trainable_len<M: Module>(model: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0 += param.lazy_shape().iter().product::<usize>();
            }
        }
    }
    let mut count = Count(0);
    model.visit(&mut count);
    count.0
}

/// The gradients of `model`'s trainable parameters from `values`, laid out as [`gradients_to_vec`]
/// lays them out, on `device` (the platform's plain device). `None` when `values` has another length.
pub fn gradients_from_slice<M: Module>(
    model: &M,
    values: &[f32],
    device: &Device,
) -> Option<GradientsParams> {
    struct Unflatten<'a> {
        values: &'a [f32],
        at: usize,
        device: &'a Device,
        grads: GradientsParams,
        short: bool,
    }
    impl ModuleVisitor for Unflatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() {
                return;
            }
            let shape = param.lazy_shape();
            let len = shape.iter().product::<usize>();
            let Some(part) = self.values.get(self.at..self.at + len) else {
                self.short = true;
                return;
            };
            self.at += len;
            let data = TensorData::new(part.to_vec(), shape.to_vec());
            self.grads
                .register::<D>(param.id, Tensor::from_data(data, (self.device, DType::F32)));
        }
    }
    let mut visitor = Unflatten {
        values,
        at: 0,
        device,
        grads: GradientsParams::new(),
        short: false,
    };
    model.visit(&mut visitor);
    (!visitor.short && visitor.at == values.len()).then_some(visitor.grads)
}

/// Every float parameter of `model`, flattened in the model's visit order into one host vector: what
/// a data-parallel platform broadcasts so that every rank starts from rank 0's weights.
pub fn parameters_to_vec<M: Module>(model: &M) -> Vec<f32> {
    floats_to_vec(model, Floats::All)
}

/// `model` with its float parameters replaced by `values`, laid out as [`parameters_to_vec`] lays
/// them out (ids, devices and `require_grad` kept). `None` when `values` has another length.
pub fn parameters_from_slice<M: Module>(model: M, values: &[f32]) -> Option<M> {
    floats_from_slice(model, values, Floats::All)
}

/// Which float tensors of a model [`floats_to_vec`] and [`floats_from_slice`] move.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Floats {
    /// Every one, written back as f32.
    All,
    /// Those that do not require a gradient (buffers and frozen parameters), written back in
    /// their own dtype.
    Buffers,
}

impl Floats {
    fn takes<const D: usize>(self, param: &Param<Tensor<D>>) -> bool {
        self == Floats::All || !param.is_require_grad()
    }
}

/// The `which` float tensors of `model`, flattened in the model's visit order into one host vector.
pub(super) fn floats_to_vec<M: Module>(model: &M, which: Floats) -> Vec<f32> {
    struct Flatten(Vec<f32>, Floats);
    impl ModuleVisitor for Flatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.1.takes(param) {
                extend_f32(&mut self.0, &param.val().into_data().convert::<f32>());
            }
        }
    }
    let mut visitor = Flatten(Vec::new(), which);
    model.visit(&mut visitor);
    visitor.0
}

/// `model` with its `which` float tensors replaced by `values`, laid out as [`floats_to_vec`] lays
/// them out (ids, devices and `require_grad` kept). `None` when `values` has another length.
pub(super) fn floats_from_slice<M: Module>(model: M, values: &[f32], which: Floats) -> Option<M> {
    struct Assign<'a> {
        values: &'a [f32],
        at: usize,
        short: bool,
        which: Floats,
    }
    impl ModuleMapper for Assign<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if !self.which.takes(&param) {
                return param;
            }
            let shape = param.lazy_shape().to_vec();
            let len = shape.iter().product::<usize>();
            let Some(part) = self.values.get(self.at..self.at + len) else {
                self.short = true;
                return param;
            };
            self.at += len;
            let dtype = match self.which {
                Floats::All => DType::F32,
                Floats::Buffers => param.val().dtype(),
            };
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
        which,
    };
    let model = model.map(&mut mapper);
    (!mapper.short && mapper.at == values.len()).then_some(model)
}
