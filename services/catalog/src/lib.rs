//! The catalog service: products, each returned with its live stock, which the catalog
//! reads from the inventory service in one batched call per request.

#![forbid(unsafe_code)]

mod cache;
mod error;
mod metrics;
mod service;
pub mod store;
mod validate;

use meshmart::{
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    proto::{
        catalog::catalog_service_server::CatalogServiceServer,
        inventory::inventory_service_client::InventoryServiceClient,
    },
    server::{Listeners, ServiceHost, Signal},
};

pub use error::{Error, Result};
pub use service::Catalog;
pub use store::Store;

/// The request checks and page tokens, for the fuzz targets in `fuzz/` (feature `fuzzing`):
/// they are the crate's own, and this is no API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use meshmart::proto::catalog::{
        CreateProductRequest, ListProductsRequest, UpdateProductRequest,
    };
    use tonic::Status;

    use crate::{store::ProductChanges, validate, validate::PAGE_TOKENS};

    pub const DEFAULT_PAGE_SIZE: usize = meshmart::page_token::DEFAULT_PAGE_SIZE;
    pub const MAX_PAGE_SIZE: usize = meshmart::page_token::MAX_PAGE_SIZE;
    pub const MAX_MASK_PATHS: usize = validate::MAX_MASK_PATHS;

    pub fn product_name(name: &str) -> Result<String, Status> {
        validate::product_name("name", name)
    }
    pub fn list(request: &ListProductsRequest) -> Result<(Option<String>, usize), Status> {
        validate::list(request)
    }
    pub fn create(request: &CreateProductRequest) -> Result<(String, ProductChanges), Status> {
        validate::create(request)
    }
    pub fn update(request: &UpdateProductRequest) -> Result<(String, ProductChanges), Status> {
        validate::update(request)
    }
    pub fn encode_page_token(last_product_id: &str) -> String {
        PAGE_TOKENS.encode(last_product_id)
    }
    pub fn decode_page_token(token: &str) -> Option<String> {
        PAGE_TOKENS.decode(token)
    }
    pub const MAX_PAGE_TOKEN_LEN: usize = PAGE_TOKENS.max_len();
}

/// The catalog service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("catalog", 50051);

/// Everything the catalog service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// Where the inventory service is: `INVENTORY_ADDR`.
    pub inventory_addr: String,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            inventory_addr: env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")?,
            server,
        })
    }
}

/// Opens the database and serves the catalog on `listeners` until `shutdown` completes.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.database).await?;
    let inventory =
        InventoryServiceClient::new(meshmart::client::connect_lazy(&config.inventory_addr)?);
    let mut host = ServiceHost::new(&config.server);
    let metrics = metrics::Metrics::register(host.registry());
    host.add_service(CatalogServiceServer::new(Catalog::new(
        store, inventory, metrics,
    )))
    .serve(listeners, shutdown)
    .await
}
