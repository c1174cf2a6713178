//! The notifications service: one message to the customer for each step of their order
//! they would want to hear about, written as the order flow's events arrive, and read
//! back by the customer only (`x-meshmart-customer-id`).
//!
//! | event | notification |
//! |---|---|
//! | `orders.created` | ORDER_PLACED (and whose the order is) |
//! | `payments.declined` | PAYMENT_DECLINED, with the reason |
//! | `shipments.created` | ORDER_SHIPPED, with the tracking number |
//! | `orders.completed` | ORDER_COMPLETED |
//! | `orders.failed` | ORDER_FAILED, with the reason |
//! | `payments.refunded` | REFUND_ISSUED, with the amount |

#![forbid(unsafe_code)]

mod consume;
mod error;
mod messages;
mod metrics;
mod service;
pub mod store;
mod validate;

use meshmart::{
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    events::{ConsumerConfig, EventsConfig, outbox::Outbox},
    proto::notifications::notification_service_server::NotificationServiceServer,
    server::{Listeners, ServiceHost},
};

pub use consume::SUBJECTS;
pub use error::{Error, Result};
pub use service::Notifications;
pub use store::Store;

/// The notifications service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "notifications",
    grpc_port: 50056,
};

/// Everything the notifications service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// The event broker: `NATS_URL`, or the embedded log in `DATA_DIR`.
    pub events: EventsConfig,
    /// The consumer group `notifications` and how hard it tries
    /// ([`ConsumerConfig::with_defaults`]; not configurable from the environment).
    pub consumer: ConsumerConfig,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            events: EventsConfig::from_env(env)?,
            consumer: ConsumerConfig::with_defaults(SERVICE.name, &SUBJECTS),
            server,
        })
    }
}

/// Opens the database and the event bus, and serves notifications on `listeners`, with
/// the consumer group beside it, until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let store = Store::connect(&config.database).await?;
    let bus = meshmart::events::connect(&config.events).await?;
    let mut host = ServiceHost::new(&config.server);
    let handler = consume::Handler {
        group: config.consumer.name.clone(),
        // Notifications publishes nothing; apply_once still takes the outbox it would
        // write to, so no relay runs.
        outbox: Outbox::new(store.pools().clone()),
        store: store.clone(),
        metrics: metrics::Metrics::register(host.registry()),
    };
    host.add_service(NotificationServiceServer::new(Notifications::new(store)))
        .consume_beside(bus, config.consumer, handler)
        .serve(listeners, shutdown)
        .await
}
