//! Reading tensors out of an opened file at the speed of the memory. A tensor is read a band at a
//! time, each band a piece at a time on every core, each piece checksummed while it is still in that
//! core's cache; while one band is put in place (copied, or transposed from PyTorch's layout), the
//! next is read. So each byte of the file crosses the memory about as often as in a plain read, and a
//! read from the disk waits neither on the checksum nor on the transposition.

use std::io;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::export::transpose_rows_into;
use super::header::Opened;
use super::integrity::crc32c_combine;

/// Bytes one core reads at a time: small enough to stay in its cache (a core's L2 holds 1–2 MB)
/// while they are checksummed, large enough that a system call per piece costs nothing. Measured
/// in the bench's case (c), pieces of 2 MB in bands of 8 MB loaded faster than 512 kB in 4 MB, from
/// the page cache and from the disk. A few bytes under test, so that the unit tests' small tensors
/// come in many pieces.
pub(crate) const PIECE: usize = if cfg!(test) { 12 } else { 2 << 20 };

/// Bytes of a tensor read at a time, into one of two buffers: while one band is put in place, the
/// next is read into the other. A few kilobytes under test, so that the unit tests' tensors come in
/// several bands.
const BAND: usize = if cfg!(test) { 4096 } else { 8 << 20 };

/// How a tensor's bytes lie in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout {
    /// As they are wanted.
    Flat,
    /// A row-major `[rows, cols]` matrix of `element`-byte values, wanted as its transpose.
    Transposed {
        rows: usize,
        cols: usize,
        element: usize,
    },
}

/// A plain integer type to hold a tensor's bytes in (any bytes are a value of it), so that they are
/// aligned for its elements: burn takes memory of bytes alone only after copying it into memory
/// aligned for any element, a second pass over the whole tensor.
pub(crate) trait Word: Copy + Send + Sync + sealed::Plain {}

impl Word for u8 {}
impl Word for u16 {}
impl Word for u32 {}
impl Word for u64 {}

mod sealed {
    /// Implemented only for integers, which have no padding and no invalid values.
    pub trait Plain {}
    impl Plain for u8 {}
    impl Plain for u16 {}
    impl Plain for u32 {}
    impl Plain for u64 {}
}

impl Opened {
    /// The `len` bytes at `at` in `layout` (in a vector of `E`: `len` must be a multiple of its
    /// size), and, when `sum` is set, their CRC-32C as they lie in the file.
    pub(crate) fn read_tensor<E: Word>(
        &self,
        at: u64,
        len: usize,
        layout: Layout,
        sum: bool,
    ) -> io::Result<(Vec<E>, Option<u32>)> {
        let size = size_of::<E>();
        if !len.is_multiple_of(size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{len} bytes are not a whole number of {size}-byte values"),
            ));
        }
        // Written once, band by band, and not zeroed first: zeroing memory that is not fresh from
        // the system costs as much as reading the file into it.
        let mut words: Vec<E> = Vec::with_capacity(len / size);
        let spare = &mut words.spare_capacity_mut()[..len / size];
        // SAFETY: the `len` bytes of `len / size` values of `E` in the vector's capacity, seen as
        // bytes that may hold no value yet, which `MaybeUninit<u8>` needs no alignment or value for.
        #[allow(unsafe_code)]
        let out: &mut [MaybeUninit<u8>] =
            unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), len) };
        let crc = match layout {
            Layout::Transposed { rows, cols, element }
                if len > 0 && rows.checked_mul(cols).and_then(|n| n.checked_mul(element)) == Some(len) =>
            {
                // Bands of whole rows, each row a column of the result: a number of them that
                // fills whole cache lines of each row of the result, so that no line is written
                // by two bands.
                let row = cols * element;
                let line = (64 / element).max(1);
                let band_rows = (BAND / row).clamp(1, rows);
                let band = match band_rows >= line {
                    true => band_rows / line * line * row,
                    false => band_rows * row,
                };
                self.stream(at, len, band, sum, &mut |band: &[u8], offset: usize| {
                    transpose_rows_into(band, band.len() / row, cols, element, out, rows, offset / row);
                })?
            }
            _ => self.stream(at, len, BAND, sum, &mut |band: &[u8], offset: usize| {
                for (to, from) in out[offset..offset + band.len()].iter_mut().zip(band) {
                    *to = MaybeUninit::new(*from);
                }
            })?,
        };
        // SAFETY: `stream` returned without error, so it handed every band of the `len` bytes to the
        // closure, each whole and once, and the closure wrote each into `out` in full: a band of
        // whole rows into those columns of every row of the transpose (`transpose_rows_into`
        // writes each value of its input once, into the place of its transpose), any other band
        // into its own bytes. So the bytes of the first `len / size` values hold values, and any
        // bytes are a value of `E` (a plain integer).
        #[allow(unsafe_code)]
        unsafe {
            words.set_len(len / size);
        }
        Ok((words, sum.then_some(crc)))
    }

    /// Reads the `len` bytes at `at` a band of `band` bytes at a time (the last may be shorter),
    /// checksummed as they are read when `sum` is set, and hands each band to `place` with its
    /// offset while the next is read. Gives the CRC-32C of the whole (0 when not summed).
    fn stream(
        &self,
        at: u64,
        len: usize,
        band: usize,
        sum: bool,
        place: &mut (dyn FnMut(&[u8], usize) + Send),
    ) -> io::Result<u32> {
        if len == 0 {
            return Ok(0);
        }
        let band = band.clamp(1, len);
        let mut current = vec![0u8; band];
        let mut next = if len > band { vec![0u8; band] } else { Vec::new() };
        let mut current_crc = self.fill(at, &mut current, sum)?;
        let mut crc = 0;
        let mut start = 0;
        while start < len {
            let end = (start + band).min(len);
            let following = &mut next[..(end + band).min(len) - end];
            let this = &current[..end - start];
            let (read, ()) = rayon::join(
                || self.fill(at + end as u64, following, sum),
                || place(this, start),
            );
            if sum {
                crc = crc32c_combine(crc, current_crc, end - start);
            }
            current_crc = read?;
            std::mem::swap(&mut current, &mut next);
            start = end;
        }
        Ok(crc)
    }

    /// Fills `buffer` from `at` in the file, a piece at a time on every core, and gives its CRC-32C
    /// when `sum` is set (0 otherwise).
    fn fill(&self, at: u64, buffer: &mut [u8], sum: bool) -> io::Result<u32> {
        let len = buffer.len();
        let crcs = buffer
            .par_chunks_mut(PIECE)
            .enumerate()
            .map(|(i, piece)| {
                self.read_at(at + (i * PIECE) as u64, piece)?;
                Ok(if sum { crc32c::crc32c(piece) } else { 0 })
            })
            .collect::<io::Result<Vec<u32>>>()?;
        Ok(if sum { joined(&crcs, len) } else { 0 })
    }

    /// The CRC-32C of the `len` bytes at `at`, read a piece at a time on every core (memory stays
    /// at a piece per core however many bytes there are).
    pub(crate) fn crc_at(&self, at: u64, len: usize) -> io::Result<u32> {
        let crcs = (0..len.div_ceil(PIECE))
            .into_par_iter()
            .map_init(Vec::new, |buffer, i| {
                let start = i * PIECE;
                buffer.resize(PIECE.min(len - start), 0);
                self.read_at(at + start as u64, buffer)?;
                Ok(crc32c::crc32c(buffer))
            })
            .collect::<io::Result<Vec<u32>>>()?;
        Ok(joined(&crcs, len))
    }
}

