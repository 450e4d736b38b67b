//! The run-directory lock: one training process per run directory.
//!
//! The lock is an OS file lock (`flock`) on `{dir}/run.lock`, which the kernel releases when the holder
//! dies, plus the holder's PID written inside so that the error can name it. A lock file left by a
//! process that is gone (a crash, `kill -9`) is taken over with a warning.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::IoError;

/// The lock file's name inside the run directory.
pub const LOCK_FILE: &str = "run.lock";

/// Why a run directory's lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock file could not be opened, locked or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Another live process holds the lock.
    #[error("run dir {} is in use by PID {pid} (lock file {}); stop that process first", dir.display(), lock.display())]
    Held {
        /// The run directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The process that holds it.
        pid: u32,
    },
}

/// A held run-directory lock; released (and its file removed) on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: File,
}

impl RunLock {
    /// Takes the lock of `dir`, which must exist.
    ///
    /// Fails with [`LockError::Held`] naming the PID when a live process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(IoError::at("open lock file", &path))?;
            let previous = read_pid(&mut file);
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        dir: dir.to_owned(),
                        lock: path,
                        pid: previous.unwrap_or(0),
                    });
                }
                Err(fs::TryLockError::Error(source)) => {
                    return Err(IoError {
                        action: "lock",
                        path,
                        source,
                    }
                    .into());
                }
            }
            // The holder may have removed the file between our open and our lock: then we locked a
            // file nobody else will see, so start over.
            if !same_file(&file, &path) {
                continue;
            }
            let previous = read_pid(&mut file);
            if let Some(pid) = previous.filter(|&pid| pid != std::process::id()) {
                if process_alive(pid) {
                    return Err(LockError::Held {
                        dir: dir.to_owned(),
                        lock: path,
                        pid,
                    });
                }
                tracing::warn!(
                    "taking over the stale lock {} of PID {pid}, which is no longer running",
                    path.display()
                );
            }
            write_pid(&mut file).map_err(IoError::at("write lock file", &path))?;
            return Ok(Self { path, file });
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove while still holding the lock, so that nobody can lock the old file in between.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The PID in a lock file, for messages: `None` where it cannot be read (the lock itself decides).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// The PID of the live process that holds the lock of run directory `dir`, if one does: read from
/// its lock file, which nothing here creates or changes.
pub fn lock_holder(dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    let pid = text.trim().parse().ok()?;
    process_alive(pid).then_some(pid)
}

/// Whether a process with this PID is running. A zombie (exited, not yet reaped by its parent, as
/// an orphan of a killed job can stay where init does not reap) is not.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        let Ok(stat) = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) else {
            return false;
        };
        // `pid (comm) state …`: the state follows the last `)`, as comm may hold one.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    } else {
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        match &err {
            LockError::Held { pid, .. } => assert_eq!(*pid, std::process::id()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string().contains(&format!("PID {}", std::process::id())),
            "{err}"
        );
        drop(held);
        assert!(
            !dir.path().join(LOCK_FILE).exists(),
            "the lock file is removed on release"
        );
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_stale_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its PID belongs to no process.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(dir.path().join(LOCK_FILE), format!("{dead}\n")).unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let written = fs::read_to_string(lock.path()).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_lock_file_naming_a_zombie_is_taken_over() {
        // A child that has exited but is not reaped yet, as the orphaned rank of a killed job can stay.
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stat = format!("/proc/{}/stat", child.id());
        while !fs::read_to_string(&stat).unwrap().contains(") Z") {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        fs::write(dir.path().join(LOCK_FILE), format!("{}\n", child.id())).unwrap();
        let taken = RunLock::acquire(dir.path());
        child.wait().unwrap();
        taken.unwrap();
    }

    #[test]
    fn a_lock_file_naming_a_live_process_is_respected() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        fs::write(dir.path().join(LOCK_FILE), format!("{}\n", child.id())).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            matches!(err, LockError::Held { pid, .. } if pid == child.id()),
            "{err}"
        );
    }
}
