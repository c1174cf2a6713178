//! The fulfillment service: creates an order's shipment when its ShipmentRequested
//! arrives, ships it once the order's PaymentSucceeded has arrived too (whichever comes
//! first), through a simulated carrier (`carrier`), and cancels it if the order fails
//! first; publishes ShipmentCreated or ShipmentFailed through its outbox. Its gRPC API only
//! shows the shipments, never their addresses.

#![forbid(unsafe_code)]

mod carrier;
mod error;
mod handlers;
mod metrics;
mod service;
pub mod store;
mod validate;

use std::time::Duration;

use meshmart::{
    config::{ConfigError, Env, FlowConfig, ServerConfig, ServiceInfo},
    events::{ConsumerDefaults, metadata::subjects},
    proto::fulfillment::fulfillment_service_server::FulfillmentServiceServer,
    server::{FlowHost, Listeners, Signal},
};

pub use error::{Error, Result};
pub use service::Fulfillment;
pub use store::Store;

use crate::handlers::Handlers;

/// The fulfillment service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("fulfillment", 50055);

/// What the consumer group `fulfillment` reads.
pub const SUBJECTS: [&str; 3] = [
    subjects::SHIPMENT_REQUESTED,
    subjects::PAYMENT_SUCCEEDED,
    subjects::ORDER_FAILED,
];

/// The group's defaults. Its handlers only touch its own database, so what fails is the
/// database being busy or away: retried soon (100 ms, 1 s), then less often (5 s, 15 s),
/// and after five attempts left to an operator as a dead letter.
pub fn consumer_defaults() -> ConsumerDefaults {
    ConsumerDefaults {
        ack_wait: Duration::from_secs(30),
        max_attempts: 5,
        backoff: [100, 1_000, 5_000, 15_000]
            .map(Duration::from_millis)
            .to_vec(),
    }
}

/// Everything fulfillment is configured with: the flow's shared part, nothing of its own.
#[derive(Debug, Clone)]
pub struct Config {
    pub flow: FlowConfig,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        let flow = FlowConfig::from_env(env, server, &SUBJECTS, consumer_defaults())?;
        Ok(Self { flow })
    }
}

/// Opens the database and the event bus, and serves fulfillment on `listeners`, consuming
/// its group and relaying its outbox beside, until `shutdown` completes.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.flow.database).await?;
    let mut flow = FlowHost::open(&config.flow, store.pools()).await?;
    let handlers = Handlers {
        store: store.clone(),
        outbox: flow.outbox.clone(),
        metrics: metrics::Metrics::register(flow.registry()),
    };
    flow.relay_and_consume(handlers)
        .add_service(FulfillmentServiceServer::new(Fulfillment::new(store)))
        .serve(listeners, shutdown)
        .await
}
