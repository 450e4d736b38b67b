//! The parallel loader: a pool of threads that fetch items off the training thread, and the ordered,
//! bounded stream of one pass's batches that the loops read.
//!
//! The loops decide the order (which rows make each batch, and which batch comes next); the loader
//! only decides who computes them. A batch's items depend on nothing but its rows and the fetch
//! function, which draws any randomness from (seed, epoch, sample index) ([`ItemContext`]), so a
//! pass gives the same batches, bit for bit, with any number of workers, and a pass started from the
//! middle (a resume) gives the same batches as the tail of the whole one.
//!
//! Tensors are never made on a worker: workers return host items, and the training thread collates
//! them onto the device. A device allocator that keeps a memory pool per thread (burn #4792) then
//! sees one thread, as without workers.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Why an item could not be fetched: its index in the split, and what went wrong (naming the file
/// where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// The item's index in its split.
    pub index: usize,
    /// What went wrong.
    pub message: String,
}

/// Where an item is fetched: what its transform may depend on. The randomness of augmentation
/// comes from [`rng`](Self::rng), which is drawn from the run's seed, the epoch, the split and the
/// item's index alone, never from the thread or the time that fetched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemContext {
    /// The run's `seed`.
    pub seed: u64,
    /// The epoch, counted from 0.
    pub epoch: u64,
    /// The split's number, in the order splits were added.
    pub split: usize,
    /// Whether the split is trained (augment) or evaluated (usually not).
    pub train: bool,
    /// The item's index in its split.
    pub index: usize,
}

/// Stream tag of the item RNG, so that it never coincides with another use of the seed.
const ITEM_STREAM: u64 = 0x17E4_5EED;

impl ItemContext {
    /// The item's own random stream: the same for the same (seed, epoch, split, index) in every run,
    /// with any number of workers and after any resume.
    pub fn rng(&self) -> Rng {
        Rng::from_parts(&[
            self.seed,
            ITEM_STREAM,
            self.epoch,
            self.split as u64,
            self.index as u64,
        ])
    }
}

/// A unit of work for a worker.
type Job = Box<dyn FnOnce() + Send>;

