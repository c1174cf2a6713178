//! The event bus on NATS JetStream, for the cluster (`NATS_URL`).
//!
//! Two streams, both created (or updated to these settings) by every process at start:
//!
//! - **Events** ([`JetStreamOptions::stream`], `EVENTS`): the shop's subjects (`orders.>`,
//!   `payments.>`, `shipments.>`) and the replay subjects (`replay.<group>`), in files, for
//!   [`JetStreamOptions::max_age`] (7 days), de-duplicated on `Nats-Msg-Id` (the event's
//!   message id) for [`JetStreamOptions::duplicate_window`] (10 minutes).
//! - **Dead letters** ([`JetStreamOptions::dead_letter_stream`], `DEAD_LETTERS`): one
//!   subject per group (`dlq.<group>`), in files, kept until replayed or deleted.
//!
//! Each consumer group is a durable pull consumer of the events stream, named after the
//! group, reading its subjects and its own replay subject. See `docs/architecture.md`,
//! "JetStream", for why each setting is what it is.

mod consumer;
mod dead_letters;
mod headers;

use std::{error::Error as StdError, sync::Arc, time::Duration};

use async_nats::{
    ConnectErrorKind,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
        context::CreateStreamErrorKind,
        stream::{self, RetentionPolicy, StorageType},
    },
};

pub use consumer::JetStreamConsumer;

use super::{ConsumerConfig, DeadLetter, Delivery, EventBus, Outgoing, Published};
use crate::{Error, Result};

/// Where the streams are and how they keep events. [`Default`] is the shop's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// The events' stream.
    pub stream: String,
    /// The subjects events are published on. Consumer groups read within these.
    pub subjects: Vec<String>,
    /// The first token of the replay subjects: a group's replays go to `<prefix>.<group>`,
    /// which only that group reads. Must not fall within `subjects`.
    pub replay_prefix: String,
    /// The dead letters' stream.
    pub dead_letter_stream: String,
    /// The first token of the dead letters' subjects: `<prefix>.<group>`.
    pub dead_letter_prefix: String,
    /// How long a message id is remembered: a publish of the same id within it stores
    /// nothing. Long enough to cover a producer retrying after a restart.
    pub duplicate_window: Duration,
    /// How long events are kept, and so how far back a new consumer group starts.
    pub max_age: Duration,
    /// Copies of each stream in a JetStream cluster (1 for a single server, 3 for a cluster).
    pub replicas: usize,
    /// How long [`JetStreamBus::connect`] waits in all for the server and its streams.
    pub connect_timeout: Duration,
    /// The name the connection shows in the server's monitoring.
    pub client_name: String,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            stream: "EVENTS".to_owned(),
            subjects: ["orders.>", "payments.>", "shipments.>"]
                .map(str::to_owned)
                .to_vec(),
            replay_prefix: "replay".to_owned(),
            dead_letter_stream: "DEAD_LETTERS".to_owned(),
            dead_letter_prefix: "dlq".to_owned(),
            // A producer that crashed after the broker stored an event but before it noted
            // so publishes it again when it is back: a pod restart, image pull and
            // crash-loop back-off (at most 5 minutes) fit in 10 minutes. The server keeps
            // the ids of that window in memory, so not hours.
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(7 * 24 * 60 * 60),
            replicas: 1,
            // As long as the database's DATABASE_CONNECT_TIMEOUT_SECS default: in a
            // cluster NATS may start after the service, and waiting beats a crash loop.
            connect_timeout: Duration::from_secs(30),
            client_name: "meshmart".to_owned(),
        }
    }
}

/// The event bus on JetStream. Clones share one connection.
#[derive(Debug, Clone)]
pub struct JetStreamBus {
    context: jetstream::Context,
    options: Arc<JetStreamOptions>,
}

/// The pause between two attempts to reach the server at start.
const CONNECT_PAUSE: Duration = Duration::from_secs(1);
/// The most one connection attempt may take (TCP, TLS and the NATS handshake); the overall
/// [`JetStreamOptions::connect_timeout`] cuts it shorter when less is left.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

