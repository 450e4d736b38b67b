//! Atomic file writes: a temporary file in the same directory, fsync, rename over the target, fsync of
//! the directory. A crash at any point leaves either the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::WorkspaceError;

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WorkspaceError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)
        .map_err(WorkspaceError::io("write", file.temp_path()))?;
    file.commit()
}

/// Makes `target` a second name for the file at `source`, atomically: a crash leaves the old `target`
/// or the new one. A hard link where the file system has them (no bytes copied), else a synced copy.
/// Safe for files written by this module, which are replaced by rename and never changed in place,
/// so a later write of `source` leaves `target` as it was.
pub fn link_atomic(source: &Path, target: &Path) -> Result<(), WorkspaceError> {
    let temp = temp_path(target)?;
    let linked = fs::hard_link(source, &temp).or_else(|_| {
        fs::copy(source, &temp)?;
        File::open(&temp)?.sync_all()
    });
    let placed = linked
        .map_err(WorkspaceError::io("link", &temp))
        .and_then(|()| fs::rename(&temp, target).map_err(WorkspaceError::io("rename into place", target)));
    if let Err(error) = placed {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// A hidden, unique temporary name beside `target`.
fn temp_path(target: &Path) -> Result<PathBuf, WorkspaceError> {
    let name = target
        .file_name()
        .ok_or_else(|| WorkspaceError::Io {
            action: "write",
            path: target.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        })?
        .to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(target.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id())))
}

/// A file that appears at its path only when [`commit`](AtomicFile::commit) succeeds.
///
/// Dropping it without committing removes the temporary file and leaves the target untouched. A crash
/// before the commit leaves a hidden `.{name}.tmp-*` file beside the target, which no reader looks at.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Creates the temporary file beside `target`.
    pub fn create(target: &Path) -> Result<Self, WorkspaceError> {
        let temp = temp_path(target)?;
        let file = File::create(&temp).map_err(WorkspaceError::io("create", &temp))?;
        Ok(Self {
            target: target.to_owned(),
            temp,
            file: Some(file),
        })
    }

    /// Where the bytes go until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Flushes and fsyncs the data, renames it over the target, and fsyncs the directory.
    pub fn commit(mut self) -> Result<(), WorkspaceError> {
        if self.file.take().is_some() {
            // Reopen rather than reuse the handle, so that bytes written through the path are synced too.
            File::open(&self.temp)
                .and_then(|file| file.sync_all())
                .map_err(WorkspaceError::io("sync", &self.temp))?;
        }
        fs::rename(&self.temp, &self.target)
            .map_err(WorkspaceError::io("rename into place", &self.target))?;
        sync_dir(self.target.parent().unwrap_or(Path::new(".")))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("atomic file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `path` atomically through `write`, which creates and fills the temporary file it is given
/// (for writers that insist on a path). The file is then fsynced and renamed into place.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), WorkspaceError> {
    let file = AtomicFile::create(path)?;
    write(file.temp_path()).map_err(WorkspaceError::io("write", file.temp_path()))?;
    file.commit()
}

/// fsyncs a directory so that a rename in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WorkspaceError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(WorkspaceError::io("sync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_keeps_its_contents_when_the_source_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (latest, best) = (dir.path().join("latest"), dir.path().join("best"));
        write_atomic(&latest, b"epoch 1").unwrap();
        link_atomic(&latest, &best).unwrap();
        write_atomic(&latest, b"epoch 2").unwrap();
        assert_eq!(fs::read(&best).unwrap(), b"epoch 1");
        link_atomic(&latest, &best).unwrap();
        assert_eq!(fs::read(&best).unwrap(), b"epoch 2");
        write_atomic(&latest, b"epoch 3").unwrap();
        assert_eq!(fs::read(&best).unwrap(), b"epoch 2");
        // No temporary names are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"old contents that are long").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left behind"
        );
    }

    #[test]
    fn dropping_before_commit_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latest.json");
        write_atomic(&path, b"old").unwrap();
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"half-written new contents").unwrap();
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writing_into_a_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.json");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
