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
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    events::{ConsumerConfig, EventsConfig, metadata::subjects, outbox::Outbox},
    proto::{
        catalog::catalog_service_client::CatalogServiceClient,
        inventory::inventory_service_client::InventoryServiceClient,
        orders::order_service_server::OrderServiceServer,
    },
    server::{Listeners, ServiceHost},
};

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

/// How the consumer group takes the flow's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// The durable group's name: the service's, `orders`. Not configurable from the
    /// environment; tests on one shared JetStream give each case a group of its own.
    pub group: String,
    /// `CONSUMER_ACK_WAIT_SECS` (30): how long a delivery may go unanswered before it is
    /// delivered again. A handler is one short transaction, so this only matters after a
    /// crash.
    pub ack_wait: Duration,
    /// `CONSUMER_MAX_ATTEMPTS` (10): attempts before an event that keeps failing (the
    /// database out of reach) is dead-lettered.
    pub max_attempts: u32,
    /// `CONSUMER_BACKOFF_MS` (`1000,2000,5000,10000,30000`): the pause before each further
    /// attempt, the last one repeating; with the defaults an event is tried for about three
    /// minutes, enough for a database failover, before it waits for an operator.
    pub backoff: Vec<Duration>,
}

impl ConsumerSettings {
    pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
    pub const DEFAULT_BACKOFF_MS: [u64; 5] = [1000, 2000, 5000, 10_000, 30_000];

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ack_wait =
            env.seconds_or("CONSUMER_ACK_WAIT_SECS", Self::DEFAULT_ACK_WAIT.as_secs())?;
        let max_attempts = env.parse_or(
            "CONSUMER_MAX_ATTEMPTS",
            Self::DEFAULT_MAX_ATTEMPTS,
            "a whole number of attempts, 1 or more",
        )?;
        let backoff = match env.get("CONSUMER_BACKOFF_MS") {
            None => Self::DEFAULT_BACKOFF_MS.map(Duration::from_millis).to_vec(),
            Some(list) => list
                .split(',')
                .map(|ms| ms.trim().parse().map(Duration::from_millis))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ConfigError {
                    variable: "CONSUMER_BACKOFF_MS",
                    value: list.to_owned(),
                    expected: "comma-separated whole numbers of milliseconds".to_owned(),
                })?,
        };
        let invalid = |variable, value: String, expected: &str| ConfigError {
            variable,
            value,
            expected: expected.to_owned(),
        };
        if ack_wait.is_zero() {
            return Err(invalid(
                "CONSUMER_ACK_WAIT_SECS",
                "0".to_owned(),
                "a whole number of seconds, 1 or more",
            ));
        }
        if max_attempts == 0 {
            return Err(invalid(
                "CONSUMER_MAX_ATTEMPTS",
                "0".to_owned(),
                "a whole number of attempts, 1 or more",
            ));
        }
        Ok(Self {
            group: SERVICE.name.to_owned(),
            ack_wait,
            max_attempts,
            backoff,
        })
    }

    fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            name: self.group.clone(),
            subjects: SUBJECTS.map(str::to_owned).to_vec(),
            ack_wait: self.ack_wait,
            max_attempts: self.max_attempts,
            backoff: self.backoff.clone(),
        }
    }
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
    let relay_bus = bus.clone();
    let relay = outbox.clone();
    host.add_service(OrderServiceServer::new(orders))
        .run_beside("outbox relay", move |stopping| {
            relay.relay(relay_bus, stopping)
        })
        .run_beside("event consumer", move |stopping| {
            consumer::run(bus, consumer_config, handler, stopping)
        })
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