impl JetStreamBus {
    /// Connects to `url` (`nats://host:4222`; several, comma-separated) and creates or
    /// updates both streams.
    ///
    /// Waits up to `options.connect_timeout` in all, one attempt a second, while the server
    /// is out of reach or JetStream is not ready yet; errors that waiting cannot cure (a
    /// malformed URL, refused credentials, streams that clash with existing ones) end the
    /// wait at once. After start the client reconnects by itself, without limit.
    pub async fn connect(url: &str, options: JetStreamOptions) -> Result<Self> {
        check_token("replay prefix", &options.replay_prefix)?;
        check_token("dead-letter prefix", &options.dead_letter_prefix)?;
        let timeout = options.connect_timeout;
        let started = tokio::time::Instant::now();
        let mut attempts = 0_u32;
        let mut last: Option<String> = None;
        let mut client = None;
        let waited = tokio::time::timeout(timeout, async {
            loop {
                attempts += 1;
                let left = timeout.saturating_sub(started.elapsed());
                match start(url, &options, &mut client, left.min(ATTEMPT_TIMEOUT)).await {
                    Ok(context) => return Ok(context),
                    Err(Attempt::Fatal(error)) => return Err(error),
                    Err(Attempt::Transient(error)) => {
                        tracing::warn!(%error, attempt = attempts, "nats not ready yet; waiting");
                        last = Some(error);
                        tokio::time::sleep(CONNECT_PAUSE).await;
                    }
                }
            }
        })
        .await;
        let context = waited.unwrap_or_else(|_| {
            Err(Error::EventBusUnreachable {
                url: redact(url),
                waited: timeout,
                attempts,
                last: last.unwrap_or_else(|| "no answer".to_owned()),
            })
        })?;
        tracing::info!(stream = %options.stream, dead_letters = %options.dead_letter_stream, "event bus ready");
        Ok(Self {
            context,
            options: Arc::new(options),
        })
    }

    /// The options it was connected with.
    pub fn options(&self) -> &JetStreamOptions {
        &self.options
    }

    /// Where `group`'s replays are published: a subject only that group reads.
    fn replay_subject(&self, group: &str) -> String {
        format!("{}.{group}", self.options.replay_prefix)
    }

    fn dead_letter_subject(&self, group: &str) -> String {
        format!("{}.{group}", self.options.dead_letter_prefix)
    }
}

/// Why one start attempt failed, and whether another may succeed.
enum Attempt {
    Transient(String),
    Fatal(Error),
}

/// One attempt: connects unless an earlier attempt did, then creates or updates the streams.
async fn start(
    url: &str,
    options: &JetStreamOptions,
    client: &mut Option<async_nats::Client>,
    attempt_timeout: Duration,
) -> Result<jetstream::Context, Attempt> {
    let connected = match client {
        Some(client) => client.clone(),
        None => {
            let connecting = async_nats::ConnectOptions::new()
                .name(&options.client_name)
                .connection_timeout(attempt_timeout)
                .connect(url)
                .await;
            match connecting {
                Ok(connected) => client.insert(connected).clone(),
                Err(error) => {
                    return Err(match error.kind() {
                        ConnectErrorKind::Io
                        | ConnectErrorKind::TimedOut
                        | ConnectErrorKind::Dns
                        | ConnectErrorKind::MaxReconnects => Attempt::Transient(error.to_string()),
                        ConnectErrorKind::ServerParse
                        | ConnectErrorKind::Authentication
                        | ConnectErrorKind::AuthorizationViolation
                        | ConnectErrorKind::Tls => {
                            Attempt::Fatal(bus_error(format!("connect to {}", redact(url)), error))
                        }
                    });
                }
            }
        }
    };
    let context = jetstream::new(connected);
    for config in [events_stream(options), dead_letter_stream(options)] {
        let name = config.name.clone();
        if let Err(error) = context.create_or_update_stream(config).await {
            // JetStream answers 503 while it is starting or a cluster has no leader yet.
            let transient = match error.kind() {
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                    true
                }
                CreateStreamErrorKind::JetStream(js) => js.code() == 503,
                _ => false,
            };
            return Err(if transient {
                Attempt::Transient(format!("stream {name}: {error}"))
            } else {
                Attempt::Fatal(bus_error(format!("create stream {name}"), error))
            });
        }
    }
    Ok(context)
}

fn events_stream(options: &JetStreamOptions) -> stream::Config {
    let mut subjects = options.subjects.clone();
    subjects.push(format!("{}.>", options.replay_prefix));
    stream::Config {
        name: options.stream.clone(),
        description: Some("meshmart's events, and replays of dead letters".to_owned()),
        subjects,
        // Limits, not work-queue or interest: every group reads each event, and a group
        // created later still finds what is younger than max_age.
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: options.replicas,
        duplicate_window: options.duplicate_window,
        max_age: options.max_age,
        ..Default::default()
    }
}

fn dead_letter_stream(options: &JetStreamOptions) -> stream::Config {
    stream::Config {
        name: options.dead_letter_stream.clone(),
        description: Some("meshmart's dead letters, one subject per consumer group".to_owned()),
        subjects: vec![format!("{}.>", options.dead_letter_prefix)],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: options.replicas,
        // De-duplicates a dead letter written again by a consumer that crashed before it
        // answered the original (its id is derived from the delivery).
        duplicate_window: options.duplicate_window,
        // No max age: a dead letter waits for an operator, however long that takes.
        // Direct gets let `meshctl dlq` list them from any replica.
        allow_direct: true,
        ..Default::default()
    }
}

