//! AdamW with the update fused into one pass over each parameter on CPU backends.
//!
//! burn's `AdamW` runs the update as fourteen tensor operations, each reading and writing a whole
//! parameter-sized tensor; on a CPU that costs a third of a small MLP's step. This optimizer computes
//! the same arithmetic, operation for operation in `f32` (so the same bits as burn's `AdamW`), in one
//! loop over the parameter, its gradient and both moments. On any other backend, or for parameters
//! that are not `f32`, it runs burn's tensor operations. Its state is burn's `AdamWState`, so
//! checkpoints are interchangeable with burn's optimizer.

use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// AdamW (decoupled weight decay), as configured by `optim: {type: adamw}`.
#[derive(Clone, Copy, Debug)]
pub struct FusedAdamW {
    /// Exponential decay of the first moment.
    pub beta_1: f32,
    /// Exponential decay of the second moment.
    pub beta_2: f32,
    /// Added to the denominator.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let fused = device == Device::flex() && tensor.dtype() == DType::F32 && grad.dtype() == DType::F32;
        let state = state.map(|s| s.momentum);
        let (tensor, momentum) = if fused {
            self.step_host(lr, tensor, grad, state, &device)
        } else {
            self.step_tensors(lr, tensor, grad, state)
        };
        (tensor, Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum.moment_1 = state.momentum.moment_1.to_device(device);
        state.momentum.moment_2 = state.momentum.moment_2.to_device(device);
        state.momentum.max_moment_2 = state.momentum.max_moment_2.map(|t| t.to_device(device));
        state
    }
}

/// The scalars of one step, rounded to `f32` exactly as burn's `AdamW` rounds them.
struct Scalars {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    decay: f32,
    lr: f32,
}

/// One chunk of a parameter, its gradient and its two moments, as rayon's zips hand them over.
type Chunk<'a> = (((&'a mut [f32], &'a [f32]), &'a mut [f32]), &'a mut [f32]);

/// Parameters at least this long are updated on several threads, in chunks of `CHUNK`.
const PARALLEL_MIN: usize = 1 << 16;
const CHUNK: usize = 1 << 14;

impl Scalars {
    /// Updates the moments and the parameters of one chunk, in burn's order of operations.
    #[inline(always)]
    fn update_chunk(&self, first: bool, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            // burn's first step sets the moments to (1 - beta) g; adding that to beta × 0 would turn
            // a -0 into +0, so the first step is written out.
            if first {
                *m = *g * self.factor_1;
                *v = (*g * *g) * self.factor_2;
            } else {
                *m = *m * self.beta_1 + *g * self.factor_1;
                *v = *v * self.beta_2 + (*g * *g) * self.factor_2;
            }
            let delta = (*m / self.correction_1) / ((*v / self.correction_2).sqrt() + self.epsilon);
            *p = *p * self.decay - delta * self.lr;
        }
    }
}

impl FusedAdamW {
    fn scalars(&self, lr: LearningRate, time: usize) -> Scalars {
        let time = time as i32;
        Scalars {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            correction_1: 1.0 - self.beta_1.powi(time),
            correction_2: 1.0 - self.beta_2.powi(time),
            epsilon: self.epsilon,
            decay: (1.0 - lr * f64::from(self.weight_decay)) as f32,
            lr: lr as f32,
        }
    }

