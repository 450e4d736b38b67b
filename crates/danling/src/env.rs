//! Every environment variable danling reads, in one place.
//!
//! | variable | effect |
//! | --- | --- |
//! | `DANLING_LOG` | log level: `error`, `warn`, `info` (default), `debug` or `trace` |

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
