//! The metrics of a run: an ordered set of [`Metric`]s, the built-in preset and the user's alike.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::metric::{Metric, MetricBatch, MetricError};
use super::{MetricKind, MetricMode, Metrics};

/// The names a metric may not take: the runner's own values of a split (and its wall-clock ones,
/// [`WALL_CLOCK_KEYS`](crate::results::WALL_CLOCK_KEYS)).
pub const RESERVED_NAMES: [&str; 3] = ["loss", "lr", "skipped"];

/// The metrics a task reports on every split: an ordered list of [`Metric`]s. Each split of each
/// epoch gets a fresh set ([`Task::metrics`](crate::runner::Task::metrics) is called again).
///
/// ```
/// use danling::metrics::{MetricKind, MetricSet};
/// // The built-in five, as a preset, and later the task's own metrics beside them.
/// let metrics = MetricSet::from(MetricKind::Multiclass(10));
/// assert_eq!(metrics.names(), ["auroc", "auprc", "accuracy", "f1", "mcc"]);
/// ```
#[derive(Debug, Default)]
pub struct MetricSet {
    metrics: Vec<Box<dyn Metric>>,
}

impl From<MetricKind> for MetricSet {
    /// The built-in metrics of a task type (DESIGN's metric names), exact over the split.
    fn from(kind: MetricKind) -> Self {
        Self::from(Metrics::new(kind, MetricMode::Exact))
    }
}

impl From<Metrics> for MetricSet {
    fn from(metrics: Metrics) -> Self {
        Self::new().with(metrics)
    }
}

impl MetricSet {
    /// No metrics: the loss only.
    pub fn new() -> Self {
        Self::default()
    }

    /// The set with `metric` after the ones it has.
    pub fn with(mut self, metric: impl Metric + 'static) -> Self {
        self.metrics.push(Box::new(metric));
        self
    }

    /// The set with a boxed `metric` after the ones it has.
    pub fn with_boxed(mut self, metric: Box<dyn Metric>) -> Self {
        self.metrics.push(metric);
        self
    }

    /// Every value's name, in report order.
    pub fn names(&self) -> Vec<String> {
        self.metrics.iter().flat_map(|m| m.names()).collect()
    }

    /// A name given twice, or one of the [`RESERVED_NAMES`], if any: the runner refuses such a set.
    pub fn clash(&self) -> Option<String> {
        let names = self.names();
        names
            .iter()
            .enumerate()
            .find(|(i, name)| {
                RESERVED_NAMES.contains(&name.as_str())
                    || crate::results::is_wall_clock(name)
                    || names[..*i].contains(name)
            })
            .map(|(_, name)| name.clone())
    }

    /// Whether a higher value of `name` is better, as the metric reporting it says; `None` when no
    /// metric reports it.
    pub fn higher_is_better(&self, name: &str) -> Option<bool> {
        self.metrics
            .iter()
            .find(|m| m.names().iter().any(|n| n == name))
            .map(|m| m.higher_is_better(name))
    }

    /// Adds a batch to every metric.
    pub fn update(&mut self, batch: &MetricBatch<'_>) {
        for metric in &mut self.metrics {
            metric.update(batch);
        }
    }

    /// Every value so far, by name, in report order.
    pub fn compute(&self) -> IndexMap<String, f64> {
        self.metrics
            .iter()
            .flat_map(|m| m.names().into_iter().zip(m.compute()))
            .collect()
    }

    /// Every metric's state, in order: what a checkpoint keeps and what ranks exchange.
    pub fn states(&self) -> Vec<Value> {
        self.metrics.iter().map(|m| m.state()).collect()
    }

    /// Adds `states` (another set's [`states`](Self::states), of the same metrics) as if their
    /// batches had been added here.
    pub fn merge(&mut self, states: &[Value]) -> Result<(), MetricError> {
        if states.len() != self.metrics.len() {
            return Err(MetricError::Mismatch {
                expected: format!("{} metrics ({})", self.metrics.len(), self.names().join(", ")),
                found: format!("{} states", states.len()),
            });
        }
        for (metric, state) in self.metrics.iter_mut().zip(states) {
            metric.merge(state)?;
        }
        Ok(())
    }

    /// Whether the set has no metric.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }
}

/// The built-in preset as a [`Metric`]: five values from one copy of the predictions (or running
/// averages, in stream mode).
impl Metric for Metrics {
    fn names(&self) -> Vec<String> {
        self.kind().names().iter().map(|n| (*n).to_owned()).collect()
    }

    fn higher_is_better(&self, name: &str) -> bool {
        !matches!(name, "mse" | "rmse")
    }

    fn update(&mut self, batch: &MetricBatch<'_>) {
        self.update_batch(batch);
    }

    fn compute(&self) -> Vec<f64> {
        Metrics::compute(self).into_values().collect()
    }

    fn state(&self) -> Value {
        // Plain numbers and strings (non-finite ones encoded as strings): serialising cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn merge(&mut self, state: &Value) -> Result<(), MetricError> {
        let other: Metrics = serde_json::from_value(state.clone())?;
        match Metrics::merge(self, &other) {
            true => Ok(()),
            false => Err(MetricError::Mismatch {
                expected: format!("{:?} metrics", self.kind()),
                found: format!("{:?} metrics", other.kind()),
            }),
        }
    }
}

/// The states of a set's metrics ([`MetricSet::states`]), as a checkpoint keeps them: one JSON value
/// per metric, in the set's order.
///
/// A checkpoint written before metrics were a trait holds the built-in preset's state alone (an
/// object); it is read as a list of that one state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct MetricStates(pub Vec<Value>);

impl<'de> Deserialize<'de> for MetricStates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer)? {
            Value::Array(states) => Self(states),
            one => Self(vec![one]),
        })
    }
}

impl MetricSet {
    /// The set's states, to keep ([`MetricStates`]).
    pub fn snapshot(&self) -> MetricStates {
        MetricStates(self.states())
    }
}
