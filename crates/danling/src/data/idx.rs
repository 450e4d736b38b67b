//! MNIST's IDX files: unsigned-byte images and labels, optionally gzipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{DataError, Tabular, Targets};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads an images file (`[n, rows, cols]` bytes) and its labels (`[n]`) into a data set with pixels
/// scaled to `[0, 1]` and 10 classes.
pub fn read_idx_pair(images: &Path, labels: &Path) -> Result<Tabular, DataError> {
    let (image_dims, pixels) = read_idx(images, IMAGES_MAGIC, 3)?;
    let (label_dims, label_bytes) = read_idx(labels, LABELS_MAGIC, 1)?;
    if image_dims[0] != label_dims[0] {
        return Err(DataError::format(
            labels,
            format!(
                "{} labels for {} images in {}",
                label_dims[0],
                image_dims[0],
                images.display()
            ),
        ));
    }
    if let Some(bad) = label_bytes.iter().find(|&&l| l > 9) {
        return Err(DataError::format(labels, format!("label {bad} is not a digit")));
    }
    Ok(Tabular {
        n: image_dims[0],
        d: image_dims[1] * image_dims[2],
        features: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        targets: Targets::Classes {
            labels: label_bytes.iter().map(|&l| i64::from(l)).collect(),
            num_classes: 10,
        },
    })
}

/// Reads MNIST from a directory holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (each possibly ending in `.gz`). Returns
/// `(train, test)`.
pub fn read_mnist_dir(dir: &Path) -> Result<(Tabular, Tabular), DataError> {
    let find = |name: &str| -> Result<PathBuf, DataError> {
        let plain = dir.join(name);
        let gz = dir.join(format!("{name}.gz"));
        if plain.is_file() {
            Ok(plain)
        } else if gz.is_file() {
            Ok(gz)
        } else {
            Err(DataError::Read {
                path: plain,
                source: std::io::ErrorKind::NotFound.into(),
            })
        }
    };
    let train = read_idx_pair(
        &find("train-images-idx3-ubyte")?,
        &find("train-labels-idx1-ubyte")?,
    )?;
    let test = read_idx_pair(&find("t10k-images-idx3-ubyte")?, &find("t10k-labels-idx1-ubyte")?)?;
    Ok((train, test))
}

/// Reads one IDX file of unsigned bytes with the given magic number and rank.
fn read_idx(path: &Path, magic: u32, rank: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Read {
        path: path.to_owned(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("bad gzip: {e}")))?;
        out
    } else {
        raw
    };
    let word = |i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let found = word(0).ok_or_else(|| DataError::format(path, "too short for an IDX header"))?;
    if found != magic {
        return Err(DataError::format(
            path,
            format!("magic number {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let dims: Vec<usize> = (1..=rank)
        .map(|i| {
            word(i)
                .map(|d| d as usize)
                .ok_or_else(|| DataError::format(path, "truncated IDX header"))
        })
        .collect::<Result<_, _>>()?;
    let header = 4 * (rank + 1);
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match expected {
        Some(len) if bytes.len() - header == len => Ok((dims, bytes[header..].to_vec())),
        _ => Err(DataError::format(
            path,
            format!("{} data bytes for dimensions {dims:?}", bytes.len() - header),
        )),
    }
}

/// Writes an IDX file (for tests).
#[cfg(test)]
pub(crate) fn write_idx(path: &Path, magic: u32, dims: &[u32], data: &[u8]) {
    let mut bytes = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_a_small_mnist_directory_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 2 * 2).map(|p| (p * 20) as u8).collect();
        write_idx(
            &dir.path().join("train-images-idx3-ubyte"),
            IMAGES_MAGIC,
            &[3, 2, 2],
            &pixels,
        );
        write_idx(
            &dir.path().join("train-labels-idx1-ubyte"),
            LABELS_MAGIC,
            &[3],
            &[7, 0, 9],
        );
        let tmp = dir.path().join("t");
        write_idx(&tmp, IMAGES_MAGIC, &[1, 2, 2], &[255, 0, 0, 255]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&std::fs::read(&tmp).unwrap()).unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
        write_idx(
            &dir.path().join("t10k-labels-idx1-ubyte"),
            LABELS_MAGIC,
            &[1],
            &[4],
        );

        let (train, test) = read_mnist_dir(dir.path()).unwrap();
        assert_eq!((train.n, train.d), (3, 4));
        assert_eq!(
            train.row(1),
            [80.0 / 255.0, 100.0 / 255.0, 120.0 / 255.0, 140.0 / 255.0]
        );
        assert_eq!(
            train.targets,
            Targets::Classes {
                labels: vec![7, 0, 9],
                num_classes: 10
            }
        );
        assert_eq!(test.features, [1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = (dir.path().join("i"), dir.path().join("l"));
        write_idx(&images, LABELS_MAGIC, &[1, 1, 1], &[0]);
        write_idx(&labels, LABELS_MAGIC, &[1], &[0]);
        assert!(
            read_idx_pair(&images, &labels)
                .unwrap_err()
                .to_string()
                .contains("magic number")
        );
        write_idx(&images, IMAGES_MAGIC, &[2, 2, 2], &[0; 5]);
        assert!(
            read_idx_pair(&images, &labels)
                .unwrap_err()
                .to_string()
                .contains("5 data bytes")
        );
        write_idx(&images, IMAGES_MAGIC, &[2, 1, 1], &[0, 0]);
        assert!(
            read_idx_pair(&images, &labels)
                .unwrap_err()
                .to_string()
                .contains("1 labels for 2 images")
        );
        assert!(
            read_mnist_dir(dir.path())
                .unwrap_err()
                .to_string()
                .contains("train-images-idx3-ubyte")
        );
    }
}
