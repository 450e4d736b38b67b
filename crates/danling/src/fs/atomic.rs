//! Atomic file writes: a temporary file in the same directory, fsync, rename over the target, fsync of
//! the directory. A crash at any point leaves either the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::IoError;
use super::direct::{DIRECT_MIN, Unbuffered};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)
        .map_err(IoError::at("write", file.target()))?;
    file.commit()
}

/// Makes `target` a second name for the file at `source`, atomically: a crash leaves the old `target`
/// or the new one. A hard link where the file system has them (no bytes copied), else a synced copy.
/// Safe for files written by this module, which are replaced by rename and never changed in place,
/// so a later write of `source` leaves `target` as it was.
pub fn link_atomic(source: &Path, target: &Path) -> Result<(), IoError> {
    let temp = temp_path(target)?;
    let linked = fs::hard_link(source, &temp).or_else(|_| {
        fs::copy(source, &temp)?;
        File::open(&temp)?.sync_all()
    });
    let placed = linked
        .map_err(IoError::at("link", target))
        .and_then(|()| fs::rename(&temp, target).map_err(IoError::at("rename into place", target)));
    if let Err(error) = placed {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// A hidden, unique temporary name beside `target`.
fn temp_path(target: &Path) -> Result<PathBuf, IoError> {
    let name = target
        .file_name()
        .ok_or_else(|| IoError {
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
/// Dropping it without committing, or a commit that fails, removes the temporary file and leaves the
/// target untouched. A crash before the commit leaves a hidden `.{name}.tmp-*` file beside the target,
/// which no reader looks at. Errors name the target, the file the caller asked for.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<Sink>,
}

/// Where an [`AtomicFile`]'s bytes go.
#[derive(Debug)]
enum Sink {
    Buffered(File),
    Unbuffered(Unbuffered),
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Creates the temporary file beside `target`.
    pub fn create(target: &Path) -> Result<Self, IoError> {
        let temp = temp_path(target)?;
        let file = File::create(&temp).map_err(IoError::at("create", target))?;
        Ok(Self {
            target: target.to_owned(),
            temp,
            file: Some(Sink::Buffered(file)),
        })
    }

    /// Creates the temporary file beside `target` for about `size_hint` bytes, written past the page
    /// cache when that is large and the system allows it (`O_DIRECT` on Linux): for checkpoints,
    /// which are written once and read back rarely, so caching them only costs CPU.
    pub fn create_large(target: &Path, size_hint: usize) -> Result<Self, IoError> {
        let mut file = Self::create(target)?;
        if size_hint >= DIRECT_MIN
            && let Some(Sink::Buffered(handle)) = file.file.take()
        {
            file.file = Some(Sink::Unbuffered(Unbuffered::new(handle, &file.temp, size_hint)));
        }
        Ok(file)
    }

    /// Where the bytes go until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The file that appears on commit: the one to name in errors.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes and fsyncs the data, renames it over the target, and fsyncs the directory.
    pub fn commit(mut self) -> Result<(), IoError> {
        self.sync()?;
        let dir = self.rename()?;
        sync_dir(&dir)
    }

    /// Writes what is still buffered and fsyncs the data.
    fn sync(&mut self) -> Result<(), IoError> {
        if let Some(Sink::Unbuffered(file)) = &mut self.file {
            file.finish().map_err(IoError::at("write", &self.target))?;
        }
        // Reopen rather than reuse the handle, so that bytes written through the path are synced too.
        File::open(&self.temp)
            .and_then(|file| file.sync_all())
            .map_err(IoError::at("sync", &self.target))
    }

    /// Renames the synced data over the target; returns the directory, which the caller fsyncs. On
    /// failure the temporary file goes when `self` is dropped.
    fn rename(mut self) -> Result<PathBuf, IoError> {
        fs::rename(&self.temp, &self.target).map_err(IoError::at("rename into place", &self.target))?;
        // In place: nothing is left to remove.
        self.file = None;
        Ok(self.target.parent().unwrap_or(Path::new(".")).to_owned())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(Sink::Buffered(file)) => file.write(buf),
            Some(Sink::Unbuffered(file)) => file.write(buf),
            None => Err(io::Error::other("atomic file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(Sink::Buffered(file)) => file.flush(),
            Some(Sink::Unbuffered(file)) => file.flush(),
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

/// Files rendered in memory, to be written later (perhaps on another thread), each atomically.
#[derive(Debug, Default)]
pub struct PendingFiles {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl PendingFiles {
    /// Adds a file.
    pub fn push(&mut self, path: PathBuf, bytes: Vec<u8>) {
        self.files.push((path, bytes));
    }

    /// Writes and fsyncs every file, renames each into place, then fsyncs each directory once: each
    /// file is replaced atomically, and all of them are durable when this returns.
    pub fn write(self) -> Result<(), IoError> {
        self.stage()?.commit()
    }

    /// The first half of [`write`](Self::write): writes and fsyncs every file beside its target, and
    /// replaces nothing yet. A file that cannot be written stops the batch with every target as it was
    /// and no temporary file left.
    pub fn stage(self) -> Result<StagedFiles, IoError> {
        let mut staged = Vec::with_capacity(self.files.len());
        for (path, bytes) in &self.files {
            let mut file = AtomicFile::create(path)?;
            file.write_all(bytes)
                .map_err(IoError::at("write", file.target()))?;
            file.sync()?;
            staged.push(file);
        }
        Ok(StagedFiles { files: staged })
    }
}

/// Files written and synced beside their targets by [`PendingFiles::stage`], not yet in place.
/// Dropping them removes them and leaves every target as it was.
#[derive(Debug)]
pub struct StagedFiles {
    files: Vec<AtomicFile>,
}

impl StagedFiles {
    /// Renames each file into place, then fsyncs each directory once.
    pub fn commit(self) -> Result<(), IoError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for file in self.files {
            let dir = file.rename()?;
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs.iter().try_for_each(|dir| sync_dir(dir))
    }
}

/// fsyncs a directory so that a rename in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IoError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(IoError::at("sync directory", dir))?;
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
    fn pending_files_are_each_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("checkpoints");
        fs::create_dir(&sub).unwrap();
        let (a, b) = (dir.path().join("a.json"), sub.join("b.json"));
        write_atomic(&a, b"old a").unwrap();
        let mut files = PendingFiles::default();
        files.push(a.clone(), b"new a".to_vec());
        files.push(b.clone(), b"new b".to_vec());
        files.write().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");

        // A file that cannot be created stops the batch before anything is renamed into place.
        let mut files = PendingFiles::default();
        files.push(a.clone(), b"newer a".to_vec());
        files.push(dir.path().join("missing").join("c.json"), b"c".to_vec());
        let err = files.write().unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "a.json and checkpoints/ only"
        );
        assert_eq!(fs::read_dir(&sub).unwrap().count(), 1);
    }

    /// Large files: every length around the alignment and the chunk (small under test) comes back
    /// byte for byte, written past the cache where the file system allows it, and the ordinary way
    /// where the first direct write is refused (a misaligned buffer stands in for such a file system).
    #[test]
    fn large_files_come_back_exactly_with_or_without_direct_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latest.safetensors");
        for misalign in [false, true] {
            super::super::direct::MISALIGN.with(|m| m.set(misalign));
            for len in [0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 1, 10 * 4096 + 17] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut file = AtomicFile::create_large(&path, DIRECT_MIN).unwrap();
                let Some(Sink::Unbuffered(sink)) = &file.file else {
                    panic!("a large file is written through the unbuffered sink");
                };
                let direct = sink.is_direct();
                for piece in bytes.chunks(1000) {
                    file.write_all(piece).unwrap();
                }
                if let Some(Sink::Unbuffered(sink)) = &file.file
                    && len >= 3 * 4096
                {
                    // The first chunk has been written: refused only when misaligned.
                    assert_eq!(sink.is_direct(), direct && !misalign, "len {len}");
                }
                file.commit().unwrap();
                assert_eq!(fs::read(&path).unwrap(), bytes, "len {len}, misalign {misalign}");
            }
        }
        super::super::direct::MISALIGN.with(|m| m.set(false));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // Small files stay ordinary.
        let file = AtomicFile::create_large(&path, 100).unwrap();
        assert!(matches!(file.file, Some(Sink::Buffered(_))));
    }

    #[test]
    fn a_failed_commit_keeps_the_target_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // A directory that is not empty cannot be renamed over.
        let path = dir.path().join("latest.safetensors");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        for large in [false, true] {
            let mut file = if large {
                AtomicFile::create_large(&path, DIRECT_MIN).unwrap()
            } else {
                AtomicFile::create(&path).unwrap()
            };
            file.write_all(b"new contents").unwrap();
            let err = file.commit().unwrap_err().to_string();
            assert!(
                err.contains("latest.safetensors:") && !err.contains(".tmp-"),
                "{err}"
            );
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "large: {large}");
            assert_eq!(fs::read(path.join("inside")).unwrap(), b"x");
        }
    }

    #[test]
    fn staged_files_replace_nothing_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        write_atomic(&a, b"old a").unwrap();
        let pending = || {
            let mut files = PendingFiles::default();
            files.push(a.clone(), b"new a".to_vec());
            files.push(b.clone(), b"new b".to_vec());
            files
        };
        let staged = pending().stage().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        assert!(!b.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            3,
            "a.json and two staged files"
        );
        drop(staged);
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "dropping removes them"
        );
        pending().stage().unwrap().commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn writing_into_a_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.json");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