/// The CRC-32C of `len` bytes from those of their consecutive pieces of [`PIECE`] bytes.
fn joined(crcs: &[u32], len: usize) -> u32 {
    crcs.iter().enumerate().fold(0, |crc, (i, &piece)| {
        crc32c_combine(crc, piece, PIECE.min(len - i * PIECE))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::{Dtype, TensorView};

    use super::{BAND, Layout, PIECE};
    use crate::checkpoint::header::Opened;

    /// A file holding one `U8` tensor `t` of `bytes`, opened.
    fn opened(bytes: &[u8]) -> (tempfile::TempDir, Opened) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let view = TensorView::new(Dtype::U8, vec![bytes.len()], bytes).unwrap();
        safetensors::serialize_to_file([("t", view)], None::<HashMap<String, String>>, &path).unwrap();
        let opened = Opened::open(&path).unwrap();
        (dir, opened)
    }

    #[test]
    fn pieces_read_on_every_core_give_the_bytes_and_their_crc() {
        for len in [0, 1, PIECE - 1, PIECE, PIECE + 1, 7 * PIECE + 5, 3 * BAND + 1] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (_dir, opened) = opened(&bytes);
            let (at, _) = opened.span("t").unwrap();
            let (read, crc) = opened.read_tensor::<u8>(at, len, Layout::Flat, true).unwrap();
            assert_eq!(read, bytes);
            assert_eq!(crc, Some(crc32c::crc32c(&bytes)), "{len} bytes");
            assert_eq!(opened.crc_at(at, len).unwrap(), crc32c::crc32c(&bytes));
            let (_, crc) = opened.read_tensor::<u8>(at, len, Layout::Flat, false).unwrap();
            assert_eq!(crc, None);
        }
    }

    #[test]
    fn a_matrix_is_transposed_as_its_bands_arrive_and_summed_as_it_lies() {
        // The last: bands of 16 rows, written a tile at a time in whole lines of the result.
        let shapes = [
            (1, 1, 4),
            (7, 3, 4),
            (13, 5, 2),
            (3, 11, 8),
            (9, 1, 4),
            (300, 7, 4),
            (64, 40, 4),
        ];
        for (rows, cols, element) in shapes {
            let len = rows * cols * element;
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (_dir, opened) = opened(&bytes);
            let (at, _) = opened.span("t").unwrap();
            let layout = Layout::Transposed { rows, cols, element };
            let (read, crc) = opened.read_tensor::<u8>(at, len, layout, true).unwrap();
            assert_eq!(crc, Some(crc32c::crc32c(&bytes)));
            for i in 0..rows {
                for j in 0..cols {
                    let from = (i * cols + j) * element;
                    let to = (j * rows + i) * element;
                    assert_eq!(
                        read[to..to + element],
                        bytes[from..from + element],
                        "{rows}x{cols}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_read_past_the_end_is_an_error() {
        let (_dir, opened) = opened(&[1, 2, 3]);
        let (at, _) = opened.span("t").unwrap();
        assert!(
            opened
                .read_tensor::<u8>(at, 4 + PIECE, Layout::Flat, true)
                .is_err()
        );
        assert!(opened.crc_at(at, 4 + PIECE).is_err());
    }
}
