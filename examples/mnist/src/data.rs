//! MNIST from the IDX files a user downloads, as a burn [`Dataset`] of [`MnistItem`]s.
//!
//! Adapted from burn's MNIST example (<https://github.com/tracel-ai/burn>, `examples/mnist/src/data.rs`,
//! and the `MnistItem` of `burn-dataset`'s `vision` module), © Nathaniel Simard and the Burn
//! Framework contributors, licensed under MIT or Apache-2.0: the item's shape and the normalisation
//! constants are theirs. The IDX reader and writer are this example's own.
//!
//! The directory `data.path` holds the four files of <http://yann.lecun.com/exdb/mnist/>, each
//! plain or gzipped (`train-images-idx3-ubyte` or `train-images-idx3-ubyte.gz`, and so on).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};

/// Image side in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Mean of MNIST's training pixels scaled to `[0, 1]` (from PyTorch's MNIST example, as burn's).
pub const MEAN: f32 = 0.1307;
/// Standard deviation of MNIST's training pixels scaled to `[0, 1]`.
pub const STD: f32 = 0.3081;

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The `data` section: where the IDX files are and how many samples to read. (`data.batch_size`
/// and `data.shuffle` in the same mapping are danling's own keys.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// The directory of the four IDX files, or with `format: imagefolder` of the `train` and `test`
    /// (or `val`) image folders (required).
    pub path: Option<PathBuf>,
    /// Reads at most this many samples of each split, the first ones (`null`: all).
    pub limit: Option<usize>,
    /// `idx` (MNIST's files, the default) or `imagefolder` (PNG or JPEG digits, one folder per
    /// digit, decoded on danling's loader threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Shifts each training image by up to this many pixels in each direction (zeros fill in), a
    /// new shift every epoch: the translation part of burn's random affine augmentation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<usize>,
}

/// How the digits are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// MNIST's IDX files.
    #[default]
    Idx,
    /// An image folder: `train/0/…png` to `train/9/`, and `test/` (or `val/`) the same.
    Imagefolder,
}

/// The splits of an image folder of digits: `dir/train`, and `dir/test` or else `dir/val`, named
/// as their folders. Images are read as 28×28 grey. Each class folder must be named by its digit,
/// `0` to `9`: a folder of another name is an error that names it (a label the model has no output
/// for would fail in the middle of training).
pub fn read_image_folders(
    dir: &Path,
) -> Result<(FolderDigits, (String, FolderDigits)), danling::data::DataError> {
    use danling::data::ImageFolder;
    let train = ImageFolder::open(dir.join("train"), [SIDE as u32; 2], 1)?;
    let digits = train
        .classes()
        .iter()
        .map(|name| match name.parse::<u8>() {
            Ok(digit) if digit < 10 && name.len() == 1 => Ok(digit),
            _ => Err(danling::data::DataError::Format {
                path: dir.join("train").join(name),
                message: "is not a digit's folder: the class folders are named 0 to 9".into(),
            }),
        })
        .collect::<Result<Vec<u8>, _>>()?;
    let name = if dir.join("test").is_dir() { "test" } else { "val" };
    let eval = ImageFolder::with_classes(dir.join(name), train.classes(), [SIDE as u32; 2], 1)?;
    Ok((
        FolderDigits {
            images: train,
            digits: digits.clone(),
        },
        (name.to_owned(), FolderDigits { images: eval, digits }),
    ))
}

/// An image folder of digits as [`MnistItem`]s, each labelled with its folder's digit.
#[derive(Debug, Clone)]
pub struct FolderDigits {
    images: danling::data::ImageFolder,
    /// The digit of each class, in the folder's class order.
    digits: Vec<u8>,
}

impl Dataset<MnistItem> for FolderDigits {
    fn get(&self, index: usize) -> Result<MnistItem, DatasetError> {
        let decoded = self.images.get(index)?;
        let mut image = [[0.0; SIDE]; SIDE];
        for (row, values) in image.iter_mut().zip(decoded.pixels.chunks_exact(SIDE)) {
            for (value, &v) in row.iter_mut().zip(values) {
                *value = (v * 255.0).round();
            }
        }
        // `read_image_folders` gave a digit to every class the folder has.
        let label = self.digits[decoded.label];
        Ok(MnistItem { image, label })
    }

    fn len(&self) -> usize {
        self.images.len()
    }
}

