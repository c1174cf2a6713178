//! The inventory service: stock per product, and reservations that hold stock for an order.
//!
//! Every mutation is idempotent, so the mesh may retry any of them: `SetStock` and
//! `AdjustStock` are keyed by `request_id`, a reservation by the caller's `reservation_id`.
//! Reservations nobody commits or releases give their stock back after a time-to-live.

#![forbid(unsafe_code)]

mod error;
mod metrics;
mod service;
pub mod store;
mod validate;

use std::time::Duration;

use meshmart::{
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    proto::inventory::inventory_service_server::InventoryServiceServer,
    server::{Listeners, ServiceHost, Signal},
};

pub use error::{Error, Result};
pub use service::Inventory;
pub use store::Store;

/// The request checks, for the fuzz targets in `fuzz/` (feature `fuzzing`): they are the
/// crate's own, and this is no API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use meshmart::proto::inventory::{
        AdjustStockRequest, BatchGetStockRequest, ReserveStockRequest, SetStockRequest,
    };
    use tonic::Status;

    use crate::validate;

    pub const MAX_BATCH: usize = validate::MAX_BATCH;
    pub const MAX_ITEMS: usize = validate::MAX_ITEMS;
    pub const MAX_QUANTITY: i64 = validate::MAX_QUANTITY;

    pub fn product_id(id: &str) -> Result<(), Status> {
        validate::product_id("product_id", id)
    }
    pub fn reservation_id(id: &str) -> Result<(), Status> {
        validate::reservation_id(id)
    }
    pub fn batch_get(request: &BatchGetStockRequest) -> Result<(), Status> {
        validate::batch_get(request)
    }
    pub fn set_stock(request: &SetStockRequest) -> Result<(), Status> {
        validate::set_stock(request)
    }
    pub fn adjust_stock(request: &AdjustStockRequest) -> Result<(), Status> {
        validate::adjust_stock(request)
    }
    pub fn reserve(request: &ReserveStockRequest) -> Result<Vec<(String, i64)>, Status> {
        validate::reserve(request)
    }
}

/// The inventory service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("inventory", 50052);

/// Everything the inventory service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// How long a reservation holds stock unless committed or released:
    /// `RESERVATION_TTL_SECS`.
    pub reservation_ttl: Duration,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        let ttl = env.seconds_or(
            "RESERVATION_TTL_SECS",
            store::DEFAULT_RESERVATION_TTL.as_secs(),
        )?;
        if ttl.is_zero() {
            return Err(ConfigError {
                variable: "RESERVATION_TTL_SECS",
                value: "0".to_owned(),
                expected: "a whole number of seconds, 1 or more".to_owned(),
            });
        }
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            reservation_ttl: ttl,
            server,
        })
    }
}

/// How often expired reservations are looked for: often enough that stock comes back soon
/// after its time, and never more than every second.
fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Opens the database and serves inventory on `listeners` until `shutdown` completes.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.database)
        .await?
        .with_reservation_ttl(config.reservation_ttl);
    let mut host = ServiceHost::new(&config.server);
    let metrics = metrics::Metrics::register(host.registry());
    let interval = sweep_interval(config.reservation_ttl);
    let (sampled, sampling) = (store.clone(), metrics.clone());
    // Every replica sweeps; the guarded state change lets each reservation expire once.
    host.add_service(InventoryServiceServer::new(Inventory::new(
        store.clone(),
        metrics.clone(),
    )))
    .run_beside("reservation sweeper", move |stopping| {
        sweep(store, metrics, interval, stopping)
    })
    .run_beside("active reservations", move |stopping| {
        sampling.sample_active(sampled, stopping)
    })
    .serve(listeners, shutdown)
    .await
}

/// Gives back the stock of expired reservations, every `interval`, until `stopping`.
async fn sweep(store: Store, metrics: metrics::Metrics, interval: Duration, stopping: Signal) {
    let mut sweeps = meshmart::shutdown::Periodic::new(interval, stopping);
    while sweeps.next().await {
        match store.expire_reservations().await {
            Ok(0) => {}
            Ok(expired) => {
                metrics.reservations_expired(expired);
                tracing::info!(expired, "gave back the stock of expired reservations");
            }
            Err(error) => tracing::warn!(%error, "cannot expire reservations; trying again later"),
        }
    }
}
