//! Writing model parameters in PyTorch's layout directly with the `safetensors` crate.
//!
//! This does what burn-store's `BurnToPyTorchAdapter` does (a linear layer's weight becomes
//! `[out, in]`; normalisation layers' `gamma`/`beta` become `weight`/`bias`), but transposes on the
//! backend and copies each tensor once, which makes saving several times faster on large models.

use std::mem::MaybeUninit;

use burn::module::{Module, Param};
use burn::tensor::{Bytes, DType, Tensor};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use safetensors::tensor::Dtype;

use super::MODEL_PREFIX;
use super::path::{ModulePath, PathVisitor, visit_with_path};

/// One exported tensor: its checkpoint name, dtype, shape and bytes.
pub(crate) struct Exported {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: Bytes,
}

/// A parameter to be written, not read yet: its checkpoint name, dtype, shape as written, and where its
/// values come from.
pub(crate) struct Planned {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    element: usize,
    source: Source,
    /// The same values where they lie in flex's host memory in row-major order: read in place, so
    /// that saving copies each value once, into the file's layout.
    host: Option<FlexTensor>,
}

enum Source {
    /// Written in the tensor's own order.
    Flat(Tensor<1>),
    /// A linear layer's `[in, out]` weight, written as PyTorch's `[out, in]`.
    Transposed(Tensor<2>),
}

impl Planned {
    /// Bytes the tensor takes in the file.
    pub(crate) fn len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.element
    }

    /// The tensor's bytes in its own (row-major) order, borrowed from flex's host memory.
    fn host_bytes(&self) -> Option<&[u8]> {
        let host = self.host.as_ref()?;
        let start = host.layout().start_offset() * self.element;
        host.bytes().get(start..start + self.len())
    }

    /// The whole tensor, in the file's layout.
    fn read(&self) -> Bytes {
        Bytes::from_bytes_vec(self.pieces(usize::MAX, Vec::new).next().unwrap_or_default())
    }

    /// The tensor in the file's layout, in consecutive pieces of about `chunk` bytes, each read from
    /// the backend only when asked for: a large model is never copied whole. Each piece is written
    /// into a buffer from `buffer` (a recycled one, so that memory is reused rather than faulted in).
    pub(crate) fn pieces<'a>(
        &'a self,
        chunk: usize,
        mut buffer: impl FnMut() -> Vec<u8> + 'a,
    ) -> impl Iterator<Item = Vec<u8>> + 'a {
        let (n, per_piece) = match &self.source {
            Source::Flat(tensor) => {
                let n = tensor.dims()[0];
                (n, (chunk / self.element).max(1))
            }
            // A band of input columns becomes consecutive output rows.
            Source::Transposed(tensor) => {
                let [rows, cols] = tensor.dims();
                (cols, (chunk / (rows * self.element).max(1)).max(1))
            }
        };
        (0..n).step_by(per_piece).map(move |start| {
            let end = (start + per_piece).min(n);
            let mut out = buffer();
            if let Some(bytes) = self.host_bytes() {
                match &self.source {
                    Source::Flat(_) => {
                        out.clear();
                        out.extend_from_slice(&bytes[start * self.element..end * self.element]);
                    }
                    Source::Transposed(tensor) => {
                        let [rows, cols] = tensor.dims();
                        transpose_into(bytes, rows, cols, start..end, self.element, &mut out);
                    }
                }
                return out;
            }
            match &self.source {
                Source::Flat(tensor) => {
                    let bytes = tensor.clone().slice(start..end).into_data().into_bytes();
                    out.clear();
                    out.extend_from_slice(&bytes);
                }
                Source::Transposed(tensor) => {
                    let rows = tensor.dims()[0];
                    let band = tensor
                        .clone()
                        .slice([0..rows, start..end])
                        .into_data()
                        .into_bytes();
                    transpose_into(&band, rows, end - start, 0..end - start, self.element, &mut out);
                }
            }
            out
        })
    }
}

/// The planned parameters read into memory in the file's layout, each released (its handle on the
/// backend's memory dropped) as soon as it is read.
pub(crate) fn export(planned: Vec<Planned>) -> Vec<Exported> {
    planned
        .into_iter()
        .map(|planned| Exported {
            bytes: planned.read(),
            name: planned.name,
            dtype: planned.dtype,
            shape: planned.shape,
        })
        .collect()
}

