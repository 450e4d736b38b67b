//! Experiment management over the run directories that the runner writes, for any app: listing,
//! filtering, sorting and grouping runs ([`scan`], then [`runs::list`] of a [`Query`]), comparing
//! them ([`compare::compare`]), the HTML report ([`report::report`]), and planning and running a
//! sweep ([`Sweep`]). The command line only parses and prints.
//!
//! ```no_run
//! use danling::manage::{Filter, Format, Query, runs, scan};
//!
//! let all = scan("experiments".as_ref())?;
//! let query = Query {
//!     filter: Some(Filter::parse("status = finished and optim.lr < 0.01")?),
//!     sort: Some(("val.accuracy".into(), true)),
//!     ..Query::default()
//! };
//! print!("{}", runs::list(&all, &query).render(Format::Markdown, None));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod asha;
pub mod compare;
pub mod filter;
pub mod ladder;
pub mod record;
mod render;
pub mod report;
pub mod runs;
pub mod scan;
pub mod space;
mod svg;
pub mod sweep;
pub mod tpe;
pub mod trials;

pub use filter::Filter;
pub use runs::{Format, Query};
pub use scan::{Run, scan};
pub use trials::{Search, Sweep};
