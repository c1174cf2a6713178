//! What every service in the order flow is configured with alike.

use super::{ConfigError, DatabaseConfig, Env, ServerConfig};
use crate::events::{ConsumerConfig, ConsumerDefaults, EventsConfig};

/// The part of a flow service's configuration that is the same in every one (orders,
/// payments, fulfillment, notifications, orchestrator): its server, its own database, the
/// event broker, and its consumer group. Each service's `Config` holds this beside what is
/// only its own.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// The event broker: `NATS_URL`, or the embedded log in `DATA_DIR`.
    pub events: EventsConfig,
    /// The group named after the service, on `subjects`: `CONSUMER_*`
    /// ([`ConsumerConfig::from_env`]).
    pub consumer: ConsumerConfig,
}

impl FlowConfig {
    /// Reads the shared variables; the group reads the service's `subjects` and tries as
    /// `defaults` says where `CONSUMER_*` is unset.
    pub fn from_env(
        env: &Env,
        server: ServerConfig,
        subjects: &[&str],
        defaults: ConsumerDefaults,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env(env, server.service)?,
            events: EventsConfig::from_env(env)?,
            consumer: ConsumerConfig::from_env(env, server.service.name, subjects, defaults)?,
            server,
        })
    }
}
