//! The thread that sends a run's points to MLflow while it trains: training never waits on it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::MlflowError;
use super::{RETRY, RunInfo, Sender};
use crate::workspace::RunState;

/// The least time between two sends while training (points wait and go together).
const EVERY: Duration = Duration::from_secs(2);
/// How long the end of a run waits for the last points and the status to be sent.
const FINISH_WAIT: Duration = Duration::from_secs(20);

enum Message {
    Wake,
    Finish(RunState),
}

/// Sends a run's points to MLflow from a thread of its own, as they are logged.
#[derive(Debug)]
pub struct Tracker {
    messages: mpsc::Sender<Message>,
    done: mpsc::Receiver<()>,
    /// What the thread met, for the training thread to log (the log is that thread's).
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Tracker {
    /// Starts the thread: it connects, logs the params, then sends points as [`wake`](Self::wake)
    /// says there are new ones.
    pub fn start(info: RunInfo) -> Self {
        let (messages, inbox) = mpsc::channel();
        let (finished, done) = mpsc::channel();
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let reported = Arc::clone(&warnings);
        let spawned = std::thread::Builder::new()
            .name("danling-mlflow".into())
            .spawn(move || {
                track(info, &inbox, &reported);
                let _ = finished.send(());
            });
        if let Err(error) = spawned {
            warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!("cannot start the MLflow thread: {error}"));
        }
        Self {
            messages,
            done,
            warnings,
        }
    }

    /// Says there are new points, and returns what the thread met since the last call.
    pub fn wake(&self) -> Vec<String> {
        let _ = self.messages.send(Message::Wake);
        std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Sends the last points and the final status, waiting at most [`FINISH_WAIT`] for them;
    /// returns what the thread met.
    pub fn finish(self, state: RunState) -> Vec<String> {
        let _ = self.messages.send(Message::Finish(state));
        if self.done.recv_timeout(FINISH_WAIT).is_err() {
            self.warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!(
                    "MLflow: not done after {} s; what was not sent waits in metrics.jsonl",
                    FINISH_WAIT.as_secs()
                ));
        }
        std::mem::take(
            &mut *self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The tracker's thread.
fn track(info: RunInfo, inbox: &mpsc::Receiver<Message>, warnings: &Mutex<Vec<String>>) {
    let dir = info.dir.clone();
    let mut warned = false;
    let mut warn = |error: &MlflowError| {
        if !warned {
            warned = true;
            warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!(
                    "{error}; training goes on, and the points wait in metrics.jsonl for the next try (every {RETRY} s), \
                     the next resume, or `danling mlflow sync {}`",
                    dir.display()
                ));
        }
    };
    let mut sender: Option<Sender> = None;
    let mut failed_at: Option<Instant> = None;
    let mut last_send = Instant::now() - EVERY;
    let mut finish = None;
    // The session went away without saying how the run ended: the last points, and no status.
    let mut closing = false;
    loop {
        let wait = EVERY
            .saturating_sub(last_send.elapsed())
            .max(Duration::from_millis(50));
        match inbox.recv_timeout(if finish.is_some() { Duration::ZERO } else { wait }) {
            Ok(Message::Finish(state)) => finish = Some(state),
            Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closing = true,
        }
        // Messages that came meanwhile.
        while let Ok(message) = inbox.try_recv() {
            if let Message::Finish(state) = message {
                finish = Some(state);
            }
        }
        let ending = finish.is_some() || closing;
        let resting = failed_at.is_some_and(|at| at.elapsed() < Duration::from_secs(RETRY));
        if !ending && (resting || last_send.elapsed() < EVERY) {
            continue;
        }
        last_send = Instant::now();
        let outcome = (|| -> Result<(), MlflowError> {
            if sender.is_none() {
                sender = Some(Sender::connect(info.clone(), true)?);
            }
            let Some(sender) = sender.as_mut() else {
                return Ok(());
            };
            sender.send_new()?;
            if let Some(state) = finish {
                sender.finish(state)?;
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => failed_at = None,
            Err(error) => {
                warn(&error);
                failed_at = Some(Instant::now());
            }
        }
        if ending {
            return;
        }
    }
}
