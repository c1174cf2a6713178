//! Configuration from environment variables, validated once at start.
//!
//! Values are read from an [`Env`] snapshot rather than from the process environment
//! directly, so tests build configurations without touching global state. Every error
//! names the variable and the rejected value, and says what was expected.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

mod flow;
pub use flow::FlowConfig;

/// A variable that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}={value:?}: {expected}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: String,
}

/// A snapshot of environment variables. Empty values count as unset.
///
/// It remembers which variables were asked for, so a test can hold the documented
/// configuration table against what the services really read.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    read: RefCell<BTreeSet<String>>,
}

impl Env {
    /// The variables of this process.
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Self {
            vars,
            read: RefCell::default(),
        }
    }

    pub fn get(&self, variable: &str) -> Option<&str> {
        self.read.borrow_mut().insert(variable.to_owned());
        self.vars.get(variable).map(String::as_str)
    }

    /// Every variable asked for so far, set or not.
    pub fn variables_read(&self) -> BTreeSet<String> {
        self.read.borrow().clone()
    }

    /// Parses `variable` with [`FromStr`], or returns `default` when it is unset.
    pub fn parse_or<T>(
        &self,
        variable: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr,
    {
        match self.get(variable) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError {
                variable,
                value: value.to_owned(),
                expected: expected.to_owned(),
            }),
        }
    }

    pub fn bool_or(&self, variable: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(variable).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError {
                variable,
                value: other.to_owned(),
                expected: "true or false".to_owned(),
            }),
        }
    }

    pub fn seconds_or(
        &self,
        variable: &'static str,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        self.parse_or(variable, default, "a whole number of seconds")
            .map(Duration::from_secs)
    }

    /// A `http://host:port` address of another service.
    pub fn endpoint_or(
        &self,
        variable: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        let value = self.get(variable).unwrap_or(default).trim().to_owned();
        let valid = value.parse::<http::Uri>().ok().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if valid {
            Ok(value)
        } else {
            Err(ConfigError {
                variable,
                value,
                expected: "an http://host:port address".to_owned(),
            })
        }
    }
}

/// A service's identity: its name and its fixed gRPC port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The short name: `catalog`, `inventory`, ...
    pub name: &'static str,
    /// The port every environment uses for this service: 50051 for catalog, 50052 for inventory, ...
    pub grpc_port: u16,
}

impl ServiceInfo {
    /// The service `name` on `grpc_port`.
    pub const fn new(name: &'static str, grpc_port: u16) -> Self {
        Self { name, grpc_port }
    }

    /// The default metrics port: 9051 for the service on 50051, and so on, so that every
    /// service can run side by side on one machine with its defaults.
    pub fn metrics_port(&self) -> u16 {
        9000 + self.grpc_port.saturating_sub(50000)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Json,
    Text,
}

impl FromStr for LogFormat {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(()),
        }
    }
}

/// What every service's server needs: where to listen, what to report, how to stop.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub service: ServiceInfo,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Sent back in `x-meshmart-version` on every response, so a canary is visible to callers.
    pub version: String,
    /// How long to keep serving after reporting NOT_SERVING, so load balancers stop
    /// sending new calls before the listener closes.
    pub drain_delay: Duration,
    /// How long in-flight calls may take to finish once the listener is closed.
    pub grace_period: Duration,
    /// The largest request message accepted; larger ones are answered RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
}

/// The most `GRPC_MAX_MESSAGE_BYTES` may be: the decoding limit of tonic's generated
/// servers, which would otherwise answer larger messages OUT_OF_RANGE first.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl ServerConfig {
    pub fn from_env(env: &Env, service: ServiceInfo) -> Result<Self, ConfigError> {
        let any = Ipv4Addr::UNSPECIFIED;
        let addr = "an address like 0.0.0.0:50051";
        Ok(Self {
            service,
            grpc_addr: env.parse_or(
                "GRPC_ADDR",
                SocketAddr::from((any, service.grpc_port)),
                addr,
            )?,
            metrics_addr: env.parse_or(
                "METRICS_ADDR",
                SocketAddr::from((any, service.metrics_port())),
                addr,
            )?,
            version: service_version(env)?,
            drain_delay: env.seconds_or("SHUTDOWN_DRAIN_DELAY_SECS", 0)?,
            grace_period: env.seconds_or("SHUTDOWN_GRACE_PERIOD_SECS", 20)?,
            max_message_bytes: max_message_bytes(env)?,
        })
    }
}

