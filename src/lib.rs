//! meshmart: the contracts every service speaks, generated from `proto/`, and the runtime
//! every service shares (configuration, telemetry, health, reflection, metrics, context
//! propagation and graceful shutdown), so that each service sets all of it up the same way.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod context;
pub mod customer;
pub mod db;
pub mod demo;
mod error;
pub mod events;
pub mod fault;
pub mod health;
pub mod metrics;
pub mod page_token;
pub mod probe;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validation;

pub use error::{Error, Result};