/// `item` shifted by `(dx, dy)` pixels, zeros filling in.
pub fn shifted(item: &MnistItem, dx: isize, dy: isize) -> MnistItem {
    let mut image = [[0.0; SIDE]; SIDE];
    for (y, row) in image.iter_mut().enumerate() {
        for (x, value) in row.iter_mut().enumerate() {
            let (sx, sy) = (x as isize - dx, y as isize - dy);
            if (0..SIDE as isize).contains(&sx) && (0..SIDE as isize).contains(&sy) {
                *value = item.image[sy as usize][sx as usize];
            }
        }
    }
    MnistItem {
        image,
        label: item.label,
    }
}

/// One image and its digit, as burn's `MnistItem`.
#[derive(Debug, Clone, PartialEq)]
pub struct MnistItem {
    /// Pixel intensities, 0 (background) to 255, row by row.
    pub image: [[f32; SIDE]; SIDE],
    /// The digit, 0 to 9.
    pub label: u8,
}

/// The two splits of MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// 60,000 training images (`train-*`).
    Train,
    /// 10,000 test images (`t10k-*`).
    Test,
}

impl Split {
    /// The prefix of the split's file names.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// One split of MNIST in memory, as bytes; [`Dataset::get`] turns a sample into an [`MnistItem`].
#[derive(Debug, Clone, PartialEq)]
pub struct MnistDataset {
    images: Vec<[u8; PIXELS]>,
    labels: Vec<u8>,
}

impl MnistDataset {
    /// Reads `split` from `dir`, keeping the first `limit` samples if given.
    pub fn read(dir: &Path, split: Split, limit: Option<usize>) -> Result<Self, DataError> {
        let prefix = split.prefix();
        let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        let (image_dims, pixels) = read_idx(&images_path, IMAGES_MAGIC)?;
        if image_dims[1..] != [SIDE, SIDE] {
            return Err(DataError::new(
                &images_path,
                format!(
                    "images of {}×{} pixels, expected {SIDE}×{SIDE}",
                    image_dims[1], image_dims[2]
                ),
            ));
        }
        let (label_dims, labels) = read_idx(&labels_path, LABELS_MAGIC)?;
        if label_dims[0] != image_dims[0] {
            return Err(DataError::new(
                &labels_path,
                format!(
                    "{} labels for the {} images of {}",
                    label_dims[0],
                    image_dims[0],
                    images_path.display()
                ),
            ));
        }
        if let Some(index) = labels.iter().position(|&label| label > 9) {
            return Err(DataError::new(
                &labels_path,
                format!("label {} of sample {index} is not a digit", labels[index]),
            ));
        }
        let n = limit.map_or(labels.len(), |limit| limit.min(labels.len()));
        let images = pixels
            .chunks_exact(PIXELS)
            .take(n)
            .map(|chunk| {
                let mut image = [0; PIXELS];
                image.copy_from_slice(chunk);
                image
            })
            .collect();
        Ok(Self {
            images,
            labels: labels[..n].to_vec(),
        })
    }

