//! The inventory service: stock per product, and reservations that hold stock for an order.
//!
//! Every mutation is idempotent, so the mesh may retry any of them: `SetStock` is absolute,
//! `AdjustStock` is keyed by `request_id`, and a reservation by the caller's `reservation_id`.

#![forbid(unsafe_code)]

mod error;
mod metrics;
mod service;
pub mod store;
mod validate;

use meshmart::{
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    proto::inventory::inventory_service_server::InventoryServiceServer,
    server::{Listeners, ServiceHost},
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
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "inventory",
    grpc_port: 50052,
};

/// Everything the inventory service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            server,
        })
    }
}

/// Opens the database and serves inventory on `listeners` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let store = Store::connect(&config.database).await?;
    let mut registry = meshmart::metrics::registry(SERVICE.name, &config.server.version);
    let metrics = metrics::Metrics::register(&mut registry);
    ServiceHost::new(&config.server, registry)
        .add_service(InventoryServiceServer::new(Inventory::new(store, metrics)))
        .serve(listeners, shutdown)
        .await
}
