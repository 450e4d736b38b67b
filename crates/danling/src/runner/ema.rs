//! `ema`: an exponential moving average of the model's weights, kept on the training device beside
//! the model, updated after every optimizer update, evaluated beside the raw weights (as `ema_loss`,
//! `ema_{metric}`), and saved in every checkpoint as `ema.{path}`.
//!
//! Every float tensor is averaged, buffers such as BatchNorm's running statistics included (as
//! timm's `ModelEmaV2` does), as `ema ← ema + (θ − ema)·(1 − decay)`, which leaves a tensor that does
//! not change (a frozen layer) exactly as it is. On N ranks every rank holds the same model after a
//! step, so every rank's average is the same too.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// The averaged weights and their decay.
pub(super) struct Ema<M> {
    decay: f64,
    /// A validation copy (no autodiff) with buffers of its own, not shared with the model's. `None`
    /// only during an update.
    model: Option<M>,
}

impl<M: Module> Ema<M> {
    /// An average that starts at `model` (a validation copy: `Module::valid` gives it buffers of
    /// its own).
    pub(super) fn new(decay: f64, model: M) -> Self {
        Self {
            decay,
            model: Some(model),
        }
    }

    /// The averaged weights.
    #[allow(clippy::expect_used)] // empty only inside `update`, which refills it
    pub(super) fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("the average is back after every update")
    }

    /// Moves the average towards `model`'s weights, on the device.
    pub(super) fn update(&mut self, model: &M) {
        let mut current = Collect(Vec::new());
        model.valid().visit(&mut current);
        let mut lerp = Lerp {
            values: current.0.into_iter(),
            weight: 1.0 - self.decay,
        };
        if let Some(average) = self.model.take() {
            self.model = Some(average.map(&mut lerp));
        }
    }
}

/// Every float tensor of a model, flattened, in visit order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let len = value.shape().num_elements();
        self.0.push(value.reshape([len]));
    }
}

/// Moves each float tensor of the average towards the model's tensor in the same place.
struct Lerp {
    values: std::vec::IntoIter<Tensor<1>>,
    weight: f64,
}

impl ModuleMapper for Lerp {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.values.next() else {
            return param; // the same model visited twice: never fewer tensors
        };
        let weight = self.weight;
        param.map(|average| {
            let current: Tensor<D> = current.reshape(average.shape());
            let step = (current - average.clone()).mul_scalar(weight);
            average + step
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::tensor::{Device, Tensor};

    use super::Ema;

    #[derive(Module, Debug)]
    struct Net {
        linear: Linear,
        norm: BatchNorm,
    }

    fn values<M: Module>(model: &M) -> Vec<f32> {
        super::super::grads::floats_to_vec(model, super::super::grads::Floats::All)
    }

    #[test]
    fn the_average_follows_the_formula_for_weights_and_buffers_and_keeps_unchanged_tensors_exact() {
        let device = Device::flex();
        device.seed(3);
        let start = Net {
            linear: LinearConfig::new(3, 2).init(&device),
            norm: BatchNormConfig::new(2).init(&device),
        };
        let mut ema = Ema::new(0.75, start.valid());
        let before = values(&start);
        // A step: the weights move, and the running statistics with them.
        let moved = Net {
            linear: LinearConfig::new(3, 2).init(&device),
            norm: start.norm.clone(),
        };
        moved
            .norm
            .forward(Tensor::<2>::ones([4, 2], &device).reshape([4, 2, 1]));
        let after = values(&moved.valid());
        ema.update(&moved);
        let averaged = values(ema.model());
        assert_eq!(averaged.len(), before.len());
        for ((a, b), e) in before.iter().zip(&after).zip(&averaged) {
            let expected = a + (b - a) * 0.25;
            assert!((e - expected).abs() <= 1e-6, "{e} against {expected}");
            if a == b {
                assert_eq!(e, a, "a tensor that did not change stays exact");
            }
        }
        // The average has buffers of its own: the model's are untouched.
        assert_eq!(values(&moved.valid()), after);
    }
}
