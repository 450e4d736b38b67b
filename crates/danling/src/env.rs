//! Every environment variable danling reads, in one place.
//!
//! | variable | effect |
//! | --- | --- |
//! | `DANLING_LOG` | log level: `error`, `warn`, `info` (default), `debug` or `trace` |
//! | `OMPI_COMM_WORLD_SIZE`, `PMI_SIZE`, `PMIX_RANK` | read, not set: a launcher (`mpiexec`, `srun`) started this process |
//! | `OMPI_COMM_WORLD_RANK`, `PMIX_RANK`, `PMI_RANK` | read, not set: this process's rank, for messages before MPI is set up |

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
