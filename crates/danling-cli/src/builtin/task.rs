//! The built-in task over rows of a [`Tabular`] data set.

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use danling::data::{Tabular, Targets as TabularTargets};
use danling::metrics::MetricKind;
use danling::runner::{StepOutput, Targets, Task};

use super::Mlp;

/// One row: features and target.
#[derive(Debug, Clone)]
pub struct Row {
    /// The features.
    pub features: Vec<f32>,
    /// The target.
    pub target: RowTarget,
}

/// The target of a row.
#[derive(Debug, Clone)]
pub enum RowTarget {
    /// A class index.
    Class(i64),
    /// Regression values.
    Values(Vec<f32>),
}

/// A [`Tabular`] data set as a burn dataset of rows.
#[derive(Debug, Clone)]
pub struct TabularSet(pub Arc<Tabular>);

impl Dataset<Row> for TabularSet {
    fn get(&self, index: usize) -> Result<Row, DatasetError> {
        let data = &self.0;
        if index >= data.len() {
            let message = format!("index {index} is out of range for {} rows", data.len());
            return Err(DatasetError::new(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                message,
            )));
        }
        let target = match &data.targets {
            TabularTargets::Classes { labels, .. } => RowTarget::Class(labels[index]),
            TabularTargets::Values { values, outputs } => {
                RowTarget::Values(values[index * outputs..(index + 1) * outputs].to_vec())
            }
        };
        Ok(Row {
            features: data.row(index).to_vec(),
            target,
        })
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Classification with softmax cross-entropy, or regression with MSE.
#[derive(Debug, Clone)]
pub struct TabularTask {
    metrics: MetricKind,
}

impl TabularTask {
    /// The task whose targets are `metrics`'s.
    pub fn new(metrics: MetricKind) -> Self {
        Self { metrics }
    }

    /// The model's outputs: a logit per class (two for binary), or the regression values.
    pub fn outputs(&self) -> usize {
        match self.metrics {
            MetricKind::Binary => 2,
            MetricKind::Multiclass(n) | MetricKind::Multilabel(n) | MetricKind::Regression(n) => n,
            MetricKind::None => 1,
        }
    }
}

/// A batch: features `[n, d]` and targets.
#[derive(Debug, Clone)]
pub struct TabularBatch {
    features: Tensor<2>,
    targets: Targets,
}

impl Task for TabularTask {
    type Model = Mlp;
    type Item = Row;
    type Batch = TabularBatch;

    fn collate(&self, items: Vec<Row>, device: &Device) -> TabularBatch {
        let n = items.len();
        let d = items.first().map_or(0, |row| row.features.len());
        // Row by row into one allocation: a slice copy each, not an element-wise push.
        let mut features = Vec::with_capacity(n * d);
        for row in &items {
            features.extend_from_slice(&row.features);
        }
        let features = Tensor::<2>::from_data(TensorData::new(features, [n, d]), device);
        let targets = match items.first().map(|row| &row.target) {
            Some(RowTarget::Values(first)) => {
                let k = first.len();
                let values: Vec<f32> = items
                    .iter()
                    .flat_map(|row| match &row.target {
                        RowTarget::Values(v) => v.clone(),
                        RowTarget::Class(c) => vec![*c as f32],
                    })
                    .collect();
                Targets::Values(Tensor::<2>::from_data(TensorData::new(values, [n, k]), device))
            }
            _ => {
                let labels: Vec<i64> = items
                    .iter()
                    .map(|row| match &row.target {
                        RowTarget::Class(c) => *c,
                        RowTarget::Values(v) => v.first().map_or(0, |x| *x as i64),
                    })
                    .collect();
                Targets::Classes(Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device))
            }
        };
        TabularBatch { features, targets }
    }

    fn forward(&self, model: &Mlp, batch: &TabularBatch) -> StepOutput {
        let outputs = model.forward(batch.features.clone());
        match &batch.targets {
            Targets::Classes(labels) => StepOutput::classification(outputs, labels.clone()),
            Targets::Values(values) => StepOutput::regression(outputs, values.clone()),
        }
    }

    fn metrics(&self) -> MetricKind {
        self.metrics
    }
}