fn max_message_bytes(env: &Env) -> Result<usize, ConfigError> {
    let expected = || format!("a number of bytes from 1024 to {MAX_MESSAGE_BYTES}");
    let bytes = env.parse_or("GRPC_MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES, &expected())?;
    if (1024..=MAX_MESSAGE_BYTES).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(ConfigError {
            variable: "GRPC_MAX_MESSAGE_BYTES",
            value: bytes.to_string(),
            expected: expected(),
        })
    }
}

fn service_version(env: &Env) -> Result<String, ConfigError> {
    let version = env.get("SERVICE_VERSION").unwrap_or("v1").to_owned();
    let valid = !version.is_empty()
        && version.len() <= 63
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(version)
    } else {
        Err(ConfigError {
            variable: "SERVICE_VERSION",
            value: version,
            expected: "1 to 63 letters, digits, '.', '-' or '_'".to_owned(),
        })
    }
}

/// Logs and traces.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, from `RUST_LOG`.
    pub log_filter: String,
    /// Traces are exported over OTLP/gRPC only when this is set; the exporter itself reads
    /// the other standard `OTEL_*` variables.
    pub otlp_endpoint: Option<String>,
    /// Logs are exported over OTLP/gRPC (as well as written to stdout) only when this is
    /// set: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, unless
    /// `OTEL_LOGS_EXPORTER` is `none`.
    pub otlp_logs_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`, when it should differ from the service's own name.
    pub otel_service_name: Option<String>,
}

impl TelemetryConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let log_filter = env.get("RUST_LOG").unwrap_or("info").to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError {
                variable: "RUST_LOG",
                value: log_filter,
                expected: "a tracing filter such as info or catalog=debug,info".to_owned(),
            });
        }
        Ok(Self {
            log_format: env.parse_or("LOG_FORMAT", LogFormat::Auto, "auto, json or text")?,
            log_filter,
            otlp_endpoint: env
                .get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .map(str::to_owned),
            otlp_logs_endpoint: match env.get("OTEL_LOGS_EXPORTER").unwrap_or("otlp") {
                "otlp" => env
                    .get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
                    .or_else(|| env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
                    .map(str::to_owned),
                "none" => None,
                other => {
                    return Err(ConfigError {
                        variable: "OTEL_LOGS_EXPORTER",
                        value: other.to_owned(),
                        expected: "otlp or none".to_owned(),
                    });
                }
            },
            otel_service_name: env.get("OTEL_SERVICE_NAME").map(str::to_owned),
        })
    }
}

/// A service's own database.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user:password@host/db`, with
    /// `?sslmode=verify-full&sslrootcert=/path/ca.pem` for TLS. Never logged: it may hold a
    /// password.
    pub url: String,
    pub max_connections: u32,
    /// Whether an empty database gets the demo products and stock.
    pub seed_demo_data: bool,
    /// SQLite: how long a write waits for the writer connection, and for the write lock,
    /// before its call answers UNAVAILABLE. Kept below the shortest route timeout of the
    /// chart, so the caller hears UNAVAILABLE (which the mesh may retry) rather than the mesh
    /// giving up on the call.
    pub busy_timeout: Duration,
    /// How long start-up waits for the database in all, every attempt included.
    pub connect_timeout: Duration,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("backend", &self.backend())
            .field("max_connections", &self.max_connections)
            .field("seed_demo_data", &self.seed_demo_data)
            .field("busy_timeout", &self.busy_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl DatabaseConfig {
    /// `DATABASE_BUSY_TIMEOUT_MS` when unset; a test checks it against the chart's route
    /// timeouts.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(1000);
    /// `DATABASE_CONNECT_TIMEOUT_SECS` when unset.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

    /// `url` with every other setting at its default, for tests and tools.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            seed_demo_data: true,
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// `DATABASE_URL`, or a SQLite file named after the service in `DATA_DIR`.
    pub fn from_env(env: &Env, service: ServiceInfo) -> Result<Self, ConfigError> {
        let url = match env.get("DATABASE_URL") {
            Some(url) => url.to_owned(),
            None => {
                let dir = PathBuf::from(env.get("DATA_DIR").unwrap_or("data"));
                format!(
                    "sqlite://{}",
                    dir.join(format!("{}.db", service.name)).display()
                )
            }
        };
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                // The scheme is enough to see the mistake; the rest may hold a password.
                value: url.split(':').next().unwrap_or_default().to_owned() + ":...",
                expected: "a sqlite:// or postgres:// URL".to_owned(),
            });
        }
        let defaults = Self::with_url(url);
        let max_connections = Self::ranged(
            env,
            "DATABASE_MAX_CONNECTIONS",
            defaults.max_connections.into(),
            1..=1000,
        )?;
        let busy_timeout = Self::ranged(
            env,
            "DATABASE_BUSY_TIMEOUT_MS",
            u64::try_from(defaults.busy_timeout.as_millis()).unwrap_or(u64::MAX),
            1..=600_000,
        )?;
        let connect_timeout = Self::ranged(
            env,
            "DATABASE_CONNECT_TIMEOUT_SECS",
            defaults.connect_timeout.as_secs(),
            1..=3600,
        )?;
        Ok(Self {
            max_connections: u32::try_from(max_connections).unwrap_or(u32::MAX),
            seed_demo_data: env.bool_or("SEED_DEMO_DATA", defaults.seed_demo_data)?,
            busy_timeout: Duration::from_millis(busy_timeout),
            connect_timeout: Duration::from_secs(connect_timeout),
            ..defaults
        })
    }

    /// `sqlite` or `postgres`, for logs.
    pub fn backend(&self) -> &'static str {
        if self.url.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
    }

    /// A whole number in `range`, or `default` when `variable` is unset.
    fn ranged(
        env: &Env,
        variable: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        let value = env.parse_or(variable, default, &expected)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable,
                value: value.to_string(),
                expected,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: ServiceInfo = ServiceInfo {
        name: "catalog",
        grpc_port: 50051,
    };

    #[test]
    fn defaults_need_no_variables() {
        let config = ServerConfig::from_env(&Env::default(), CATALOG).unwrap();
        assert_eq!(config.grpc_addr, "0.0.0.0:50051".parse().unwrap());
        assert_eq!(config.metrics_addr, "0.0.0.0:9051".parse().unwrap());
        assert_eq!(config.version, "v1");
        let db = DatabaseConfig::from_env(&Env::default(), CATALOG).unwrap();
        assert_eq!(db.url, "sqlite://data/catalog.db");
        assert!(db.seed_demo_data);
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        let env = Env::from_pairs([("GRPC_ADDR", "localhost")]);
        let err = ServerConfig::from_env(&env, CATALOG).unwrap_err();
        assert_eq!(err.variable, "GRPC_ADDR");
        assert_eq!(
            err.to_string(),
            "invalid configuration: GRPC_ADDR=\"localhost\": an address like 0.0.0.0:50051"
        );
        for (variable, value) in [
            ("SHUTDOWN_GRACE_PERIOD_SECS", "ten"),
            ("SERVICE_VERSION", "v 2"),
            ("METRICS_ADDR", "9090"),
            ("GRPC_MAX_MESSAGE_BYTES", "100"),
            ("GRPC_MAX_MESSAGE_BYTES", "8388608"),
        ] {
            let err =
                ServerConfig::from_env(&Env::from_pairs([(variable, value)]), CATALOG).unwrap_err();
            assert_eq!(err.variable, variable);
        }
        let err =
            TelemetryConfig::from_env(&Env::from_pairs([("LOG_FORMAT", "yaml")])).unwrap_err();
        assert_eq!(err.variable, "LOG_FORMAT");
        let err = TelemetryConfig::from_env(&Env::from_pairs([("OTEL_LOGS_EXPORTER", "stdout")]))
            .unwrap_err();
        assert_eq!(err.variable, "OTEL_LOGS_EXPORTER");
    }

    #[test]
    fn logs_follow_the_traces_to_the_collector_unless_told_otherwise() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let logs = |pairs: Vec<(&str, &str)>| {
            TelemetryConfig::from_env(&Env::from_pairs(pairs))
                .unwrap()
                .otlp_logs_endpoint
        };
        assert_eq!(logs(vec![]), None);
        assert_eq!(
            logs(vec![endpoint]).as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(logs(vec![endpoint, ("OTEL_LOGS_EXPORTER", "none")]), None);
        let own = ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317");
        assert_eq!(
            logs(vec![endpoint, own]).as_deref(),
            Some("http://logs:4317")
        );
        // Traces to one place only: the logs stay on stdout.
        let traces = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317");
        assert_eq!(logs(vec![traces]), None);
    }

    #[test]
    fn database_url_errors_hide_credentials() {
        let env = Env::from_pairs([("DATABASE_URL", "mysql://root:secret@db/x")]);
        let err = DatabaseConfig::from_env(&env, CATALOG).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("secret"));
        let env = Env::from_pairs([("DATABASE_URL", "postgres://u:secret@db/x")]);
        let db = DatabaseConfig::from_env(&env, CATALOG).unwrap();
        assert!(!format!("{db:?}").contains("secret"));
        assert_eq!(db.backend(), "postgres");
    }

    #[test]
    fn database_timeouts_default_and_are_checked() {
        let db = DatabaseConfig::from_env(&Env::default(), CATALOG).unwrap();
        assert_eq!(db.max_connections, 8);
        assert_eq!(db.busy_timeout, Duration::from_millis(1000));
        assert_eq!(db.connect_timeout, Duration::from_secs(30));
        let env = Env::from_pairs([
            ("DATABASE_BUSY_TIMEOUT_MS", "250"),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "5"),
        ]);
        let db = DatabaseConfig::from_env(&env, CATALOG).unwrap();
        assert_eq!(db.busy_timeout, Duration::from_millis(250));
        assert_eq!(db.connect_timeout, Duration::from_secs(5));
        for (variable, value) in [
            ("DATABASE_BUSY_TIMEOUT_MS", "0"),
            ("DATABASE_BUSY_TIMEOUT_MS", "1s"),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "0"),
            ("DATABASE_CONNECT_TIMEOUT_SECS", "forever"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
        ] {
            let err = DatabaseConfig::from_env(&Env::from_pairs([(variable, value)]), CATALOG)
                .unwrap_err();
            assert_eq!(err.variable, variable);
            assert!(err.expected.starts_with("a whole number from "), "{err}");
        }
    }

    /// A writer waiting for SQLite's lock must answer UNAVAILABLE before the mesh gives up
    /// on the call, so that the caller sees a status it may retry rather than a timeout.
    /// Fails when someone raises the default busy timeout to, or past, the shortest route
    /// `timeout:` in the chart, or lowers a route timeout under it.
    #[test]
    fn busy_timeout_is_below_every_route_timeout_in_the_chart() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/meshmart/values.yaml");
        let values = std::fs::read_to_string(path).unwrap();
        let timeouts: Vec<Duration> = values
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("timeout:"))
            .map(|value| {
                let value = value.split('#').next().unwrap().trim().trim_matches('"');
                let (number, unit) = value
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or((value, ""), |at| value.split_at(at));
                let number: u64 = number.parse().unwrap_or_else(|_| panic!("{value}"));
                match unit {
                    "ms" => Duration::from_millis(number),
                    "s" => Duration::from_secs(number),
                    "m" => Duration::from_secs(number * 60),
                    _ => panic!("route timeout {value:?}: expected ms, s or m"),
                }
            })
            // 0s turns a route's timeout off (streams end at the caller's deadline).
            .filter(|timeout| !timeout.is_zero())
            .collect();
        // Catalog's and inventory's reads, writes and other, and the defaults.
        assert!(timeouts.len() >= 3, "no route timeouts found in {path}");
        let shortest = timeouts.iter().min().unwrap();
        assert!(
            DatabaseConfig::DEFAULT_BUSY_TIMEOUT < *shortest,
            "DATABASE_BUSY_TIMEOUT_MS defaults to {:?}, not below the chart's shortest route timeout {shortest:?}",
            DatabaseConfig::DEFAULT_BUSY_TIMEOUT
        );
    }

    #[test]
    fn endpoints_and_booleans_are_checked() {
        let env = Env::from_pairs([
            ("INVENTORY_ADDR", "inventory:50052"),
            ("SEED_DEMO_DATA", "maybe"),
        ]);
        assert_eq!(
            env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")
                .unwrap_err()
                .variable,
            "INVENTORY_ADDR"
        );
        assert_eq!(
            env.bool_or("SEED_DEMO_DATA", true).unwrap_err().variable,
            "SEED_DEMO_DATA"
        );
        let env = Env::from_pairs([("INVENTORY_ADDR", "http://inventory:50052"), ("X", "")]);
        assert_eq!(
            env.endpoint_or("INVENTORY_ADDR", "http://127.0.0.1:50052")
                .unwrap(),
            "http://inventory:50052"
        );
        assert_eq!(env.get("X"), None);
    }
}
