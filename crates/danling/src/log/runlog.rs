//! Console and `run.log` logging through `tracing`.
//!
//! The subscriber is installed as the calling thread's default for the life of a [`LogGuard`], so that
//! a program (or a test binary) can run several runs one after another, each with its own `run.log`.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;

use crate::env;
use crate::fs::IoError;

/// Where console log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Standard output (the default for training).
    Stdout,
    /// Standard error (for commands whose stdout is a document to pipe).
    Stderr,
    /// Nowhere.
    Off,
    /// Standard error, warnings and errors only, each line prefixed `[rank r]`: the console of the
    /// ranks other than 0 of a multi-process run.
    Rank(usize),
}

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// `run.log` could not be opened or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Keeps the logging set up by [`init_logging`] in force on this thread until dropped.
#[derive(Debug)]
pub struct LogGuard {
    _default: DefaultGuard,
}

/// The header line that starts each attempt in `run.log`; an attempt that continues a checkpoint
/// names the file and its step.
pub fn log_header(id: &str, continued: Option<(&Path, u64)>) -> String {
    let from = continued
        .map(|(path, step)| format!(" continued from {} at step {step}", path.display()))
        .unwrap_or_default();
    format!(
        "===== {} danling {} id {id}{from} =====",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        crate::VERSION
    )
}

/// Logs to `console` and, when `file` is given, appends to it after writing `header` on a line of its
/// own. Only the main process should pass a file. The level comes from `DANLING_LOG` (default `info`).
pub fn init_logging(console: Console, file: Option<(&Path, &str)>) -> Result<LogGuard, LogError> {
    let level = env::log_level();
    let console_writer = match console {
        Console::Stdout => Some((
            BoxMakeWriter::new(std::io::stdout),
            colours(std::io::stdout().is_terminal()),
        )),
        Console::Stderr => Some((
            BoxMakeWriter::new(std::io::stderr),
            colours(std::io::stderr().is_terminal()),
        )),
        Console::Rank(rank) => Some((
            BoxMakeWriter::new(
                Prefixed::maker(format!("[rank {rank}] ")).with_max_level(tracing::Level::WARN),
            ),
            false,
        )),
        Console::Off => None,
    };
    let console_layer = console_writer.map(|(writer, ansi)| {
        fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(writer)
    });
    let file_layer = match file {
        Some((path, header)) => {
            let file = open_log(path, header)?;
            Some(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(Mutex::new(file)),
            )
        }
        None => None,
    };
    let subscriber = tracing_subscriber::registry()
        .with(console_layer)
        .with(file_layer)
        .with(level);
    Ok(LogGuard {
        _default: tracing::subscriber::set_default(subscriber),
    })
}

/// Colours on a terminal, except under an MPI launcher: mpiexec gives its ranks a terminal even
/// when its own output goes to a file.
fn colours(terminal: bool) -> bool {
    terminal && env::launcher().is_none()
}

/// Standard error with a prefix before each log line. The formatter writes each event in one call,
/// so the prefix goes before it.
struct Prefixed {
    prefix: Arc<str>,
    line: Vec<u8>,
}

impl Prefixed {
    fn maker(prefix: String) -> impl for<'a> MakeWriter<'a, Writer = Prefixed> + Send + Sync + 'static {
        let prefix: Arc<str> = prefix.into();
        move || Prefixed {
            prefix: prefix.clone(),
            line: Vec::new(),
        }
    }
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Prefixed {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let mut text = Vec::with_capacity(self.prefix.len() + self.line.len());
        text.extend_from_slice(self.prefix.as_bytes());
        text.extend_from_slice(&self.line);
        let _ = std::io::stderr().lock().write_all(&text);
    }
}

fn open_log(path: &Path, header: &str) -> Result<File, LogError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(IoError::at("open log file", path))?;
    writeln!(file, "{header}").map_err(IoError::at("write log file", path))?;
    Ok(file)
}
