//! The orchestrator: one saga per order, moved by the order flow's events.
//!
//! When an order is paid and shipped it commits the order's inventory reservation and
//! publishes OrderCompleted. On a PaymentDeclined, a final PaymentFailed or a
//! ShipmentFailed it releases the reservation, publishes RefundRequested if the order was
//! charged (also when the charge is reported after the order failed), and OrderFailed with
//! the reason. It also serves the event bus's dead letters (`DeadLetterService`, behind
//! `meshctl dlq`).

#![forbid(unsafe_code)]

mod consume;
mod dead_letters;
mod error;
mod metrics;
pub mod saga;
mod service;
pub mod store;
mod validate;

use meshmart::{
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    events::{ConsumerConfig, EventsConfig, outbox::Outbox},
    proto::{
        inventory::inventory_service_client::InventoryServiceClient,
        orchestrator::{
            dead_letter_service_server::DeadLetterServiceServer,
            orchestrator_service_server::OrchestratorServiceServer,
        },
    },
    server::{Listeners, ServiceHost},
};

pub use consume::SUBJECTS;
pub use dead_letters::DeadLetters;
pub use error::{Error, Result};
pub use service::Orchestrator;
pub use store::Store;

/// The orchestrator's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "orchestrator",
    grpc_port: 50057,
};

/// Everything the orchestrator is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// The event broker: `NATS_URL`, or the embedded log in `DATA_DIR`.
    pub events: EventsConfig,
    /// The consumer group `orchestrator` and how hard it tries
    /// ([`ConsumerConfig::with_defaults`]; not configurable from the environment).
    pub consumer: ConsumerConfig,
    /// Where the inventory service is: `INVENTORY_ADDR`.
    pub inventory_addr: String,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            events: EventsConfig::from_env(env)?,
            consumer: ConsumerConfig::with_defaults(SERVICE.name, &SUBJECTS),
            inventory_addr: env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")?,
            server,
        })
    }
}

/// Opens the database and the event bus, and serves the sagas and the dead letters on
/// `listeners`, with the consumer group, the outbox relay and the metrics sampler beside
/// them, until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let store = Store::connect(&config.database).await?;
    let bus = meshmart::events::connect(&config.events).await?;
    let inventory =
        InventoryServiceClient::new(meshmart::client::connect_lazy(&config.inventory_addr)?);
    let outbox = Outbox::new(store.pools().clone());
    let mut host = ServiceHost::new(&config.server);
    let metrics = metrics::Metrics::register(host.registry());
    let handler = consume::Handler {
        group: config.consumer.name.clone(),
        store: store.clone(),
        outbox: outbox.clone(),
        inventory,
    };
    let (relay_bus, sample_bus) = (bus.clone(), bus.clone());
    let sampled = store.clone();
    host.add_service(OrchestratorServiceServer::new(Orchestrator::new(store)))
        .add_service(DeadLetterServiceServer::new(DeadLetters::new(bus.clone())))
        .consume_beside(bus, config.consumer, handler)
        .relay_beside(outbox, relay_bus)
        .run_beside("metrics sampler", move |stopping| {
            metrics.sample(sampled, sample_bus, stopping)
        })
        .serve(listeners, shutdown)
        .await
}
