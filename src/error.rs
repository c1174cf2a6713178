use crate::config::ConfigError;

/// What can stop the shared runtime from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("metrics server failed: {0}")]
    Metrics(std::io::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Start-up gave up waiting for the database: `DATABASE_CONNECT_TIMEOUT_SECS` ran out.
    #[error("database not reachable within {waited:?} ({attempts} attempts; last: {last})")]
    DatabaseUnreachable {
        waited: std::time::Duration,
        attempts: u32,
        last: String,
    },
    /// Start-up gave up waiting for NATS (connecting, or JetStream creating its streams).
    #[error("NATS at {url} not ready within {waited:?} ({attempts} attempts; last: {last})")]
    EventBusUnreachable {
        url: String,
        waited: std::time::Duration,
        attempts: u32,
        last: String,
    },
    /// The event broker failed or refused an operation; `action` says which.
    #[error("event bus: {action}: {source}")]
    EventBus {
        action: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The event bus refused a request: a subject, header or consumer group it cannot use,
    /// or a delivery handed to a bus other than the one it came from.
    #[error("event bus: {0}")]
    Events(String),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// The drain's grace period ended with calls still running; they were cut off.
    #[error("the grace period of {grace_period:?} ended with {calls} calls still in flight")]
    Abandoned {
        calls: usize,
        grace_period: std::time::Duration,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
