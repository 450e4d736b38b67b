//! An image folder in torchvision `ImageFolder`'s layout: one subfolder per class, holding PNG or
//! JPEG files. Images are decoded when an item is fetched (on the loader's threads), converted to
//! the configured channels, resized so that they cover the configured size and centre-cropped to
//! it.

use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};

use super::DataError;
use super::tabular::split_indices;

/// One decoded image: pixels in `[0, 1]`, channel-major (`[channels, height, width]`), and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `channels × height × width` values in `[0, 1]`.
    pub pixels: Vec<f32>,
    /// The class index: the position of its folder among the sorted class folders.
    pub label: usize,
}

/// The file extensions read, lowercase.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The images of an `ImageFolder` directory, listed when opened and decoded per item.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    classes: Vec<String>,
    files: Vec<(PathBuf, usize)>,
    height: u32,
    width: u32,
    channels: u8,
}

impl ImageFolder {
    /// Lists `dir`: its subfolders, sorted by name, are the classes; their PNG and JPEG files,
    /// sorted, the items. Images come out `channels` (1: grey, 3: RGB) × `size` (`[height,
    /// width]`). A directory without classes or images is an error that names it.
    pub fn open(dir: impl AsRef<Path>, size: [u32; 2], channels: u8) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        let classes = subfolders(dir)?;
        if classes.is_empty() {
            return Err(DataError::format(
                dir,
                "has no class folders: an image folder holds one folder of images per class",
            ));
        }
        Self::with_classes(dir, &classes, size, channels)
    }

    /// Lists `dir` with the classes of another split (a `val` folder beside `train`): a folder of
    /// `dir` that is not one of `classes` is an error, a class without a folder here has no items.
    pub fn with_classes(
        dir: impl AsRef<Path>,
        classes: &[String],
        size: [u32; 2],
        channels: u8,
    ) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        if size.contains(&0) || !matches!(channels, 1 | 3) {
            return Err(DataError::format(
                dir,
                format!(
                    "images of size {size:?} with {channels} channels: the size must be positive, channels 1 or 3"
                ),
            ));
        }
        let mut files = Vec::new();
        for folder in subfolders(dir)? {
            let Some(label) = classes.iter().position(|c| *c == folder) else {
                return Err(DataError::format(
                    dir.join(&folder),
                    format!(
                        "is a class that the train split does not have ({})",
                        classes.join(", ")
                    ),
                ));
            };
            let mut images: Vec<PathBuf> = read_dir(&dir.join(&folder))?
                .into_iter()
                .filter(|path| {
                    path.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            images.sort();
            files.extend(images.into_iter().map(|path| (path, label)));
        }
        if files.is_empty() {
            return Err(DataError::format(
                dir,
                "has no PNG or JPEG images in its class folders",
            ));
        }
        Ok(Self {
            classes: classes.to_vec(),
            files,
            height: size[0],
            width: size[1],
            channels,
        })
    }

    /// The class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Values per image: `channels × height × width`.
    pub fn features(&self) -> usize {
        usize::from(self.channels) * self.height as usize * self.width as usize
    }

    /// The file of item `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(|(path, _)| path.as_path())
    }

    /// Splits off a shuffled validation part of `round(n · val_fraction)` images, drawn from
    /// `seed`, as the tabular data sets do; returns `(train, val)`, each in file order.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Self, Self), DataError> {
        let (train, val) = split_indices(self.files.len(), val_fraction, seed)?;
        let part = |rows: Vec<usize>| Self {
            files: rows.into_iter().map(|i| self.files[i].clone()).collect(),
            ..self.clone()
        };
        Ok((part(train), part(val)))
    }

    /// Decodes item `index`. A file that is not a readable PNG or JPEG is an error that names it.
    pub fn image(&self, index: usize) -> Result<Image, DataError> {
        let Some((path, label)) = self.files.get(index) else {
            return Err(DataError::format(
                self.files.first().map_or(Path::new(""), |(p, _)| p.as_path()),
                format!("image {index} is past the last of {}", self.files.len()),
            ));
        };
        let bytes = std::fs::read(path).map_err(|source| DataError::Read {
            path: path.clone(),
            source,
        })?;
        let decoded = image::load_from_memory(&bytes)
            .map_err(|e| DataError::format(path, format!("cannot decode the image: {e}")))?;
        Ok(Image {
            pixels: self.pixels(decoded),
            label: *label,
        })
    }

    /// Resized to cover the size (keeping the aspect ratio), centre-cropped to it, in `[0, 1]`.
    fn pixels(&self, image: DynamicImage) -> Vec<f32> {
        let (w, h) = image.dimensions();
        let (tw, th) = (self.width, self.height);
        let image = if (w, h) == (tw, th) {
            image
        } else {
            let scale = f64::max(f64::from(tw) / f64::from(w), f64::from(th) / f64::from(h));
            let (rw, rh) = (
                ((f64::from(w) * scale).round() as u32).max(tw),
                ((f64::from(h) * scale).round() as u32).max(th),
            );
            image
                .resize_exact(rw, rh, FilterType::Triangle)
                .crop_imm((rw - tw) / 2, (rh - th) / 2, tw, th)
        };
        let plane = (tw * th) as usize;
        match self.channels {
            1 => image
                .to_luma8()
                .into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 255.0)
                .collect(),
            _ => {
                let rgb = image.to_rgb8().into_raw();
                let mut out = vec![0.0; 3 * plane];
                for (i, px) in rgb.chunks_exact(3).enumerate() {
                    for (c, v) in px.iter().enumerate() {
                        out[c * plane + i] = f32::from(*v) / 255.0;
                    }
                }
                out
            }
        }
    }
}