impl EventBus for JetStreamBus {
    type Consumer = JetStreamConsumer;

    async fn publish(&self, event: Outgoing) -> Result<Published> {
        let mut headers = headers::to_nats(&event.headers)?;
        headers::insert(
            &mut headers,
            async_nats::header::NATS_MESSAGE_ID.as_ref(),
            &event.message_id,
        )?;
        let ack = self
            .context
            .publish_with_headers(event.subject.clone(), headers, event.payload)
            .await
            .map_err(|error| bus_error(format!("publish to {}", event.subject), error))?
            .await
            .map_err(|error| bus_error(format!("publish to {}", event.subject), error))?;
        Ok(if ack.duplicate {
            Published::Duplicate
        } else {
            Published::Stored
        })
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<JetStreamConsumer> {
        check_token("consumer group name", &config.name)?;
        if config.subjects.is_empty() {
            return Err(bus_error(
                format!("consumer {}", config.name),
                "no subjects to read",
            ));
        }
        let mut filter_subjects = config.subjects.clone();
        filter_subjects.push(self.replay_subject(&config.name));
        let pull = pull::Config {
            durable_name: Some(config.name.clone()),
            description: Some(format!("meshmart consumer group {}", config.name)),
            filter_subjects,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            deliver_policy: DeliverPolicy::All,
            // One delivery more than the attempts: the consumer loop dead-letters an event
            // when its last attempt fails, and if the process dies in between, this
            // delivery is where the loop still sees it (attempt > max_attempts) and
            // dead-letters it without handling it. Only a second crash right then leaves
            // the event to the server's MAX_DELIVERIES advisory.
            max_deliver: i64::from(config.max_attempts) + 1,
            // No server back-off: JetStream would then use backoff[0] as the ack wait and
            // apply the list to unanswered deliveries; the group's back-off is the delay
            // the consumer loop passes to each nak instead.
            ..Default::default()
        };
        let consumer = self
            .context
            .create_consumer_on_stream(pull, &self.options.stream)
            .await
            .map_err(|error| bus_error(format!("create consumer {}", config.name), error))?;
        Ok(JetStreamConsumer::new(
            config.name.clone(),
            consumer,
            self.options.replay_prefix.clone(),
        ))
    }

    async fn dead_letter(&self, consumer: &str, delivery: Delivery, error: &str) -> Result<()> {
        dead_letters::dead_letter(self, consumer, delivery, error).await
    }

    async fn dead_letters(&self, consumer: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>> {
        dead_letters::list(self, consumer, limit).await
    }

    async fn find_dead_letter(&self, id: u64) -> Result<Option<DeadLetter>> {
        dead_letters::find(self, id).await
    }

    async fn replay(&self, id: u64) -> Result<bool> {
        dead_letters::replay(self, id).await
    }
}

/// An [`Error::EventBus`] for `action`.
pub(super) fn bus_error(
    action: impl Into<String>,
    source: impl Into<Box<dyn StdError + Send + Sync>>,
) -> Error {
    Error::EventBus {
        action: action.into(),
        source: source.into(),
    }
}

/// Checks that `name` can be one token of a subject and a durable consumer's name: letters,
/// digits, `-` and `_` (NATS also forbids `.`, `*`, `>` and spaces; the rest keeps names
/// readable in subjects and file names on the server).
fn check_token(what: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(bus_error(
            format!("{what} {name:?}"),
            "must be letters, digits, '-' or '_'",
        ))
    }
}

/// `url` without a password, for errors and logs.
fn redact(url: &str) -> String {
    url.split(',')
        .map(|server| match server.rsplit_once('@') {
            Some((userinfo, host)) => {
                let scheme = userinfo.split_once("://").map(|(scheme, _)| scheme);
                match scheme {
                    Some(scheme) => format!("{scheme}://***@{host}"),
                    None => format!("***@{host}"),
                }
            }
            None => server.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_errors() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://user:secret@nats:4222,tls://a:b@other:4222"),
            "nats://***@nats:4222,tls://***@other:4222"
        );
        assert_eq!(redact("token@nats:4222"), "***@nats:4222");
    }

    #[test]
    fn names_must_be_one_plain_token() {
        assert!(check_token("group", "payments").is_ok());
        assert!(check_token("group", "order-history_2").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b", "ä"] {
            assert!(check_token("group", bad).is_err(), "{bad:?}");
        }
    }
}