    /// The digit of every sample, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
}

impl Dataset<MnistItem> for MnistDataset {
    fn get(&self, index: usize) -> Result<MnistItem, DatasetError> {
        let (Some(pixels), Some(&label)) = (self.images.get(index), self.labels.get(index)) else {
            let message = format!("index {index} is out of range for {} samples", self.labels.len());
            return Err(DatasetError::new(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                message,
            )));
        };
        let mut image = [[0.0; SIDE]; SIDE];
        for (row, bytes) in image.iter_mut().zip(pixels.chunks_exact(SIDE)) {
            for (value, &byte) in row.iter_mut().zip(bytes) {
                *value = f32::from(byte);
            }
        }
        Ok(MnistItem { image, label })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Why an MNIST file could not be read: one line naming the file and what is wrong.
#[derive(Debug)]
pub struct DataError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

impl DataError {
    fn new(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MNIST file {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DataError {}

/// `dir/name`, or `dir/name.gz` when only that exists.
fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    match (plain.is_file(), gz.is_file()) {
        (false, true) => Ok(gz),
        (true, _) => Ok(plain),
        (false, false) => Err(DataError::new(
            &plain,
            format!("not found (nor {name}.gz): download MNIST into {}", dir.display()),
        )),
    }
}

/// Reads an IDX file of unsigned bytes, plain or gzipped, whose magic number must be `magic` (which
/// also says its rank): its dimensions and its data, whose length they are checked against.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read it: {e}")))?;
    // An IDX file starts with two zero bytes, a gzip stream with 0x1f 0x8b.
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::new(path, format!("not a valid gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| DataError::new(path, "too short for an IDX header"))?;
    if found != magic {
        return Err(DataError::new(
            path,
            format!("magic number {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let rank = (magic & 0xff) as usize;
    let dims = (1..=rank)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| DataError::new(path, format!("the header ends before its {rank} dimensions")))?;
    let header = 4 * (rank + 1);
    let data = &bytes[header..];
    match dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(len) if data.len() == len => Ok((dims, data.to_vec())),
        _ => Err(DataError::new(
            path,
            format!("{} bytes of data for dimensions {dims:?}", data.len()),
        )),
    }
}

/// Writes `images` and their `labels` as the IDX files of a split, `{prefix}-images-idx3-ubyte` and
/// `{prefix}-labels-idx1-ubyte`, in `dir` (`prefix` is `train` or `t10k` for a directory that
/// [`MnistDataset::read`] reads), each atomically. For tests and for data sets of your own.
pub fn write_idx(dir: &Path, images: &[[u8; PIXELS]], labels: &[u8], prefix: &str) -> std::io::Result<()> {
    if images.len() != labels.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} images but {} labels", images.len(), labels.len()),
        ));
    }
    let n = u32::try_from(labels.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "too many samples for IDX"))?;
    let header = |magic: u32, dims: &[u32]| -> Vec<u8> {
        let mut bytes = magic.to_be_bytes().to_vec();
        dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
        bytes
    };
    let side = SIDE as u32;
    let mut image_bytes = header(IMAGES_MAGIC, &[n, side, side]);
    images
        .iter()
        .for_each(|image| image_bytes.extend_from_slice(image));
    let mut label_bytes = header(LABELS_MAGIC, &[n]);
    label_bytes.extend_from_slice(labels);
    // Atomically, as danling writes its own files: a reader never sees half a file.
    let write = |name: String, bytes: &[u8]| {
        danling::fs::write_atomic(&dir.join(name), bytes).map_err(std::io::Error::other)
    };
    write(format!("{prefix}-images-idx3-ubyte"), &image_bytes)?;
    write(format!("{prefix}-labels-idx1-ubyte"), &label_bytes)
}

/// The UCI handwritten digits that danling bundles (1797 images of 8×8 pixels, 0 to 16), made to
/// look like MNIST: each image upscaled bilinearly to 20×20, centred in 28×28 as MNIST's digits
/// are, and scaled to 0..255. Returns the images and their digits, in the bundled order.
///
/// A small, real data set for tests and quick runs without downloading MNIST.
pub fn digits_as_mnist() -> Result<(Vec<[u8; PIXELS]>, Vec<u8>), danling::data::DataError> {
    const SMALL: usize = 8;
    const BOX: usize = 20;
    const OFFSET: usize = (SIDE - BOX) / 2;
    let digits = danling::data::digits()?;
    let danling::data::Targets::Classes { labels, .. } = &digits.targets else {
        return Err(danling::data::DataError::Format {
            path: "digits".into(),
            message: "targets are not classes".into(),
        });
    };
    // Where output pixel `i` of the box samples the small image, in its pixel coordinates (pixel
    // centres aligned, as PyTorch's `align_corners=False`): the two neighbours and the weight of
    // the second.
    let sample = |i: usize| -> (usize, usize, f32) {
        let x = ((i as f32 + 0.5) * SMALL as f32 / BOX as f32 - 0.5).clamp(0.0, (SMALL - 1) as f32);
        let low = x.floor() as usize;
        (low, (low + 1).min(SMALL - 1), x - low as f32)
    };
    let images = (0..digits.len())
        .map(|n| {
            let small = digits.row(n);
            let mut image = [0u8; PIXELS];
            for row in 0..BOX {
                let (r0, r1, wr) = sample(row);
                for col in 0..BOX {
                    let (c0, c1, wc) = sample(col);
                    let at = |r: usize, c: usize| small[r * SMALL + c];
                    let top = at(r0, c0) * (1.0 - wc) + at(r0, c1) * wc;
                    let bottom = at(r1, c0) * (1.0 - wc) + at(r1, c1) * wc;
                    let value = (top * (1.0 - wr) + bottom * wr) / 16.0 * 255.0;
                    image[(row + OFFSET) * SIDE + col + OFFSET] = value.round().clamp(0.0, 255.0) as u8;
                }
            }
            image
        })
        .collect();
    let labels = labels.iter().map(|&label| label as u8).collect();
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    fn image(value: u8) -> [u8; PIXELS] {
        std::array::from_fn(|i| value.wrapping_add(i as u8))
    }

    #[test]
    fn reads_what_it_writes_plain_and_gzipped_with_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let images = [image(0), image(7), image(200)];
        write_idx(dir.path(), &images, &[3, 9, 0], "train").unwrap();
        write_idx(dir.path(), &images[..1], &[5], "t10k").unwrap();
        // The test images gzipped, the plain file gone.
        let plain = dir.path().join("t10k-images-idx3-ubyte");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
        std::fs::write(plain.with_extension("gz"), gz.finish().unwrap()).unwrap();
        std::fs::remove_file(&plain).unwrap();

        let train = MnistDataset::read(dir.path(), Split::Train, None).unwrap();
        assert_eq!(train.len(), 3);
        assert_eq!(train.labels(), [3, 9, 0]);
        let item = train.get(1).unwrap();
        assert_eq!(item.label, 9);
        assert_eq!(item.image[0][0], 7.0);
        assert_eq!(item.image[1][2], f32::from(7u8.wrapping_add(30)));
        assert!(train.get(3).is_err());

        let limited = MnistDataset::read(dir.path(), Split::Train, Some(2)).unwrap();
        assert_eq!(limited.labels(), [3, 9]);
        let test = MnistDataset::read(dir.path(), Split::Test, Some(10)).unwrap();
        assert_eq!(test.labels(), [5]);
        assert_eq!(
            test.get(0).unwrap().image[27][27],
            f32::from(image(0)[PIXELS - 1])
        );
    }

