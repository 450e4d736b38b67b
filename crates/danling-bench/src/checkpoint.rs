//! (c) Checkpoint bandwidth: saving and loading a model of 100M parameters, against writing (with
//! fsync, as danling does) and reading the same number of bytes raw. Loads are timed from the disk
//! (the file's pages dropped from the cache first) and from the page cache: the weights alone
//! (`load_model` of a `save_model` file, which carries no checksum), and a full checkpoint
//! (`load_checkpoint`, which checks every tensor against the file's CRC-32C as well).
//!
//! The raw write goes to a new file that then replaces the previous one, as a checkpoint does: a
//! file truncated and rewritten in place reuses the pages it has just freed, while any write that
//! keeps the old file until the new one is complete needs as many other pages, which a virtual
//! machine may have handed back to its host and must fault in again. The two sides also take turns
//! going first, so that neither always inherits the other's freed memory.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use danling::checkpoint::{Checkpoint, load_checkpoint, save_checkpoint};
use danling::state::State;
use danling::{Config, Identity, Results};

use crate::mlp::Mlp;
use crate::overhead::list;
use crate::report::{Report, Verdict};
use crate::{Options, median};

/// One linear layer of 10 000 × 10 000 weights and 10 000 biases.
const WIDTHS: [usize; 2] = [10_000, 10_000];

pub fn bandwidth(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    eprintln!("(c) checkpoint save and load, 100M parameters");
    let dir = tempfile::tempdir()?;
    let device = Device::flex();
    let model = Mlp::new(&WIDTHS, &device);
    model.materialise();
    let bytes = 4.0 * (WIDTHS[0] * WIDTHS[1] + WIDTHS[1]) as f64;
    let path = dir.path().join("model.safetensors");
    let full = dir.path().join("full.safetensors");
    save_full(&model, &full)?;
    let raw_path = dir.path().join("raw.bin");
    let raw_temp = dir.path().join("raw.bin.tmp");
    let raw = vec![7u8; bytes as usize];
    let (mut save, mut load, mut write, mut read) = (vec![], vec![], vec![], vec![]);
    let (mut load_cold, mut read_cold) = (vec![], vec![]);
    let (mut full_load, mut full_cold) = (vec![], vec![]);
    // One untimed round first: the first touch of fresh memory is slow on some machines (virtual
    // ones especially), for both sides alike.
    for round in 0..=options.repeats {
        let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64())
        };
        let save_once = || time(&mut || Ok(danling::checkpoint::save_model(&model, &path)?));
        let write_once = || {
            time(&mut || {
                let mut file = std::fs::File::create(&raw_temp)?;
                file.write_all(&raw)?;
                file.sync_all()?;
                Ok(std::fs::rename(&raw_temp, &raw_path)?)
            })
        };
        let (s, w) = if round % 2 == 0 {
            let s = save_once()?;
            (s, write_once()?)
        } else {
            let w = write_once()?;
            (save_once()?, w)
        };
        let load_once = || {
            time(&mut || {
                drop(danling::checkpoint::load_model(
                    Mlp::new(&WIDTHS, &device),
                    &path,
                )?);
                Ok(())
            })
        };
        let full_once = || {
            time(&mut || {
                drop(load_checkpoint(&full, Mlp::new(&WIDTHS, &device), optimizer())?);
                Ok(())
            })
        };
        let read_once = || {
            time(&mut || {
                drop(std::fs::read(&raw_path)?);
                Ok(())
            })
        };
        // From the disk first (as a resume in a fresh process after a save finds them, given that
        // danling writes checkpoints past the page cache), then again from the cache.
        evict(&path)?;
        evict(&raw_path)?;
        evict(&full)?;
        let (lc, rc, fc) = (load_once()?, read_once()?, full_once()?);
        let (l, r, f) = (load_once()?, read_once()?, full_once()?);
        if round > 0 {
            save.push(s);
            write.push(w);
            load.push(l);
            read.push(r);
            load_cold.push(lc);
            read_cold.push(rc);
            full_load.push(f);
            full_cold.push(fc);
        }
    }
    let mb = |seconds: f64| bytes / 1e6 / seconds;
    // Writes here now and then stall for most of a second while the virtual machine faults in pages
    // its host took back, on either side at random: the fastest run of each side is what the code
    // costs, so the table compares those (the medians follow in the details).
    let fastest = |runs: &[f64]| runs.iter().copied().fold(f64::INFINITY, f64::min);
    let (s, w) = (fastest(&save), fastest(&write));
    report.row(
        "(c) checkpoint save, 100M params (400 MB), fastest run",
        format!("{:.0} MB/s ({s:.2} s)", mb(s)),
        format!("raw write+fsync+rename {:.0} MB/s ({w:.2} s)", mb(w)),
        format!("{:.0}% of raw", w / s * 100.0),
        "≥ 70%",
        Verdict::from(w / s >= 0.7),
    );
    // Targets: checking a file costs little beside reading it.
    for (what, from, loads, reads, target) in [
        ("checkpoint load", "the page cache", &load, &read, 0.5),
        ("checkpoint load", "the disk", &load_cold, &read_cold, 0.8),
        (
            "full checkpoint load, CRC-32C checked,",
            "the page cache",
            &full_load,
            &read,
            0.5,
        ),
        (
            "full checkpoint load, CRC-32C checked,",
            "the disk",
            &full_cold,
            &read_cold,
            0.8,
        ),
    ] {
        let (l, r) = (fastest(loads), fastest(reads));
        report.row(
            &format!("(c) {what} from {from}, 100M params, fastest run"),
            format!("{:.0} MB/s ({l:.2} s)", mb(l)),
            format!("raw read {:.0} MB/s ({r:.2} s)", mb(r)),
            format!("{:.0}% of raw", r / l * 100.0),
            &format!("≥ {:.0}%", target * 100.0),
            Verdict::from(r / l >= target),
        );
    }
    report.detail(format!(
        "(c) medians: save {:.3} s, raw write {:.3} s ({:.0}% of raw); load {:.3} s, raw read {:.3} s",
        median(&save),
        median(&write),
        median(&write) / median(&save) * 100.0,
        median(&load),
        median(&read)
    ));
    report.detail(format!(
        "(c) seconds: save {}; raw write {}; load {}; full checkpoint load {}; raw read {}; from the \
         disk: load {}, full checkpoint load {}, raw read {}",
        list(&save),
        list(&write),
        list(&load),
        list(&full_load),
        list(&read),
        list(&load_cold),
        list(&full_cold),
        list(&read_cold)
    ));
    Ok(())
}

