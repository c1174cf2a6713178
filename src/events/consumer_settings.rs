//! How a consumer group tries, from the environment: the same three `CONSUMER_*` variables
//! in every service that consumes, each service with defaults of its own
//! ([`ConsumerDefaults`]), so an operator tunes every group one way.

use std::time::Duration;

use super::ConsumerConfig;
use crate::config::{ConfigError, Env};

/// What a group does when a `CONSUMER_*` variable is unset. Each service documents why its
/// values are what they are where it builds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerDefaults {
    /// `CONSUMER_ACK_WAIT_SECS`: how long a delivery may go unanswered before it is
    /// delivered again.
    pub ack_wait: Duration,
    /// `CONSUMER_MAX_ATTEMPTS`: attempts before an event that keeps failing is
    /// dead-lettered.
    pub max_attempts: u32,
    /// `CONSUMER_BACKOFF_MS`: the pause before each further attempt, the last repeating.
    pub backoff: Vec<Duration>,
}

impl ConsumerDefaults {
    /// The shop's defaults: `ack_wait` 30 s (an event's handler makes at most a call or two
    /// and one transaction), 8 attempts, redelivered after 1, 2, 5, 10 and then every 30 s:
    /// a dependency down for about two minutes is waited out before the event goes to the
    /// dead letters, where an operator replays it.
    pub fn shop() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_attempts: 8,
            backoff: [1, 2, 5, 10, 30].map(Duration::from_secs).to_vec(),
        }
    }
}

impl ConsumerConfig {
    /// The group `name` on `subjects` with [`ConsumerDefaults::shop`].
    pub fn with_defaults(name: &str, subjects: &[&str]) -> Self {
        Self::with(name, subjects, ConsumerDefaults::shop())
    }

    /// The group `name` on `subjects`, trying as `defaults` says.
    pub fn with(name: &str, subjects: &[&str], defaults: ConsumerDefaults) -> Self {
        Self {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            ack_wait: defaults.ack_wait,
            max_attempts: defaults.max_attempts,
            backoff: defaults.backoff,
        }
    }

    /// The group `name` on `subjects`, from `CONSUMER_ACK_WAIT_SECS`,
    /// `CONSUMER_MAX_ATTEMPTS` and `CONSUMER_BACKOFF_MS`, each `defaults`' value when unset.
    /// The name is not configurable: it is the service's, and its dead letters carry it.
    pub fn from_env(
        env: &Env,
        name: &str,
        subjects: &[&str],
        defaults: ConsumerDefaults,
    ) -> Result<Self, ConfigError> {
        // Unset, the default as it is: payments' is 30 s plus a provider timeout in
        // milliseconds, which whole seconds would cut.
        let ack_wait = match env.get("CONSUMER_ACK_WAIT_SECS") {
            None => defaults.ack_wait,
            Some(_) => env.seconds_or("CONSUMER_ACK_WAIT_SECS", 0)?,
        };
        if ack_wait.is_zero() {
            return Err(at_least_one("CONSUMER_ACK_WAIT_SECS", "seconds"));
        }
        let max_attempts = env.parse_or(
            "CONSUMER_MAX_ATTEMPTS",
            defaults.max_attempts,
            "a whole number of attempts, 1 or more",
        )?;
        if max_attempts == 0 {
            return Err(at_least_one("CONSUMER_MAX_ATTEMPTS", "attempts"));
        }
        let backoff = match env.get("CONSUMER_BACKOFF_MS") {
            None => defaults.backoff,
            Some(list) => list
                .split(',')
                .map(|ms| ms.trim().parse().map(Duration::from_millis))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ConfigError {
                    variable: "CONSUMER_BACKOFF_MS",
                    value: list.to_owned(),
                    expected: "comma-separated whole numbers of milliseconds".to_owned(),
                })?,
        };
        Ok(Self::with(
            name,
            subjects,
            ConsumerDefaults {
                ack_wait,
                max_attempts,
                backoff,
            },
        ))
    }
}

fn at_least_one(variable: &'static str, unit: &str) -> ConfigError {
    ConfigError {
        variable,
        value: "0".to_owned(),
        expected: format!("a whole number of {unit}, 1 or more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ConsumerDefaults {
        ConsumerDefaults {
            ack_wait: Duration::from_secs(30),
            max_attempts: 10,
            backoff: [1000, 2000].map(Duration::from_millis).to_vec(),
        }
    }

    fn from(env: &Env) -> Result<ConsumerConfig, ConfigError> {
        ConsumerConfig::from_env(env, "orders", &["orders.created"], defaults())
    }

    #[test]
    fn defaults_and_what_the_environment_changes() {
        let unset = from(&Env::default()).unwrap();
        assert_eq!(unset.name, "orders");
        assert_eq!(unset.subjects, ["orders.created"]);
        assert_eq!(unset.ack_wait, Duration::from_secs(30));
        assert_eq!(unset.max_attempts, 10);
        assert_eq!(unset.backoff, defaults().backoff);
        unset.validate().unwrap();

        let env = Env::from_pairs([
            ("CONSUMER_ACK_WAIT_SECS", "5"),
            ("CONSUMER_MAX_ATTEMPTS", "3"),
            ("CONSUMER_BACKOFF_MS", "100, 250"),
        ]);
        let set = from(&env).unwrap();
        assert_eq!(set.ack_wait, Duration::from_secs(5));
        assert_eq!(set.max_attempts, 3);
        assert_eq!(
            set.backoff,
            [Duration::from_millis(100), Duration::from_millis(250)]
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        for (variable, value) in [
            ("CONSUMER_ACK_WAIT_SECS", "0"),
            ("CONSUMER_ACK_WAIT_SECS", "soon"),
            ("CONSUMER_MAX_ATTEMPTS", "0"),
            ("CONSUMER_MAX_ATTEMPTS", "-1"),
            ("CONSUMER_BACKOFF_MS", "100,,200"),
            ("CONSUMER_BACKOFF_MS", "1s"),
        ] {
            let error = from(&Env::from_pairs([(variable, value)])).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
    }
}