/// Every float parameter of `model`, named `model.{path}` in PyTorch's layout, not read yet.
pub(crate) fn plan<M: Module>(model: &M) -> Result<Vec<Planned>, String> {
    plan_prefixed(model, MODEL_PREFIX)
}

/// [`plan`], each name under `prefix` (`ema.` for the averaged weights).
pub(crate) fn plan_prefixed<M: Module>(model: &M, prefix: &str) -> Result<Vec<Planned>, String> {
    struct Collect<'a> {
        prefix: &'a str,
        tensors: Vec<Planned>,
        error: Option<String>,
    }
    impl PathVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, at: &ModulePath, param: &Param<Tensor<D>>) {
            let (name, transpose) = at.file_name(D);
            let name = format!("{}{name}", self.prefix);
            let tensor = param.val();
            let dtype = match tensor.dtype() {
                DType::F64 => Dtype::F64,
                DType::F32 => Dtype::F32,
                DType::F16 => Dtype::F16,
                DType::BF16 => Dtype::BF16,
                other => {
                    self.error.get_or_insert(format!(
                        "parameter `{name}` has dtype {other:?}, which checkpoints do not hold"
                    ));
                    return;
                }
            };
            let element = tensor.dtype().size();
            let mut shape = tensor.dims().to_vec();
            let host = host(&tensor);
            let source = if transpose {
                shape.swap(0, 1);
                Source::Transposed(tensor.reshape([shape[1], shape[0]]))
            } else {
                Source::Flat(tensor.reshape([shape.iter().product::<usize>()]))
            };
            self.tensors.push(Planned {
                name,
                dtype,
                shape,
                element,
                source,
                host,
            });
        }
    }
    let collect = visit_with_path(
        model,
        Collect {
            prefix,
            tensors: Vec::new(),
            error: None,
        },
    );
    match collect.error {
        Some(error) => Err(error),
        None => Ok(collect.tensors),
    }
}

/// The flex tensor behind `tensor` where its values lie contiguously in host memory (shared, not
/// copied); `None` on other backends or for strided views.
fn host<const D: usize>(tensor: &Tensor<D>) -> Option<FlexTensor> {
    let flex = tensor.clone().inner().try_into_primitive::<Flex>().ok()?;
    flex.is_contiguous().then_some(flex)
}

/// Writes the columns `band` of a row-major `[rows, cols]` matrix of `element`-byte values into
/// `out` (resized to fit) as the rows of a `[band.len(), rows]` matrix.
pub(crate) fn transpose_into(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    band: std::ops::Range<usize>,
    element: usize,
    out: &mut Vec<u8>,
) {
    out.resize(band.len() * rows * element, 0);
    transpose_block(bytes, rows, cols, band.start, element, &mut out[..], rows, 0);
}

/// Writes a row-major `[rows, cols]` matrix of `element`-byte values, transposed, into the columns
/// `at..at + rows` of the row-major `[cols, stride]` matrix `out`: how a file's `[out, in]` weight is
/// read into burn's `[in, out]` a band of rows at a time. `out` may be memory not written yet.
pub(crate) fn transpose_rows_into<B: Byte>(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    element: usize,
    out: &mut [B],
    stride: usize,
    at: usize,
) {
    transpose_block(bytes, rows, cols, 0, element, out, stride, at);
}

/// A byte of memory to write: one that holds a value already, or one not written yet (whose
/// memory need not be zeroed first, which would cost as much as the write).
pub(crate) trait Byte: Copy + Send + Sync {
    fn of(byte: u8) -> Self;
}

impl Byte for u8 {
    fn of(byte: u8) -> Self {
        byte
    }
}

impl Byte for MaybeUninit<u8> {
    fn of(byte: u8) -> Self {
        MaybeUninit::new(byte)
    }
}

/// Input columns `first..` of a row-major `[rows, cols]` matrix become the rows of `out` (each
/// `stride` values long), landing at positions `at..at + rows` of each.
#[allow(clippy::too_many_arguments)]
fn transpose_block<B: Byte>(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    first: usize,
    element: usize,
    out: &mut [B],
    stride: usize,
    at: usize,
) {
    match element {
        2 => transpose_elements::<2, B>(bytes, rows, cols, first, out, stride, at),
        4 => transpose_elements::<4, B>(bytes, rows, cols, first, out, stride, at),
        8 => transpose_elements::<8, B>(bytes, rows, cols, first, out, stride, at),
        _ => {
            let out_rows = out.len() / (stride * element).max(1);
            for i in 0..rows {
                for j in 0..out_rows {
                    let from = (i * cols + first + j) * element;
                    let to = (j * stride + at + i) * element;
                    for (to, from) in out[to..to + element].iter_mut().zip(&bytes[from..from + element]) {
                        *to = B::of(*from);
                    }
                }
            }
        }
    }
}

