//! meshmart's load generator, as a library so that tests drive it in-process.
//!
//! - [`run::execute`] waits for every service to report SERVING, then sends a weighted mix
//!   of [`scenario::Scenario`]s, closed loop (N callers) or open loop (a fixed rate,
//!   latency counted from each call's due time so queueing is not hidden), for a bounded
//!   time or number of calls, or in reporting windows until stopped;
//! - [`stats`] keeps latencies in HdrHistograms and errors by gRPC code;
//! - [`flow`] times the order flow that `place-order` starts, from the orders' histories;
//! - [`startup`] times a service from process start to SERVING.

#![forbid(unsafe_code)]

pub mod client;
pub mod flow;
pub mod options;
pub mod run;
pub mod scenario;
pub mod startup;
pub mod stats;

pub use options::{Load, LoadArgs, Options};
pub use run::execute;
pub use stats::Report;

/// Why a run could not start or finish. Failed calls are not errors here: they are counted
/// in the report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: &'static str,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{target}: {source}")]
    NotServing {
        target: &'static str,
        #[source]
        source: meshmart::probe::ProbeError,
    },
    #[error("cannot list products to ask for: {0}")]
    Discover(tonic::Status),
    #[error("the catalog has no products to ask for")]
    NoProducts,
    #[error("cannot restock the demo products for place-order: {0}")]
    Restock(tonic::Status),
    #[error("stopped before the load started")]
    Stopped,
    #[error("a caller failed: {0}")]
    Caller(String),
    #[error("cannot make a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
}
