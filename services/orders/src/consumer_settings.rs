//! How the consumer group `orders` takes the flow's events: `CONSUMER_*`.

use std::time::Duration;

use meshmart::{
    config::{ConfigError, Env},
    events::ConsumerConfig,
};

use crate::{SERVICE, SUBJECTS};

/// How the consumer group takes the flow's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// The durable group's name: the service's, `orders`. Not configurable from the
    /// environment; tests on one shared JetStream give each case a group of its own.
    pub group: String,
    /// `CONSUMER_ACK_WAIT_SECS` (30): how long a delivery may go unanswered before it is
    /// delivered again. A handler is one short transaction, so this only matters after a
    /// crash.
    pub ack_wait: Duration,
    /// `CONSUMER_MAX_ATTEMPTS` (10): attempts before an event that keeps failing (the
    /// database out of reach) is dead-lettered.
    pub max_attempts: u32,
    /// `CONSUMER_BACKOFF_MS` (`1000,2000,5000,10000,30000`): the pause before each further
    /// attempt, the last one repeating; with the defaults an event is tried for about three
    /// minutes, enough for a database failover, before it waits for an operator.
    pub backoff: Vec<Duration>,
}

impl ConsumerSettings {
    pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
    pub const DEFAULT_BACKOFF_MS: [u64; 5] = [1000, 2000, 5000, 10_000, 30_000];

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ack_wait =
            env.seconds_or("CONSUMER_ACK_WAIT_SECS", Self::DEFAULT_ACK_WAIT.as_secs())?;
        if ack_wait.is_zero() {
            return Err(at_least_one("CONSUMER_ACK_WAIT_SECS", "seconds"));
        }
        let max_attempts = env.parse_or(
            "CONSUMER_MAX_ATTEMPTS",
            Self::DEFAULT_MAX_ATTEMPTS,
            "a whole number of attempts, 1 or more",
        )?;
        if max_attempts == 0 {
            return Err(at_least_one("CONSUMER_MAX_ATTEMPTS", "attempts"));
        }
        let backoff = match env.get("CONSUMER_BACKOFF_MS") {
            None => Self::DEFAULT_BACKOFF_MS.map(Duration::from_millis).to_vec(),
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
        Ok(Self {
            group: SERVICE.name.to_owned(),
            ack_wait,
            max_attempts,
            backoff,
        })
    }

    /// The group as the event bus takes it.
    pub(crate) fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            name: self.group.clone(),
            subjects: SUBJECTS.map(str::to_owned).to_vec(),
            ack_wait: self.ack_wait,
            max_attempts: self.max_attempts,
            backoff: self.backoff.clone(),
        }
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

    #[test]
    fn defaults_and_what_the_environment_changes() {
        let defaults = ConsumerSettings::from_env(&Env::default()).unwrap();
        assert_eq!(defaults.group, "orders");
        assert_eq!(defaults.ack_wait, Duration::from_secs(30));
        assert_eq!(defaults.max_attempts, 10);
        assert_eq!(defaults.backoff.len(), 5);
        defaults.consumer_config().validate().unwrap();

        let env = Env::from_pairs([
            ("CONSUMER_ACK_WAIT_SECS", "5"),
            ("CONSUMER_MAX_ATTEMPTS", "3"),
            ("CONSUMER_BACKOFF_MS", "100, 250"),
        ]);
        let set = ConsumerSettings::from_env(&env).unwrap();
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
            let error =
                ConsumerSettings::from_env(&Env::from_pairs([(variable, value)])).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
    }
}
