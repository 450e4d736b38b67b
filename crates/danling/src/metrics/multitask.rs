//! Metrics of several tasks at once, with an `average` over tasks.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{Metrics, TargetSlice};

/// Task name → its metrics. `compute` adds an `average` entry: for each metric name, the mean over
/// the tasks that report it (NaN values left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultiTaskMetrics {
    tasks: IndexMap<String, Metrics>,
}

impl MultiTaskMetrics {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task.
    pub fn with_task(mut self, name: &str, metrics: Metrics) -> Self {
        self.tasks.insert(name.to_owned(), metrics);
        self
    }

    /// Adds a batch of one task; `false` when there is no such task.
    pub fn update(&mut self, task: &str, preds: &[f64], targets: TargetSlice<'_>) -> bool {
        self.tasks
            .get_mut(task)
            .map(|m| m.update(preds, targets))
            .is_some()
    }

    /// `{task: {metric: value}, "average": {metric: value}}`.
    pub fn compute(&self) -> IndexMap<String, IndexMap<String, f64>> {
        let mut out: IndexMap<String, IndexMap<String, f64>> = self
            .tasks
            .iter()
            .map(|(name, metrics)| (name.clone(), metrics.compute()))
            .collect();
        let mut sums: IndexMap<String, (f64, usize)> = IndexMap::new();
        for values in out.values() {
            for (metric, value) in values {
                let entry = sums.entry(metric.clone()).or_insert((0.0, 0));
                if !value.is_nan() {
                    entry.0 += value;
                    entry.1 += 1;
                }
            }
        }
        let average = sums
            .into_iter()
            .map(|(metric, (sum, n))| (metric, if n == 0 { f64::NAN } else { sum / n as f64 }))
            .collect();
        out.insert("average".to_owned(), average);
        out
    }

    /// Forgets every task's data.
    pub fn reset(&mut self) {
        self.tasks.values_mut().for_each(Metrics::reset);
    }

    /// Merges another multi-task set, task by task; `false` if any task could not be merged.
    pub fn merge(&mut self, other: &MultiTaskMetrics) -> bool {
        let mut all = true;
        for (name, metrics) in &other.tasks {
            match self.tasks.get_mut(name) {
                Some(mine) => all &= mine.merge(metrics),
                None => {
                    self.tasks.insert(name.clone(), metrics.clone());
                }
            }
        }
        all
    }
}
