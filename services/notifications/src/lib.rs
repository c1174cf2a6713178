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
    config::{ConfigError, Env, FlowConfig, ServerConfig, ServiceInfo},
    events::ConsumerDefaults,
    proto::notifications::notification_service_server::NotificationServiceServer,
    server::{FlowHost, Listeners, Signal},
};

pub use consume::SUBJECTS;
pub use error::{Error, Result};
pub use service::Notifications;
pub use store::Store;

/// The notifications service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("notifications", 50056);

/// Everything notifications is configured with: the flow's shared part, its group trying
/// as the shop's defaults say (a message can wait out a dependency's two-minute outage).
#[derive(Debug, Clone)]
pub struct Config {
    pub flow: FlowConfig,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        let flow = FlowConfig::from_env(env, server, &SUBJECTS, ConsumerDefaults::shop())?;
        Ok(Self { flow })
    }
}

/// Opens the database and the event bus, and serves notifications on `listeners`, with
/// the consumer group beside it, until `shutdown` completes.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.flow.database).await?;
    let mut flow = FlowHost::open(&config.flow, store.pools()).await?;
    let handler = consume::Handler {
        group: flow.consumer.name.clone(),
        // Notifications publishes nothing; apply_once still takes the outbox it would
        // write to, so no relay runs.
        outbox: flow.outbox.clone(),
        store: store.clone(),
        metrics: metrics::Metrics::register(flow.registry()),
    };
    flow.consume(handler)
        .add_service(NotificationServiceServer::new(Notifications::new(store)))
        .serve(listeners, shutdown)
        .await
}