    #[test]
    fn bad_files_are_one_line_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = |split| {
            MnistDataset::read(dir.path(), split, None)
                .unwrap_err()
                .to_string()
        };
        let images_file = dir.path().join("train-images-idx3-ubyte");
        let labels_file = dir.path().join("train-labels-idx1-ubyte");
        let missing = error(Split::Train);
        assert!(
            missing.contains("train-images-idx3-ubyte: not found"),
            "{missing}"
        );

        write_idx(dir.path(), &[image(1), image(2)], &[1, 2], "train").unwrap();
        let mut bytes = std::fs::read(&images_file).unwrap();
        bytes.pop();
        std::fs::write(&images_file, &bytes).unwrap();
        let short = error(Split::Train);
        assert!(short.contains(&images_file.display().to_string()), "{short}");
        assert!(
            short.contains("1567 bytes of data for dimensions [2, 28, 28]"),
            "{short}"
        );

        std::fs::write(&images_file, [0, 0, 8, 1, 0, 0, 0, 2]).unwrap();
        assert!(error(Split::Train).contains("magic number 0x00000801, expected 0x00000803"));
        std::fs::write(&images_file, [0, 0, 8]).unwrap();
        assert!(error(Split::Train).contains("too short for an IDX header"));
        std::fs::write(&images_file, [0, 0, 8, 3, 0, 0, 0, 2]).unwrap();
        assert!(error(Split::Train).contains("the header ends before its 3 dimensions"));
        let two_by_two = [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4];
        std::fs::write(&images_file, two_by_two).unwrap();
        assert!(error(Split::Train).contains("images of 2×2 pixels, expected 28×28"));
        std::fs::write(&images_file, [0x1f, 0x8b, 0, 0]).unwrap();
        assert!(error(Split::Train).contains("not a valid gzip stream"));

        write_idx(dir.path(), &[image(1), image(2)], &[1, 12], "train").unwrap();
        let label = error(Split::Train);
        assert!(label.contains(&labels_file.display().to_string()), "{label}");
        assert!(label.contains("label 12 of sample 1 is not a digit"), "{label}");
        write_idx(dir.path(), &[image(1)], &[1], "t10k").unwrap();
        std::fs::copy(&labels_file, dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        assert!(error(Split::Test).contains("2 labels for the 1 images"));
        for message in [missing, short, label] {
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    #[test]
    fn the_digits_look_like_mnist() {
        let (images, labels) = digits_as_mnist().unwrap();
        assert_eq!((images.len(), labels.len()), (1797, 1797));
        assert!(labels.iter().all(|&l| l <= 9));
        for image in &images {
            // Nothing outside the centred 20×20 box, and some ink inside it.
            for (i, &p) in image.iter().enumerate() {
                let (row, col) = (i / SIDE, i % SIDE);
                if !(4..24).contains(&row) || !(4..24).contains(&col) {
                    assert_eq!(p, 0);
                }
            }
            assert!(image.iter().any(|&p| p > 128));
        }
        // MNIST's pixel mean is about 0.13 of full scale; the digits' should be of that order.
        let mean = images.iter().flatten().map(|&p| f64::from(p)).sum::<f64>()
            / (images.len() * PIXELS) as f64
            / 255.0;
        assert!((0.05..0.3).contains(&mean), "{mean}");
    }
}
