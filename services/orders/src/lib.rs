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
    config::{ConfigError, Env, FlowConfig, ServerConfig, ServiceInfo},
    events::{ConsumerDefaults, metadata::subjects},
    proto::{
        catalog::catalog_service_client::CatalogServiceClient,
        inventory::inventory_service_client::InventoryServiceClient,
        orders::order_service_server::OrderServiceServer,
    },
    server::{FlowHost, Listeners, Signal},
};

pub use error::{Error, Result};
pub use order_id::order_id;
pub use service::Orders;
pub use store::Store;

/// The orders service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("orders", 50053);

/// What the consumer group reads: how the order moves on. `payments.declined` is not among
/// them: a decline is no state of the order; the orchestrator's OrderFailed that follows
/// carries the reason.
pub const SUBJECTS: [&str; 4] = [
    subjects::PAYMENT_SUCCEEDED,
    subjects::SHIPMENT_CREATED,
    subjects::ORDER_COMPLETED,
    subjects::ORDER_FAILED,
];

/// The consumer group's defaults. A handler is one short transaction, so `ack_wait` (30 s)
/// only matters after a crash; what fails is the database out of reach, so an event is
/// tried 10 times over about three minutes (1, 2, 5, 10, then every 30 s), enough for a
/// database failover, before it waits for an operator.
pub fn consumer_defaults() -> ConsumerDefaults {
    ConsumerDefaults {
        ack_wait: Duration::from_secs(30),
        max_attempts: 10,
        backoff: [1000, 2000, 5000, 10_000, 30_000]
            .map(Duration::from_millis)
            .to_vec(),
    }
}

/// Everything the orders service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub flow: FlowConfig,
    /// Where the catalog service is: `CATALOG_ADDR`.
    pub catalog_addr: String,
    /// Where the inventory service is: `INVENTORY_ADDR`.
    pub inventory_addr: String,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            flow: FlowConfig::from_env(env, server, &SUBJECTS, consumer_defaults())?,
            catalog_addr: env.endpoint_or("CATALOG_ADDR", "http://127.0.0.1:50051")?,
            inventory_addr: env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")?,
        })
    }
}

/// Opens the database and the event bus, and serves orders on `listeners` until `shutdown`
/// completes, with the outbox relay and the consumer group beside it.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.flow.database).await?;
    let mut flow = FlowHost::open(&config.flow, store.pools()).await?;
    let catalog = CatalogServiceClient::new(meshmart::client::connect_lazy(&config.catalog_addr)?);
    let inventory =
        InventoryServiceClient::new(meshmart::client::connect_lazy(&config.inventory_addr)?);
    let metrics = metrics::Metrics::register(flow.registry());
    let changes = watch::Changes::new();
    let handler = consumer::Handler::new(
        store.clone(),
        flow.outbox.clone(),
        changes.clone(),
        metrics.clone(),
        flow.consumer.name.clone(),
    );
    let orders = Orders::new(
        store,
        flow.outbox.clone(),
        downstream::Downstream::new(catalog, inventory),
        changes.clone(),
        metrics,
    );
    flow.relay_and_consume(handler)
        .add_service(OrderServiceServer::new(orders))
        // Watch streams end when the drain begins, as health watches do, so that none holds
        // the drain up to its grace period; their clients watch again elsewhere.
        .run_beside("watch streams", move |stopping| async move {
            stopping.await;
            changes.drain();
        })
        .serve(listeners, shutdown)
        .await
}
