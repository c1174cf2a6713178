//! The payments service: charges an order when its PaymentRequested arrives, through a
//! simulated card provider (`provider`), and refunds a charge when a RefundRequested does;
//! publishes each outcome through its outbox. Its gRPC API only shows what it did.
//!
//! Configuration, beside the shared server, database, event bus and `CONSUMER_*` variables
//! (whose `CONSUMER_MAX_ATTEMPTS` is also the attempts at charging an order: after the last,
//! charge FAILED and PaymentFailed with `will_retry` false):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAYMENT_PROVIDER_TIMEOUT_MS` | 2000 | how long one provider call may take before the attempt counts as a transient failure |

#![forbid(unsafe_code)]

mod error;
mod handlers;
mod metrics;
pub mod provider;
mod service;
pub mod store;
mod validate;

use std::time::Duration;

use meshmart::{
    config::{ConfigError, Env, FlowConfig, ServerConfig, ServiceInfo},
    events::{ConsumerDefaults, metadata::subjects},
    proto::payments::payment_service_server::PaymentServiceServer,
    server::{FlowHost, Listeners, Signal},
};

pub use error::{Error, Result};
pub use service::Payments;
pub use store::Store;

use crate::{handlers::Handlers, provider::Provider};

/// The payments service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo::new("payments", 50054);

/// What the consumer group `payments` reads.
pub const SUBJECTS: [&str; 2] = [subjects::PAYMENT_REQUESTED, subjects::REFUND_REQUESTED];

/// The group's defaults: its attempts are a charge's attempts (4, redelivered after 1, 2,
/// then 4 s), and a delivery may take a provider call and two commits before it is
/// answered, so `ack_wait` is 30 s beyond the provider's time limit.
pub fn consumer_defaults(provider_timeout: Duration) -> ConsumerDefaults {
    ConsumerDefaults {
        ack_wait: Duration::from_secs(30) + provider_timeout,
        max_attempts: 4,
        backoff: [1000, 2000, 4000].map(Duration::from_millis).to_vec(),
    }
}

/// Everything payments is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub flow: FlowConfig,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS`.
    pub provider_timeout: Duration,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        let provider_timeout = env
            .parse_or(
                "PAYMENT_PROVIDER_TIMEOUT_MS",
                u64::try_from(provider::DEFAULT_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
                "a whole number of milliseconds",
            )
            .map(Duration::from_millis)?;
        if provider_timeout.is_zero() {
            return Err(ConfigError {
                variable: "PAYMENT_PROVIDER_TIMEOUT_MS",
                value: "0".to_owned(),
                expected: "a whole number of milliseconds, 1 or more".to_owned(),
            });
        }
        let defaults = consumer_defaults(provider_timeout);
        Ok(Self {
            flow: FlowConfig::from_env(env, server, &SUBJECTS, defaults)?,
            provider_timeout,
        })
    }
}

/// Opens the database and the event bus, and serves payments on `listeners`, consuming its
/// group and relaying its outbox beside, until `shutdown` completes.
pub async fn serve(config: Config, listeners: Listeners, shutdown: Signal) -> meshmart::Result<()> {
    let store = Store::connect(&config.flow.database).await?;
    let mut flow = FlowHost::open(&config.flow, store.pools()).await?;
    let handlers = Handlers {
        store: store.clone(),
        outbox: flow.outbox.clone(),
        provider: Provider::new(store.pools().clone(), config.provider_timeout),
        metrics: metrics::Metrics::register(flow.registry()),
        max_attempts: flow.consumer.max_attempts,
    };
    flow.relay_and_consume(handlers)
        .add_service(PaymentServiceServer::new(Payments::new(store)))
        .serve(listeners, shutdown)
        .await
}
