//! Reading files item by item: positioned reads (`pread`) of the bytes an item needs.
//!
//! The operating system's page cache keeps what is read often, as it would for a memory map; unlike
//! a memory map, a file that shrinks or fails under a running job is an error that names it, not a
//! `SIGBUS` that ends the process.

use std::fs::File;
use std::path::Path;

use super::DataError;

/// Reads `buf.len()` bytes of `file` at `offset`.
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Opens `path` and reads its length.
pub(crate) fn open(path: &Path) -> Result<(File, u64), DataError> {
    let read = |source| DataError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read)?;
    let len = file.metadata().map_err(read)?.len();
    Ok((file, len))
}
