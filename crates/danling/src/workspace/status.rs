//! `status.json`: how a run stands or how it ended, for the tools that list runs (`danling runs`).
//!
//! A training process writes it when it enters the run directory (`running`) and when it leaves
//! (`finished`, `stopped` or `failed`, with the reason). A `running` file whose process is gone is a
//! run that was killed before it could say so.

use serde::{Deserialize, Serialize};

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// A process is training it.
    Running,
    /// The budget was reached, or early stopping ended it.
    Finished,
    /// A stop signal ended it; it can be resumed.
    Stopped,
    /// An error ended it.
    Failed,
}

impl RunState {
    /// The word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
        }
    }
}

/// The document of `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// How the run stands.
    pub status: RunState,
    /// Why it ended: `budget`, `early stopping`, the signal, or the error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the run's first attempt started (RFC 3339).
    pub started: String,
    /// When the latest attempt started.
    pub attempt_started: String,
    /// When the latest attempt ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Seconds trained by the attempts that ended.
    pub seconds: f64,
    /// The process of the latest attempt (rank 0's).
    pub pid: u32,
    /// The processes that train the run.
    pub world_size: usize,
}