    /// One loop over the four tensors' host data (moved, not copied, when a tensor is not shared).
    fn step_host<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdaptiveMomentumState<D>>,
        device: &Device,
    ) -> (Tensor<D>, AdaptiveMomentumState<D>) {
        let shape = tensor.shape();
        let (time, moments) = match state {
            Some(s) => (s.time + 1, Some((s.moment_1.into_data(), s.moment_2.into_data()))),
            None => (1, None),
        };
        let (param, grad) = (tensor.into_data(), grad.into_data());
        let readable = |d: &TensorData| d.as_slice::<f32>().is_ok_and(|v| v.len() == shape.num_elements());
        let all_readable = readable(&param)
            && readable(&grad)
            && moments.as_ref().is_none_or(|(m, v)| readable(m) && readable(v));
        if !all_readable {
            // Not plain f32 host memory after all: burn's operations handle whatever it is.
            let tensor = |data: TensorData| Tensor::<D>::from_data(data, device);
            let state = moments.map(|(m, v)| AdaptiveMomentumState::new(time - 1, tensor(m), tensor(v)));
            return self.step_tensors(lr, tensor(param), tensor(grad), state);
        }
        // Each is f32 of the right length (checked above), so these moves cannot fail.
        let values = |data: TensorData| data.try_into_vec::<f32>().unwrap_or_default();
        let mut param = values(param);
        let grad = values(grad);
        let s = self.scalars(lr, time);
        let (mut m, mut v) = match moments {
            Some((m, v)) => (values(m), values(v)),
            None => (vec![0.0; grad.len()], vec![0.0; grad.len()]),
        };
        let first = time == 1;
        let update = |(((p, g), m), v): Chunk<'_>| {
            // Compiled for the widest SIMD this CPU has (AVX-512, AVX2, ...), chosen at run time.
            pulp::Arch::new().dispatch(|| s.update_chunk(first, p, g, m, v));
        };
        if param.len() >= PARALLEL_MIN {
            param
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(update);
        } else {
            update((((&mut param[..], &grad[..]), &mut m[..]), &mut v[..]));
        }
        let tensor =
            |values: Vec<f32>| Tensor::<D>::from_data(TensorData::new(values, shape.clone()), device);
        let momentum = AdaptiveMomentumState::new(time, tensor(m), tensor(v));
        (tensor(param), momentum)
    }

    /// burn's `AdamW` update, as tensor operations on the device.
    fn step_tensors<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdaptiveMomentumState<D>>,
    ) -> (Tensor<D>, AdaptiveMomentumState<D>) {
        let (time, m, v) = match state {
            Some(s) => (
                s.time + 1,
                s.moment_1
                    .mul_scalar(self.beta_1)
                    .add(grad.clone().mul_scalar(1.0 - self.beta_1)),
                s.moment_2
                    .mul_scalar(self.beta_2)
                    .add(grad.square().mul_scalar(1.0 - self.beta_2)),
            ),
            None => (
                1,
                grad.clone().mul_scalar(1.0 - self.beta_1),
                grad.square().mul_scalar(1.0 - self.beta_2),
            ),
        };
        let s = self.scalars(lr, time);
        let delta = m
            .clone()
            .div_scalar(s.correction_1)
            .div(v.clone().div_scalar(s.correction_2).sqrt().add_scalar(s.epsilon));
        let tensor = tensor.mul_scalar(s.decay) - delta.mul_scalar(s.lr);
        (tensor, AdaptiveMomentumState::new(time, m, v))
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    fn bits(tensor: Tensor<2>) -> Vec<u32> {
        tensor
            .into_data()
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    const OPTIM: FusedAdamW = FusedAdamW {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
    };

    #[test]
    fn updates_are_bit_identical_to_burns_adamw() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let mut ours: Linear = LinearConfig::new(300, 250).init(&device);
        let mut theirs = ours.clone();
        let mut fused = ModuleOptimizer::from(OPTIM);
        let mut reference = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(0.01)
            .init();
        for step in 0..5 {
            let x = Tensor::<2>::random([16, 300], Distribution::Normal(0.0, 1.0), &device);
            let grads = |model: &Linear| {
                let loss = model.forward(x.clone()).powi_scalar(2).mean();
                GradientsParams::from_grads(loss.backward(), model)
            };
            let (g_ours, g_theirs) = (grads(&ours), grads(&theirs));
            let lr = 1e-2 / (step + 1) as f64;
            ours = fused.step(lr, ours, g_ours);
            theirs = reference.step(lr, theirs, g_theirs);
            assert_eq!(bits(ours.weight.val()), bits(theirs.weight.val()), "step {step}");
        }
    }

    #[test]
    fn the_tensor_path_gives_the_same_bits_as_the_fused_loop() {
        let device = Device::flex();
        device.seed(3);
        let param = Tensor::<2>::random([70_000, 3], Distribution::Normal(0.0, 1.0), &device);
        let (mut host, mut host_state) = (param.clone(), None);
        let (mut tensors, mut tensors_state) = (param, None);
        for step in 1..4 {
            let grad = Tensor::<2>::random([70_000, 3], Distribution::Normal(0.0, 0.1), &device);
            let lr = 1e-3 * step as f64;
            let (p, state) = OPTIM.step_host(lr, host, grad.clone(), host_state, &device);
            (host, host_state) = (p, Some(state));
            let (p, state) = OPTIM.step_tensors(lr, tensors, grad, tensors_state);
            (tensors, tensors_state) = (p, Some(state));
            let (h, t) = (host_state.as_ref().unwrap(), tensors_state.as_ref().unwrap());
            assert_eq!(bits(host.clone()), bits(tensors.clone()), "step {step}");
            assert_eq!(bits(h.moment_2.clone()), bits(t.moment_2.clone()), "step {step}");
            assert_eq!(h.time, t.time);
        }
    }
}
