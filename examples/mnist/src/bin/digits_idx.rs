//! `digits-idx DIR`: writes the UCI digits that danling bundles, made to look like MNIST
//! ([`digits_as_mnist`]), as the four IDX files of MNIST in `DIR`: the first 1500 images as the train
//! split, the other 297 as the test split. Then `mnist train --data.path DIR` runs offline. The IDX
//! layout is MNIST's (Yann LeCun, Corinna Cortes and Christopher J.C. Burges); the example it feeds
//! is adapted from burn's MNIST example (<https://github.com/tracel-ai/burn>, MIT or Apache-2.0).

use std::path::PathBuf;
use std::process::ExitCode;

use danling_example_mnist::data::{Split, digits_as_mnist, write_idx};

/// The images of the train split; the rest are the test split.
const TRAIN: usize = 1500;

fn main() -> ExitCode {
    const USAGE: &str =
        "usage: digits-idx DIR (writes MNIST's four IDX files of the bundled digits into DIR)";
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let dir = match args.as_slice() {
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        // An option is not a folder: `--help` must not become one.
        [dir] if !dir.to_string_lossy().starts_with('-') => PathBuf::from(dir),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let written = digits_as_mnist()
        .map_err(|e| e.to_string())
        .and_then(|(images, labels)| {
            std::fs::create_dir_all(&dir)
                .and_then(|()| write_idx(&dir, &images[..TRAIN], &labels[..TRAIN], Split::Train.prefix()))
                .and_then(|()| write_idx(&dir, &images[TRAIN..], &labels[TRAIN..], Split::Test.prefix()))
                .map_err(|e| format!("cannot write to {}: {e}", dir.display()))
                .map(|()| images.len())
        });
    match written {
        Ok(n) => {
            println!(
                "wrote {n} images to {} ({TRAIN} train, {} test)",
                dir.display(),
                n - TRAIN
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("digits-idx: error: {message}");
            ExitCode::from(2)
        }
    }
}
