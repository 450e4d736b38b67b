//! Every environment variable danling reads, in one place.
//!
//! | variable | effect |
//! | --- | --- |
//! | `DANLING_LOG` | log level: `error`, `warn`, `info` (default), `debug` or `trace` |
//! | `OMPI_COMM_WORLD_SIZE`, `PMI_SIZE`, `PMIX_RANK` | read, not set: a launcher (`mpiexec`, `srun`) started this process |
//! | `OMPI_COMM_WORLD_RANK`, `PMIX_RANK`, `PMI_RANK` | read, not set: this process's rank, for messages before MPI is set up |
//! | `XDG_RUNTIME_DIR` | set where it is unset or relative, in builds with a wgpu-based device: see [`quiet_display_probing`] |

use tracing_subscriber::filter::LevelFilter;

/// The log level variable.
pub const DANLING_LOG: &str = "DANLING_LOG";

/// The level from `DANLING_LOG`, or `info` when it is unset or not a level.
pub fn log_level() -> LevelFilter {
    std::env::var(DANLING_LOG)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// The variables by which MPI launchers tell a process it is one rank of several: OpenMPI's
/// `mpiexec`, and PMI and PMIx (MPICH, Slurm's `srun`).
pub const LAUNCHER_VARIABLES: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// The first launcher variable set in this process's environment, if any.
pub fn launcher() -> Option<&'static str> {
    LAUNCHER_VARIABLES
        .into_iter()
        .find(|name| std::env::var_os(name).is_some())
}

/// This process's rank as its launcher gives it, before MPI is set up (for messages).
pub fn launcher_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

/// The variable libwayland-client needs before it looks for a display.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";

/// Where [`quiet_display_probing`] points `XDG_RUNTIME_DIR`: a path that can hold no display socket
/// (nothing can exist under a device file), so every connection attempt fails silently.
pub const NO_DISPLAY_DIR: &str = "/dev/null/danling-no-display";

/// Keeps the display libraries quiet. Mesa's Vulkan drivers load libwayland-client, which prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` each time a Vulkan instance
/// is created in a process without a desktop session (a container, a CI job, ssh): six times on one
/// `danling train --device wgpu`. Training never shows a window, so where the variable is unset or
/// not an absolute path, this points it at [`NO_DISPLAY_DIR`], and the library finds no display
/// without a word. Nothing to do in builds without a wgpu-based device.
///
/// Call it first thing in `main`, before any thread starts: it changes the process's environment.
pub fn quiet_display_probing() {
    if !cfg!(all(
        target_os = "linux",
        any(feature = "wgpu", feature = "vulkan")
    )) {
        return;
    }
    let absolute =
        std::env::var_os(XDG_RUNTIME_DIR).is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
    if !absolute {
        #[allow(unsafe_code)]
        // SAFETY: called at the start of `main`, while the process has one thread, so nothing reads
        // or writes the environment at the same time.
        unsafe {
            std::env::set_var(XDG_RUNTIME_DIR, NO_DISPLAY_DIR);
        }
    }
}
