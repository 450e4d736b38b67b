//! The metrics of this example's own: perplexity, `exp` of the mean negative log-likelihood of the
//! targets under the model's softmax, and the top-1 accuracy of the next character, both computed
//! on the host from the logits danling hands every metric.
//!
//! The metric a character-level GPT reports, after Andrej Karpathy's nanoGPT
//! (<https://github.com/karpathy/nanoGPT>, MIT licence), which reports its exponent (the loss).

use danling::metrics::{Metric, MetricBatch, MetricError, TargetSlice};
use serde::de::Error as _;
use serde_json::Value;

/// `exp(Σ -log softmax(logits)[target] / count)` over every target of a split; targets outside the
/// classes (such as -100) are left out. Lower is better; 1 is a perfect model, the vocabulary size
/// a uniform guess.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Perplexity {
    /// The summed negative log-likelihood, in nats.
    sum: f64,
    /// The targets counted.
    count: u64,
}

impl Metric for Perplexity {
    fn names(&self) -> Vec<String> {
        vec!["perplexity".into()]
    }

    fn higher_is_better(&self, _name: &str) -> bool {
        false
    }

    fn update(&mut self, batch: &MetricBatch<'_>) {
        let TargetSlice::Labels(labels) = batch.targets else {
            return;
        };
        for (logits, &label) in batch.outputs.chunks(batch.width.max(1)).zip(labels) {
            let Some(&target) = usize::try_from(label).ok().and_then(|i| logits.get(i)) else {
                continue;
            };
            // log Σ exp(logits), shifted by the largest logit so that no term overflows.
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + logits.iter().map(|&l| (l - max).exp()).sum::<f64>().ln();
            self.sum += log_sum - target;
            self.count += 1;
        }
    }

    fn compute(&self) -> Vec<f64> {
        let perplexity = match self.count {
            0 => f64::NAN,
            count => (self.sum / count as f64).exp(),
        };
        vec![perplexity]
    }

    /// `[sum, count]`; a sum that is not finite is written as `"NaN"`, `"inf"` or `"-inf"`, as
    /// danling writes non-finite numbers in state JSON.
    fn state(&self) -> Value {
        let sum = match self.sum {
            s if s.is_finite() => Value::from(s),
            s if s.is_nan() => Value::from("NaN"),
            s if s > 0.0 => Value::from("inf"),
            _ => Value::from("-inf"),
        };
        Value::Array(vec![sum, Value::from(self.count)])
    }

    fn merge(&mut self, state: &Value) -> Result<(), MetricError> {
        let (sum, count): (Value, u64) = serde_json::from_value(state.clone())?;
        let sum = match &sum {
            Value::String(text) => match text.as_str() {
                "NaN" => f64::NAN,
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                other => return Err(serde_json::Error::custom(format!("a sum of {other:?}")).into()),
            },
            number => serde_json::from_value(number.clone())?,
        };
        self.sum += sum;
        self.count += count;
        Ok(())
    }
}

/// The share of targets whose logit is the highest of its row (ties count against it); targets
/// outside the classes are left out. Over every position, not averaged per class: with 60
/// characters of very different frequencies, the macro average says little.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    /// Targets predicted.
    hits: u64,
    /// Targets counted.
    count: u64,
}

impl Metric for Accuracy {
    fn names(&self) -> Vec<String> {
        vec!["accuracy".into()]
    }

    fn update(&mut self, batch: &MetricBatch<'_>) {
        let TargetSlice::Labels(labels) = batch.targets else {
            return;
        };
        for (logits, &label) in batch.outputs.chunks(batch.width.max(1)).zip(labels) {
            let Some(&target) = usize::try_from(label).ok().and_then(|i| logits.get(i)) else {
                continue;
            };
            self.hits += u64::from(logits.iter().filter(|&&l| l >= target).count() == 1);
            self.count += 1;
        }
    }

    fn compute(&self) -> Vec<f64> {
        match self.count {
            0 => vec![f64::NAN],
            count => vec![self.hits as f64 / count as f64],
        }
    }

    fn state(&self) -> Value {
        Value::from(vec![self.hits, self.count])
    }

    fn merge(&mut self, state: &Value) -> Result<(), MetricError> {
        let (hits, count): (u64, u64) = serde_json::from_value(state.clone())?;
        self.hits += hits;
        self.count += count;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn batch<'a>(outputs: &'a [f64], labels: &'a [i64]) -> MetricBatch<'a> {
        MetricBatch {
            outputs,
            width: 3,
            targets: TargetSlice::Labels(labels),
        }
    }

    #[test]
    fn uniform_logits_give_the_vocabulary_size_and_large_ones_stay_finite() {
        let mut metric = Perplexity::default();
        assert!(metric.compute()[0].is_nan());
        metric.update(&batch(&[0.0, 0.0, 0.0, 5.0, 5.0, 5.0], &[0, 2]));
        assert!((metric.compute()[0] - 3.0).abs() < 1e-12);

        // Logits far beyond exp's range: -log softmax is still exact.
        let mut large = Perplexity::default();
        large.update(&batch(&[1000.0, 0.0, 1000.0, 0.0, 0.0, 0.0], &[0, -100]));
        assert!((large.compute()[0] - 2.0).abs() < 1e-12, "{:?}", large.compute());
        assert_eq!(large.count, 1, "the ignored target is not counted");
        assert!(!large.higher_is_better("perplexity"));
    }

    #[test]
    fn states_merge_as_if_the_batches_were_added_here() {
        let outputs = [2.0, 0.5, -1.0, 0.0, 3.0, 1.0, 1.0, 1.0, 4.0];
        let labels = [0, 1, 2];
        let mut whole = Perplexity::default();
        whole.update(&MetricBatch {
            outputs: &outputs,
            width: 3,
            targets: TargetSlice::Labels(&labels),
        });
        let (mut first, mut second) = (Perplexity::default(), Perplexity::default());
        first.update(&batch(&outputs[..3], &labels[..1]));
        second.update(&batch(&outputs[3..], &labels[1..]));
        first.merge(&second.state()).unwrap();
        assert!((first.compute()[0] - whole.compute()[0]).abs() < 1e-12);

        let mut restored = Perplexity::default();
        restored.merge(&whole.state()).unwrap();
        assert_eq!(restored, whole);

        let infinite = Perplexity {
            sum: f64::INFINITY,
            count: 2,
        };
        assert_eq!(infinite.state(), serde_json::json!(["inf", 2]));
        let mut back = Perplexity::default();
        back.merge(&infinite.state()).unwrap();
        assert_eq!(back, infinite);
        assert!(back.merge(&serde_json::json!(["many", 1])).is_err());
        assert!(back.merge(&serde_json::json!({"sum": 1})).is_err());
    }

    #[test]
    fn accuracy_counts_strict_maxima_and_merges() {
        let mut metric = Accuracy::default();
        assert!(metric.compute()[0].is_nan());
        // Right, a tie (wrong), right; the -100 is left out.
        metric.update(&batch(&[0.0, 2.0, 1.0, 3.0, 3.0, 0.0], &[1, 0]));
        metric.update(&batch(&[5.0, 0.0, 0.0, 1.0, 2.0, 3.0], &[0, -100]));
        assert_eq!(metric.compute(), [2.0 / 3.0]);
        let mut other = Accuracy::default();
        other.merge(&metric.state()).unwrap();
        assert_eq!(other, metric);
    }
}
