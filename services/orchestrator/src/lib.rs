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
    config::{ConfigError, Env, FlowConfig, ServerConfig, ServiceInfo},
    events::ConsumerDefaults,
    proto::{
        inventory::inventory_service_client::InventoryServiceClient,
        orchestrator::{
            dead_letter_service_server::DeadLetterServiceServer,
            orchestrator_service_server::OrchestratorServiceServer,
        },
    },
    server::{FlowHost, Listeners, Signal},
};

pub use consume::SUBJECTS;
pub use dead_letters::DeadLetters;
pub use error::{Error, Result};
pub use service::Orchestrator;
pub use store::Store;

/// The orchestrator's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("orchestrator", 50057);

/// Everything the orchestrator is configured with; its group tries as the shop's defaults
/// say, so an inventory down for about two minutes is waited out.
#[derive(Debug, Clone)]
pub struct Config {
    pub flow: FlowConfig,
    /// Where the inventory service is: `INVENTORY_ADDR`.
    pub inventory_addr: String,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            flow: FlowConfig::from_env(env, server, &SUBJECTS, ConsumerDefaults::shop())?,
            inventory_addr: env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")?,
        })
    }
}

/// Opens the database and the event bus, and serves the sagas and the dead letters on
/// `listeners`, with the consumer group, the outbox relay and the metrics sampler beside
/// them, until `shutdown` completes.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.flow.database).await?;
    let mut flow = FlowHost::open(&config.flow, store.pools()).await?;
    let inventory =
        InventoryServiceClient::new(meshmart::client::connect_lazy(&config.inventory_addr)?);
    let metrics = metrics::Metrics::register(flow.registry());
    let handler = consume::Handler {
        group: flow.consumer.name.clone(),
        store: store.clone(),
        outbox: flow.outbox.clone(),
        inventory,
    };
    let (letters_bus, sample_bus) = (flow.bus.clone(), flow.bus.clone());
    let sampled = store.clone();
    flow.relay_and_consume(handler)
        .add_service(OrchestratorServiceServer::new(Orchestrator::new(store)))
        .add_service(DeadLetterServiceServer::new(DeadLetters::new(letters_bus)))
        .run_beside("metrics sampler", move |stopping| {
            metrics.sample(sampled, sample_bus, stopping)
        })
        .serve(listeners, shutdown)
        .await
}
