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
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    events::{ConsumerConfig, EventsConfig, metadata::subjects, outbox::Outbox},
    proto::fulfillment::fulfillment_service_server::FulfillmentServiceServer,
    server::{Listeners, ServiceHost},
};

pub use error::{Error, Result};
pub use service::Fulfillment;
pub use store::Store;

use crate::handlers::Handlers;

/// The fulfillment service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "fulfillment",
    grpc_port: 50055,
};

/// Everything fulfillment is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub events: EventsConfig,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            events: EventsConfig::from_env(env)?,
            server,
        })
    }
}

/// The consumer group `fulfillment`. Its handlers only touch its own database, so what
/// fails is the database being busy or away: retried soon, then less often, and after
/// five attempts left to an operator as a dead letter.
pub fn consumer() -> ConsumerConfig {
    ConsumerConfig {
        name: handlers::GROUP.to_owned(),
        subjects: [
            subjects::SHIPMENT_REQUESTED,
            subjects::PAYMENT_SUCCEEDED,
            subjects::ORDER_FAILED,
        ]
        .map(str::to_owned)
        .to_vec(),
        ack_wait: Duration::from_secs(30),
        max_attempts: 5,
        backoff: [100, 1_000, 5_000, 15_000]
            .map(Duration::from_millis)
            .to_vec(),
    }
}

/// Opens the database and the event bus, and serves fulfillment on `listeners`, consuming
/// its group and relaying its outbox beside, until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let store = Store::connect(&config.database).await?;
    let bus = meshmart::events::connect(&config.events).await?;
    let outbox = Outbox::new(store.pools().clone());
    let mut host = ServiceHost::new(&config.server);
    let handlers = Handlers {
        store: store.clone(),
        outbox: outbox.clone(),
        metrics: metrics::Metrics::register(host.registry()),
    };
    host.add_service(FulfillmentServiceServer::new(Fulfillment::new(store)))
        .relay_beside(outbox, bus.clone())
        .consume_beside(bus, consumer(), handlers)
        .serve(listeners, shutdown)
        .await
}
