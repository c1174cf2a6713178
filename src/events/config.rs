//! Which broker a service uses: NATS JetStream when `NATS_URL` is set, the embedded log in
//! `DATA_DIR` otherwise, so `meshctl up` needs no broker and the cluster needs no volume.

use std::{fmt, path::PathBuf};

use super::embedded::EmbeddedConfig;
use crate::config::{ConfigError, Env};

/// The event broker, from the environment.
#[derive(Clone, PartialEq, Eq)]
pub enum EventsConfig {
    /// `NATS_URL`: one or more comma-separated `nats://` or `tls://` server URLs. The
    /// JetStream bus connects there.
    JetStream { url: String },
    /// No `NATS_URL`: the durable log in one SQLite file, `$DATA_DIR/events.db`, shared by
    /// every service process on the machine.
    Embedded(EmbeddedConfig),
}

impl fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The URL may carry a user and password, so only the broker is named.
            Self::JetStream { .. } => f.debug_struct("JetStream").finish_non_exhaustive(),
            Self::Embedded(config) => f.debug_tuple("Embedded").field(config).finish(),
        }
    }
}

impl EventsConfig {
    /// The file name of the embedded log inside `DATA_DIR`.
    pub const EMBEDDED_FILE: &str = "events.db";

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        if let Some(url) = env.get("NATS_URL") {
            let valid = url.split(',').map(str::trim).all(|server| {
                ["nats://", "tls://"]
                    .iter()
                    .any(|scheme| server.len() > scheme.len() && server.starts_with(scheme))
            });
            if !valid {
                return Err(ConfigError {
                    variable: "NATS_URL",
                    // The schemes are enough to see the mistake; the rest may hold a password.
                    value: url
                        .split(',')
                        .map(|server| server.trim().split(':').next().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(":...,")
                        + ":...",
                    expected: "nats://host:port or tls://host:port, comma-separated".to_owned(),
                });
            }
            return Ok(Self::JetStream {
                url: url.to_owned(),
            });
        }
        // The same folder, and the same default, as each service's own SQLite file
        // (`DatabaseConfig::from_env`), so one `DATA_DIR` holds all of a machine's state.
        let dir = PathBuf::from(env.get("DATA_DIR").unwrap_or("data"));
        Ok(Self::Embedded(EmbeddedConfig::at(
            dir.join(Self::EMBEDDED_FILE),
        )))
    }

    /// `jetstream` or `embedded`, for logs.
    pub fn broker(&self) -> &'static str {
        match self {
            Self::JetStream { .. } => "jetstream",
            Self::Embedded(_) => "embedded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_in_data_dir_unless_nats_url() {
        let config = EventsConfig::from_env(&Env::default()).unwrap();
        assert_eq!(
            config,
            EventsConfig::Embedded(EmbeddedConfig::at("data/events.db"))
        );
        assert_eq!(config.broker(), "embedded");
        let env = Env::from_pairs([("DATA_DIR", "/var/lib/meshmart")]);
        let EventsConfig::Embedded(embedded) = EventsConfig::from_env(&env).unwrap() else {
            panic!("expected the embedded log");
        };
        assert_eq!(embedded.path, PathBuf::from("/var/lib/meshmart/events.db"));

        let env = Env::from_pairs([
            ("NATS_URL", "nats://u:secret@nats:4222, tls://nats-2:4222"),
            ("DATA_DIR", "/x"),
        ]);
        let config = EventsConfig::from_env(&env).unwrap();
        assert_eq!(config.broker(), "jetstream");
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn nats_url_errors_hide_credentials() {
        for url in [
            "http://u:secret@nats:4222",
            "nats://",
            "nats://a,u:secret@b",
        ] {
            let err = EventsConfig::from_env(&Env::from_pairs([("NATS_URL", url)])).unwrap_err();
            assert_eq!(err.variable, "NATS_URL");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }
}
