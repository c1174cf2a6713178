//! The payments service: charges an order when its PaymentRequested arrives, through a
//! simulated card provider (`provider`), and refunds a charge when a RefundRequested does;
//! publishes each outcome through its outbox. Its gRPC API only shows what it did.
//!
//! Configuration, beside the shared server, database and event bus variables:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAYMENT_PROVIDER_TIMEOUT_MS` | 2000 | how long one provider call may take before the attempt counts as a transient failure |
//! | `PAYMENT_MAX_ATTEMPTS` | 4 | attempts at charging an order (deliveries of its PaymentRequested) before payments gives up: charge FAILED, PaymentFailed with `will_retry` false |
//! | `PAYMENT_RETRY_BACKOFF_MS` | 1000 | the wait before the second attempt, doubled before each further one |

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
    config::{ConfigError, DatabaseConfig, Env, ServerConfig, ServiceInfo},
    events::{ConsumerConfig, EventsConfig, metadata::subjects, outbox::Outbox},
    proto::payments::payment_service_server::PaymentServiceServer,
    server::{Listeners, ServiceHost},
};

pub use error::{Error, Result};
pub use service::Payments;
pub use store::Store;

use crate::{handlers::Handlers, provider::Provider};

/// The payments service's name and port.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "payments",
    grpc_port: 50054,
};

/// `PAYMENT_MAX_ATTEMPTS` when unset.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// `PAYMENT_RETRY_BACKOFF_MS` when unset.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(1000);

/// Everything payments is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub events: EventsConfig,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS`.
    pub provider_timeout: Duration,
    /// `PAYMENT_MAX_ATTEMPTS`, 1 or more.
    pub max_attempts: u32,
    /// `PAYMENT_RETRY_BACKOFF_MS`: the first redelivery's delay, doubled after each.
    pub retry_backoff: Duration,
}

impl Config {
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        let millis = |variable: &'static str, default: Duration| {
            env.parse_or(
                variable,
                u64::try_from(default.as_millis()).unwrap_or(u64::MAX),
                "a whole number of milliseconds",
            )
            .map(Duration::from_millis)
        };
        let provider_timeout = millis("PAYMENT_PROVIDER_TIMEOUT_MS", provider::DEFAULT_TIMEOUT)?;
        if provider_timeout.is_zero() {
            return Err(ConfigError {
                variable: "PAYMENT_PROVIDER_TIMEOUT_MS",
                value: "0".to_owned(),
                expected: "a whole number of milliseconds, 1 or more".to_owned(),
            });
        }
        let max_attempts = env.parse_or(
            "PAYMENT_MAX_ATTEMPTS",
            DEFAULT_MAX_ATTEMPTS,
            "a whole number of attempts, 1 or more",
        )?;
        if max_attempts == 0 {
            return Err(ConfigError {
                variable: "PAYMENT_MAX_ATTEMPTS",
                value: "0".to_owned(),
                expected: "a whole number of attempts, 1 or more".to_owned(),
            });
        }
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            events: EventsConfig::from_env(env)?,
            provider_timeout,
            max_attempts,
            retry_backoff: millis("PAYMENT_RETRY_BACKOFF_MS", DEFAULT_RETRY_BACKOFF)?,
            server,
        })
    }

    /// The consumer group `payments`: its attempts are a charge's attempts, and a delivery
    /// may take a provider call and two commits before it is answered.
    pub fn consumer(&self) -> ConsumerConfig {
        let retries = self.max_attempts.saturating_sub(1).min(16);
        ConsumerConfig {
            name: handlers::GROUP.to_owned(),
            subjects: vec![
                subjects::PAYMENT_REQUESTED.to_owned(),
                subjects::REFUND_REQUESTED.to_owned(),
            ],
            ack_wait: Duration::from_secs(30) + self.provider_timeout,
            max_attempts: self.max_attempts,
            backoff: (0..retries)
                .map(|n| self.retry_backoff * (1 << n))
                .collect(),
        }
    }
}

/// Opens the database and the event bus, and serves payments on `listeners`, consuming its
/// group and relaying its outbox beside, until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let consumer = config.consumer();
    consumer.validate()?;
    let store = Store::connect(&config.database).await?;
    let bus = meshmart::events::connect(&config.events).await?;
    let outbox = Outbox::new(store.pools().clone());
    let mut host = ServiceHost::new(&config.server);
    let handlers = Handlers {
        store: store.clone(),
        outbox: outbox.clone(),
        provider: Provider::new(store.pools().clone(), config.provider_timeout),
        metrics: metrics::Metrics::register(host.registry()),
        max_attempts: config.max_attempts,
    };
    host.add_service(PaymentServiceServer::new(Payments::new(store)))
        .relay_beside(outbox, bus.clone())
        .consume_beside(bus, consumer, handlers)
        .serve(listeners, shutdown)
        .await
}