/// The loader's threads, named `danling-data-N`. They live as long as this value: dropping it lets
/// each finish the item in hand and joins them all, so no thread outlives the run that started
/// them, however it ended.
#[derive(Debug)]
pub struct Workers {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` threads (none for 0: every batch is then fetched on the calling thread).
    pub fn start(n: usize) -> std::io::Result<Self> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Self {
            jobs: Some(jobs),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let queue = Arc::clone(&queue);
            let thread = std::thread::Builder::new()
                .name(format!("danling-data-{i}"))
                .spawn(move || work(&queue))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// The number of threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are no threads (batches are fetched on the calling thread).
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The ordered stream of `batches` (rows of a split, in the order the loop reads them), each
    /// fetched by `fetch`, at most `prefetch` of them in flight ahead of the reader.
    pub fn stream<I: Send + 'static>(
        &self,
        batches: Vec<Vec<usize>>,
        prefetch: usize,
        fetch: Fetch<I>,
    ) -> Batches<'_, I> {
        let (tx, rx) = channel();
        let jobs = self.jobs.as_ref().filter(|_| !self.threads.is_empty());
        Batches {
            fetch,
            todo: batches.into(),
            jobs,
            prefetch: prefetch.max(1),
            submitted: 0,
            next: 0,
            ready: BTreeMap::new(),
            tx,
            rx,
            cancelled: Arc::new(AtomicBool::new(false)),
            waited: Duration::ZERO,
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue ends each thread once it has finished the job in hand.
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            // A worker catches its jobs' panics, so joining cannot fail.
            let _ = thread.join();
        }
    }
}

/// A worker's loop: jobs until the queue closes.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
    }
}

/// Fetches the items of one batch's rows, in order.
pub type Fetch<I> = Arc<FetchFn<I>>;

/// The function behind a [`Fetch`].
pub type FetchFn<I> = dyn Fn(&[usize]) -> Result<Vec<I>, ItemError> + Send + Sync;

/// One pass's batches of items, in order, fetched ahead by the workers. Dropping it cancels the
/// batches not yet started. It borrows the workers, so they cannot be stopped under it.
pub struct Batches<'w, I> {
    fetch: Fetch<I>,
    todo: VecDeque<Vec<usize>>,
    /// The workers' queue; `None` fetches on the reading thread.
    jobs: Option<&'w Sender<Job>>,
    prefetch: usize,
    submitted: usize,
    next: usize,
    ready: BTreeMap<usize, Result<Vec<I>, ItemError>>,
    tx: Sender<(usize, Result<Vec<I>, ItemError>)>,
    rx: Receiver<(usize, Result<Vec<I>, ItemError>)>,
    cancelled: Arc<AtomicBool>,
    waited: Duration,
}

impl<I> std::fmt::Debug for Batches<'_, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("workers", &self.jobs.is_some())
            .field("prefetch", &self.prefetch)
            .field("next", &self.next)
            .field("left", &(self.todo.len() + self.submitted - self.next))
            .finish_non_exhaustive()
    }
}

impl<I: Send + 'static> Batches<'_, I> {
    /// The next batch's items; `None` after the last. The time spent here is [`waited`](Self::waited).
    pub fn next_batch(&mut self) -> Option<Result<Vec<I>, ItemError>> {
        let start = Instant::now();
        let batch = self.take();
        self.waited += start.elapsed();
        batch
    }

    /// The time the reader spent in [`next_batch`](Self::next_batch): blocked on the workers, or
    /// fetching itself without them.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    fn take(&mut self) -> Option<Result<Vec<I>, ItemError>> {
        let Some(jobs) = self.jobs else {
            let rows = self.todo.pop_front()?;
            self.next += 1;
            return Some(fetch_guarded(&*self.fetch, &rows));
        };
        while self.submitted < self.next + self.prefetch {
            let Some(rows) = self.todo.pop_front() else { break };
            let (seq, tx, fetch) = (self.submitted, self.tx.clone(), Arc::clone(&self.fetch));
            let cancelled = Arc::clone(&self.cancelled);
            let job: Job = Box::new(move || {
                if !cancelled.load(Ordering::Relaxed) {
                    // The reader may be gone (the pass ended early): nobody to tell.
                    let _ = tx.send((seq, fetch_guarded(&*fetch, &rows)));
                }
            });
            // The workers hold the queue's receiver as long as `Workers` lives, which this borrows.
            if jobs.send(job).is_err() {
                return Some(Err(stopped()));
            }
            self.submitted += 1;
        }
        if self.next == self.submitted {
            return None;
        }
        loop {
            if let Some(batch) = self.ready.remove(&self.next) {
                self.next += 1;
                return Some(batch);
            }
            // Every submitted job sends exactly once (its panics are caught), and this stream holds
            // a sender, so the receive cannot fail; if it did, the batch is an error, not a hang.
            match self.rx.recv() {
                Ok((seq, batch)) => {
                    self.ready.insert(seq, batch);
                }
                Err(_) => return Some(Err(stopped())),
            }
        }
    }
}

/// What a batch is when the workers are gone, which the borrow of [`Workers`] rules out.
fn stopped() -> ItemError {
    ItemError {
        index: 0,
        message: "the data workers stopped".into(),
    }
}

impl<I> Drop for Batches<'_, I> {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// `fetch(rows)`, with a panic in it (the user's dataset or transform) turned into the batch's error.
fn fetch_guarded<I>(fetch: &FetchFn<I>, rows: &[usize]) -> Result<Vec<I>, ItemError> {
    catch_unwind(AssertUnwindSafe(|| fetch(rows))).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(ItemError {
            index: rows.first().copied().unwrap_or(0),
            message: format!("fetching the batch panicked: {message}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squares() -> Fetch<u64> {
        Arc::new(|rows: &[usize]| {
            // Uneven work, so that workers finish out of order.
            std::thread::sleep(Duration::from_micros(50 * (rows[0] % 7) as u64));
            Ok(rows.iter().map(|&r| (r * r) as u64).collect())
        })
    }

    fn batches(n: usize) -> Vec<Vec<usize>> {
        (0..n).map(|i| vec![3 * i, 3 * i + 1, 3 * i + 2]).collect()
    }

    #[test]
    fn every_worker_count_and_prefetch_reads_the_batches_in_order() {
        let expected: Vec<Vec<u64>> = batches(40)
            .iter()
            .map(|rows| rows.iter().map(|&r| (r * r) as u64).collect())
            .collect();
        for workers in [0, 1, 2, 4] {
            let pool = Workers::start(workers).unwrap();
            for prefetch in [1, 2, 5, 100] {
                let mut stream = pool.stream(batches(40), prefetch, squares());
                let mut got = Vec::new();
                while let Some(batch) = stream.next_batch() {
                    got.push(batch.unwrap());
                }
                assert_eq!(got, expected, "{workers} workers, prefetch {prefetch}");
                assert!(stream.next_batch().is_none());
            }
        }
    }

    #[test]
    fn errors_and_panics_arrive_in_their_batch_and_end_nothing_else() {
        let fetch: Fetch<usize> = Arc::new(|rows: &[usize]| match rows[0] {
            3 => Err(ItemError {
                index: 3,
                message: "bad file".into(),
            }),
            6 => panic!("boom at 6"),
            _ => Ok(rows.to_vec()),
        });
        for workers in [0, 2] {
            let pool = Workers::start(workers).unwrap();
            let rows: Vec<Vec<usize>> = (0..10).map(|i| vec![i]).collect();
            let mut stream = pool.stream(rows, 3, Arc::clone(&fetch));
            let got: Vec<_> = std::iter::from_fn(|| stream.next_batch()).collect();
            assert_eq!(got.len(), 10);
            assert_eq!(got[3].as_ref().unwrap_err().message, "bad file");
            let panicked = got[6].as_ref().unwrap_err();
            assert!(panicked.message.contains("boom at 6"), "{panicked:?}");
            assert_eq!(got[9], Ok(vec![9]));
        }
    }

    #[test]
    fn a_pass_left_early_and_the_pool_end_without_a_thread_left() {
        let pool = Workers::start(3).unwrap();
        let mut stream = pool.stream(batches(1000), 8, squares());
        assert!(stream.next_batch().is_some());
        drop(stream);
        // The next pass is not disturbed by the last one's late results.
        let mut stream = pool.stream(batches(5), 2, squares());
        assert_eq!(stream.next_batch(), Some(Ok(vec![0, 1, 4])));
        drop(stream);
        drop(pool); // joins: a hang here would fail the test by timeout
    }

    #[test]
    fn the_item_rng_depends_on_its_context_alone() {
        let at = ItemContext {
            seed: 1,
            epoch: 2,
            split: 0,
            train: true,
            index: 5,
        };
        assert_eq!(at.rng(), at.rng());
        assert_ne!(at.rng(), ItemContext { index: 6, ..at }.rng());
        assert_ne!(at.rng(), ItemContext { epoch: 3, ..at }.rng());
        assert_eq!(
            at.rng(),
            ItemContext { train: false, ..at }.rng(),
            "the split, not its role"
        );
    }
}