fn transpose_elements<const N: usize, B: Byte>(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    first: usize,
    out: &mut [B],
    stride: usize,
    at: usize,
) {
    const TILE: usize = 16;
    let (values, _) = bytes.as_chunks::<N>();
    let (out, _) = out.as_chunks_mut::<N>();
    // Tasks of TILE output rows (input columns) on rayon's threads: each input row gives a task one
    // short contiguous read, and the task's TILE output rows are written in order.
    out.par_chunks_mut(TILE * stride)
        .enumerate()
        .for_each(|(task, chunk)| {
            let col_start = first + task * TILE;
            let task_cols = chunk.len() / stride.max(1);
            // Whole cache lines of output where the values fill them (a line of 16 f32s), the rest
            // one value at a time.
            let done = match N {
                4 => streamed::<N, TILE, B>(values, rows, cols, col_start, chunk, stride, at),
                _ => 0,
            };
            for i in done..rows {
                let row = &values[i * cols + col_start..][..task_cols];
                for (j, value) in row.iter().enumerate() {
                    chunk[j * stride + at + i] = value.map(B::of);
                }
            }
        });
}

/// Transposes the input rows of a task (its `T` input columns from `col_start`) in tiles of `T` rows,
/// and writes each tile's `T` output lines of 64 bytes (`T` values of `N` bytes) with non-temporal
/// stores: each line goes to memory whole, without first being read into the cache, as an ordinary
/// store has it. Those reads double the traffic of a transposition, whose writes land too far apart
/// for the cache to gather: a 10 000 × 10 000 f32 weight took four times as long as a copy of it
/// value by value, and two and a half times this way. Returns how many input rows it did (a multiple of
/// `T`: none where the output is not aligned for it); the caller does the rest.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn streamed<const N: usize, const T: usize, B: Byte>(
    values: &[[u8; N]],
    rows: usize,
    cols: usize,
    col_start: usize,
    chunk: &mut [[B; N]],
    stride: usize,
    at: usize,
) -> usize {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let task_cols = chunk.len() / stride.max(1);
    // Each output line starts at `(c * stride + at + i0) * N` bytes into the chunk, a multiple of 16
    // when these are.
    let aligned = (chunk.as_ptr() as usize).is_multiple_of(16)
        && (stride * N).is_multiple_of(16)
        && (at * N).is_multiple_of(16);
    if T * N != 64 || task_cols != T || !aligned {
        return 0;
    }
    let whole = rows / T * T;
    #[cfg(test)]
    tests::STREAMED.fetch_add(whole, std::sync::atomic::Ordering::Relaxed);
    for i0 in (0..whole).step_by(T) {
        let mut tile = [[[0u8; N]; T]; T];
        for r in 0..T {
            let row = &values[(i0 + r) * cols + col_start..][..T];
            for (c, value) in row.iter().enumerate() {
                tile[c][r] = *value;
            }
        }
        for (c, line) in tile.iter().enumerate() {
            let to = chunk[c * stride + at + i0..][..T].as_mut_ptr().cast::<__m128i>();
            let from = line.as_ptr().cast::<__m128i>();
            for k in 0..4 {
                // SAFETY: `to` and `from` each address 64 bytes (`T` values of `N` bytes, checked
                // above), of the output line and of the tile's line, so the four 16-byte stores and
                // loads stay inside them; `to` is 16-byte aligned (checked above), and an unaligned
                // load needs none. SSE2, which these need, is part of x86-64.
                unsafe { _mm_stream_si128(to.add(k), _mm_loadu_si128(from.add(k))) };
            }
        }
    }
    // Non-temporal stores are ordered with no other: fenced before the task ends, so that whoever
    // reads the output after it sees them.
    // SAFETY: SSE, which this needs, is part of x86-64.
    unsafe { _mm_sfence() };
    whole
}

