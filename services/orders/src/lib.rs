//! The orders service: places orders and follows them through the order flow.
//!
//! `CreateOrder` prices each line with the catalog, holds the stock with inventory (the
//! order id is the reservation id), and stores the order PENDING together with the events
//! that start the flow (OrderCreated, PaymentRequested, ShipmentRequested) in one
//! transaction; the outbox relay publishes them. The consumer group `orders` then moves the
//! order forward as payments, fulfillment and the orchestrator report (PAID, SHIPPED,
//! COMPLETED, FAILED), and `WatchOrder` streams each transition.

#![forbid(unsafe_code)]

mod consumer;
mod consumer_settings;
mod downstream;
mod error;
mod metrics;
mod order_events;
mod order_id;
mod render;
mod service;
pub mod store;
mod validate;
mod watch;

use std::time::Duration;

use meshmart::{
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    events::{EventsConfig, metadata::subjects, outbox::Outbox},
    proto::{
        catalog::catalog_service_client::CatalogServiceClient,
        inventory::inventory_service_client::InventoryServiceClient,
        orders::order_service_server::OrderServiceServer,
    },
    server::{Listeners, ServiceHost},
};

pub use consumer_settings::ConsumerSettings;
pub use error::{Error, Result};
pub use order_id::order_id;
pub use service::Orders;
pub use store::Store;

/// The orders service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "orders",
    grpc_port: 50053,
};

/// What the consumer group reads: how the order moves on. `payments.declined` is not among
/// them: a decline is no state of the order; the orchestrator's OrderFailed that follows
/// carries the reason.
pub const SUBJECTS: [&str; 4] = [
    subjects::PAYMENT_SUCCEEDED,
    subjects::SHIPMENT_CREATED,
    subjects::ORDER_COMPLETED,
    subjects::ORDER_FAILED,
];

/// Everything the orders service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// The event broker: `NATS_URL`, or the embedded log in `DATA_DIR`.
    pub events: EventsConfig,
    /// Where the catalog service is: `CATALOG_ADDR`.
    pub catalog_addr: String,
    /// Where the inventory service is: `INVENTORY_ADDR`.
    pub inventory_addr: String,
    pub consumer: ConsumerSettings,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            events: EventsConfig::from_env(env)?,
            catalog_addr: env.endpoint_or("CATALOG_ADDR", "http://127.0.0.1:50051")?,
            inventory_addr: env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")?,
            consumer: ConsumerSettings::from_env(env)?,
            server,
        })
    }
}

/// How often the outbox lag is sampled for the metrics.
const OUTBOX_LAG_SAMPLE: Duration = Duration::from_secs(5);

/// Opens the database and the event bus, and serves orders on `listeners` until `shutdown`
/// completes, with the outbox relay and the consumer group beside it.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let consumer_config = config.consumer.consumer_config();
    consumer_config.validate()?;
    let store = Store::connect(&config.database).await?;
    let bus = meshmart::events::connect(&config.events).await?;
    let outbox = Outbox::new(store.pools().clone());
    let catalog = CatalogServiceClient::new(meshmart::client::connect_lazy(&config.catalog_addr)?);
    let inventory =
        InventoryServiceClient::new(meshmart::client::connect_lazy(&config.inventory_addr)?);
    let mut host = ServiceHost::new(&config.server);
    let metrics = metrics::Metrics::register(host.registry());
    let changes = watch::Changes::new();
    let handler = consumer::Handler::new(
        store.clone(),
        outbox.clone(),
        changes.clone(),
        metrics.clone(),
        consumer_config.name.clone(),
    );
    let orders = Orders::new(
        store,
        outbox.clone(),
        downstream::Downstream::new(catalog, inventory),
        changes.clone(),
        metrics.clone(),
    );
    host.add_service(OrderServiceServer::new(orders))
        .relay_beside(outbox.clone(), bus.clone())
        .consume_beside(bus, consumer_config, handler)
        .run_beside("outbox lag", move |stopping| {
            metrics.sample_outbox_lag(outbox, OUTBOX_LAG_SAMPLE, stopping)
        })
        // Watch streams end when the drain begins, as health watches do, so that none holds
        // the drain up to its grace period; their clients watch again elsewhere.
        .run_beside("watch streams", move |stopping| async move {
            stopping.await;
            changes.drain();
        })
        .serve(listeners, shutdown)
        .await
}
