//! Experiment management over the run directories that the runner writes, for any app: listing,
//! filtering, sorting and grouping runs ([`scan`], [`Query`], [`runs::select`], [`runs::listing`]),
//! comparing them ([`compare`]), the HTML report ([`report`]), and planning and running a sweep
//! ([`sweep`], [`trials`]). The command line only parses and prints.

pub mod compare;
pub mod filter;
mod render;
pub mod report;
pub mod runs;
pub mod scan;
mod svg;
pub mod sweep;
pub mod trials;

pub use filter::Filter;
pub use runs::{Format, Query};
pub use scan::{Run, scan};