/// Elsewhere every value is written one at a time by the caller.
#[cfg(not(target_arch = "x86_64"))]
fn streamed<const N: usize, const T: usize, B: Byte>(
    _values: &[[u8; N]],
    _rows: usize,
    _cols: usize,
    _col_start: usize,
    _chunk: &mut [[B; N]],
    _stride: usize,
    _at: usize,
) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    use super::{plan, transpose_into, transpose_rows_into};

    /// Input rows transposed a tile at a time in whole output lines, by any test.
    pub(super) static STREAMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Transposes a row-major `[rows, cols]` matrix of `element`-byte values.
    fn transpose_bytes(bytes: &[u8], rows: usize, cols: usize, element: usize) -> Vec<u8> {
        let mut out = Vec::new();
        transpose_into(bytes, rows, cols, 0..cols, element, &mut out);
        out
    }

    #[test]
    fn pieces_put_together_are_the_whole_tensor_in_the_files_layout() {
        let device = Device::flex();
        device.seed(2);
        let model: Linear = LinearConfig::new(37, 23).init(&device);
        let mut planned = plan(&model).unwrap();
        assert_eq!(planned.len(), 2);
        for tensor in &mut planned {
            // Read in place from flex's memory, and through the backend's slices.
            assert!(tensor.host.is_some(), "{} is read in place", tensor.name);
            let whole = tensor.read().to_vec();
            assert_eq!(whole.len(), tensor.len());
            for host in [true, false] {
                if !host {
                    tensor.host = None;
                    assert_eq!(tensor.read().to_vec(), whole);
                }
                for chunk in [1, 100, 37 * 4 * 5, 1 << 20] {
                    let joined: Vec<u8> = tensor.pieces(chunk, Vec::new).flatten().collect();
                    assert_eq!(joined, whole, "{} in pieces of {chunk} bytes", tensor.name);
                }
            }
        }
        // The weight is written as PyTorch's [out, in].
        assert_eq!(planned[0].shape, [23, 37]);
        // A model being trained is read in place too.
        let trained: Linear = LinearConfig::new(5, 3).init(&device.autodiff());
        assert!(plan(&trained).unwrap().iter().all(|t| t.host.is_some()));
    }

    #[test]
    fn transposes_every_element_size_and_ragged_shapes() {
        // Shapes of more than 16 rows and columns, a multiple of 4 rows, are written a tile at a time
        // in whole cache lines where the output is aligned for it (bands of 16 rows are).
        for (rows, cols) in [
            (1, 1),
            (13, 21),
            (8, 8),
            (9, 17),
            (64, 3),
            (48, 35),
            (64, 32),
            (36, 17),
        ] {
            for element in [2, 3, 4, 8] {
                let bytes: Vec<u8> = (0..rows * cols * element).map(|b| (b * 7 % 251) as u8).collect();
                let out = transpose_bytes(&bytes, rows, cols, element);
                for i in 0..rows {
                    for j in 0..cols {
                        let from = (i * cols + j) * element;
                        let to = (j * rows + i) * element;
                        assert_eq!(
                            out[to..to + element],
                            bytes[from..from + element],
                            "{rows}x{cols}x{element}"
                        );
                    }
                }
                // Bands of rows, transposed one at a time into their columns, give the whole.
                for band_rows in [1, 2, 5, 16] {
                    let mut whole = vec![0u8; out.len()];
                    for start in (0..rows).step_by(band_rows) {
                        let end = (start + band_rows).min(rows);
                        let band = &bytes[start * cols * element..end * cols * element];
                        transpose_rows_into(band, end - start, cols, element, &mut whole, rows, start);
                    }
                    assert_eq!(whole, out, "{rows}x{cols}x{element} in bands of {band_rows} rows");
                }
                if cfg!(target_arch = "x86_64") && element == 4 && rows.is_multiple_of(16) && cols >= 16 {
                    assert!(STREAMED.load(std::sync::atomic::Ordering::Relaxed) > 0);
                }
                // Any band of columns is the matching band of the transposed rows.
                for band in [0..cols, cols / 2..cols, 1.min(cols)..cols.div_ceil(2)] {
                    let mut part = vec![1; 3];
                    transpose_into(&bytes, rows, cols, band.clone(), element, &mut part);
                    let rows_bytes = rows * element;
                    assert_eq!(
                        part,
                        out[band.start * rows_bytes..band.end * rows_bytes],
                        "{rows}x{cols}x{element}, columns {band:?}"
                    );
                }
            }
        }
    }
}
