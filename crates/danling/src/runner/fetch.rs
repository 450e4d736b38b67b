//! The loops' side of the loader: the workers of a `train` call, and a split's batches fetched
//! ahead on them (each item from the dataset and through the task's `transform`), collated onto the
//! device on the training thread.

use std::sync::Arc;

use burn::tensor::Device;

use super::{Platform, Runner, RunnerError, Task};
use crate::config::Sections;
use crate::data::{Batches, Fetch, ItemContext, ItemError, Workers};

impl<T: Task, S: Sections, P: Platform> Runner<T, S, P> {
    /// The loader's threads, `data.workers` of them (none for 0).
    pub(super) fn start_workers(&self) -> Result<Workers, RunnerError> {
        let workers = self.config.data.workers();
        Workers::start(workers).map_err(|source| RunnerError::Loader { workers, source })
    }

    /// The batches of split `split` in this epoch, in the order of `batches` (rows of the split),
    /// fetched ahead on `workers`: each item from the dataset and through the task's `transform`.
    pub(super) fn stream<'w>(
        &self,
        workers: &'w Workers,
        split: usize,
        batches: Vec<Vec<usize>>,
    ) -> Batches<'w, T::Item> {
        let dataset = Arc::clone(&self.splits[split].dataset);
        let task = Arc::clone(&self.task);
        let at = ItemContext {
            seed: self.config.seed,
            epoch: self.state.epoch,
            split,
            train: self.splits[split].train,
            index: 0,
        };
        let fetch: Fetch<T::Item> = Arc::new(move |rows: &[usize]| {
            rows.iter()
                .map(|&index| {
                    let item = dataset.get(index).map_err(|e| ItemError {
                        index,
                        message: e.to_string(),
                    })?;
                    Ok(task.transform(item, &ItemContext { index, ..at }))
                })
                .collect()
        });
        workers.stream(batches, self.config.data.prefetch(), fetch)
    }

    /// The next batch of `stream` on `device`, which must hold `rows` items.
    pub(super) fn next_batch(
        &self,
        split: usize,
        stream: &mut Batches<'_, T::Item>,
        rows: usize,
        device: &Device,
    ) -> Result<T::Batch, RunnerError> {
        let error = |index, message| RunnerError::Data {
            split: self.splits[split].name.clone(),
            index,
            message,
        };
        let items = match stream.next_batch() {
            Some(Ok(items)) if items.len() == rows => items,
            Some(Ok(items)) => {
                let message = format!("the dataset gave {} items for a batch of {rows}", items.len());
                return Err(error(0, message));
            }
            Some(Err(e)) => return Err(error(e.index, e.message)),
            None => return Err(error(0, "the loader ended before the pass".into())),
        };
        Ok(self.task.collate(items, device))
    }
}