impl Dataset<Image> for ImageFolder {
    fn get(&self, index: usize) -> Result<Image, DatasetError> {
        self.image(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.files.len()
    }
}

/// The entries of `dir`, as paths.
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = |source| DataError::Read {
        path: dir.to_owned(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(read)?
        .map(|entry| entry.map(|e| e.path()).map_err(read))
        .collect()
}

/// The names of the subfolders of `dir`, sorted (hidden ones left out).
fn subfolders(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names: Vec<String> = read_dir(dir)?
        .into_iter()
        .filter(|path| path.is_dir())
        .filter_map(|path| path.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, value: impl Fn(u32, u32) -> u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let image = image::GrayImage::from_fn(w, h, |x, y| image::Luma([value(x, y)]));
        image.save(path).unwrap();
    }

    #[test]
    fn classes_are_sorted_folders_and_images_are_resized_and_cropped() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("b/1.png"), 4, 4, |_, _| 255);
        write_png(
            &dir.path().join("a/2.PNG"),
            8,
            4,
            |x, _| if x < 4 { 0 } else { 255 },
        );
        std::fs::write(dir.path().join("a/notes.txt"), "not an image").unwrap();
        let folder = ImageFolder::open(dir.path(), [2, 2], 1).unwrap();
        assert_eq!(folder.classes(), ["a", "b"]);
        assert_eq!(folder.len(), 2);
        let first = folder.get(0).unwrap();
        assert_eq!(first.label, 0);
        assert_eq!(first.pixels.len(), 4);
        // 8×4 scaled to 4×2 and centre-cropped to 2×2: the dark half and the bright half.
        assert!(
            first.pixels[0] < 0.5 && first.pixels[1] > 0.5,
            "{:?}",
            first.pixels
        );
        let second = ImageFolder::open(dir.path(), [3, 3], 3).unwrap().get(1).unwrap();
        assert_eq!(second.label, 1);
        assert_eq!(second.pixels, vec![1.0; 27]);
    }

    #[test]
    fn jpeg_files_are_read_as_rgb_in_channel_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("red")).unwrap();
        std::fs::create_dir_all(dir.path().join("blue")).unwrap();
        for (class, colour) in [("red", [250, 10, 10]), ("blue", [10, 10, 250])] {
            let image = image::RgbImage::from_pixel(16, 16, image::Rgb(colour));
            image.save(dir.path().join(class).join("a.jpg")).unwrap();
        }
        let folder = ImageFolder::open(dir.path(), [4, 4], 3).unwrap();
        assert_eq!(folder.classes(), ["blue", "red"]);
        let red = folder.get(1).unwrap().pixels;
        let plane = |c: usize| red[c * 16..(c + 1) * 16].iter().sum::<f32>() / 16.0;
        assert!(plane(0) > 0.9 && plane(1) < 0.1 && plane(2) < 0.1, "{red:?}");
    }

    #[test]
    fn a_damaged_image_and_a_folder_without_classes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("cat/ok.png"), 4, 4, |_, _| 9);
        let damaged = dir.path().join("cat/zz.png");
        let mut bytes = std::fs::read(dir.path().join("cat/ok.png")).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&damaged, bytes).unwrap();
        let folder = ImageFolder::open(dir.path(), [4, 4], 1).unwrap();
        assert!(folder.get(0).is_ok());
        let error = folder.get(1).unwrap_err().to_string();
        assert!(
            error.contains("zz.png") && error.contains("cannot decode"),
            "{error}"
        );

        let empty = tempfile::tempdir().unwrap();
        let error = ImageFolder::open(empty.path(), [4, 4], 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no class folders"), "{error}");
        let error = ImageFolder::open(dir.path().join("missing"), [4, 4], 1)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing"), "{error}");
        let other = ImageFolder::with_classes(dir.path(), &["dog".into()], [4, 4], 1).unwrap_err();
        assert!(other.to_string().contains("cat"), "{other}");
    }
}