/// Writes a full checkpoint of `model` (with an optimizer that has not stepped, so the file is the
/// weights and a few bytes more) to `path`.
fn save_full(model: &Mlp, path: &Path) -> anyhow::Result<()> {
    let config: Config = Config::load(None, &[])?;
    let identity = Identity::with_experiment_id(&config, "0000000000000000", "")?;
    let checkpoint = Checkpoint {
        config: config.to_value(),
        state: State::default(),
        results: Results::new(),
        identity,
        scheduler: None,
        runtime: None,
    };
    save_checkpoint(path, model, &optimizer(), &checkpoint)?;
    Ok(())
}

/// Drops `path`'s pages from the page cache (they are clean: both sides fsync), so that the next read
/// comes from the disk.
#[cfg(target_os = "linux")]
fn evict(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: `posix_fadvise` only reads its arguments; the descriptor is open for the whole call.
    #[allow(unsafe_code)]
    let status = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    anyhow::ensure!(status == 0, "posix_fadvise on {}: error {status}", path.display());
    Ok(())
}

/// Elsewhere the page cache is left as it is, and both loads read what it holds.
#[cfg(not(target_os = "linux"))]
fn evict(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// An optimizer that has not stepped: it holds no state, whichever it is.
fn optimizer() -> ModuleOptimizer {
    SgdConfig::new().init()
}
