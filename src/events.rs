//! The event bus every service publishes to and consumes from: one interface, two brokers.
//!
//! - [`jetstream`]: NATS JetStream, when `NATS_URL` is set (the cluster).
//! - [`embedded`]: a durable log in SQLite (WAL mode) in `DATA_DIR`, shared by the processes
//!   of `meshctl up` (one machine).
//!
//! Both keep the same promises, held by one behaviour suite (`tests/event_bus.rs`):
//!
//! - **Publish** is durable once it returns, and de-duplicated on the message id: publishing
//!   the same id again within the broker's window stores nothing new and says so.
//! - **Consumer groups** are durable and named; each group receives every event on its
//!   subjects (fan-out between groups), and the members of one group share the work.
//! - **Explicit ack.** A delivery neither acked nor nakked within `ack_wait` is delivered
//!   again; a nak redelivers after its delay. Each delivery says which attempt it is.
//! - **Bounded redelivery**: after `max_attempts` failed attempts, or at once for an event
//!   that cannot be decoded, [`run_consumer`] moves the event to the dead-letter stream with
//!   the error, the attempts and the original subject. An operator lists, shows and replays
//!   dead letters (`meshctl dlq`).
//! - **No order is promised**: consumers check state, so a late or repeated event is harmless.
//!
//! What travels: a subject, a message id, headers (the W3C trace context among them) and
//! the encoded protobuf event.

mod bus;
pub mod inbox;
pub mod jetstream;
pub mod metadata;
pub mod outbox;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;

mod config;
mod consumer;
mod consumer_settings;
pub mod embedded;
#[cfg(feature = "testing")]
pub mod suite;
mod validate;

pub use bus::{Bus, BusConsumer, connect};
pub use config::EventsConfig;
pub use consumer::{EventHandler, HandlerError, Incoming, run_consumer};
pub use consumer_settings::ConsumerDefaults;

/// Message headers: the trace context (`traceparent`, `tracestate`), and whatever else a
/// producer adds. Names are lowercase.
pub type Headers = BTreeMap<String, String>;

/// An event on its way to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where it goes, for example `orders.created`.
    pub subject: String,
    /// What the broker de-duplicates on (`Nats-Msg-Id` on JetStream): the event id.
    pub message_id: String,
    pub headers: Headers,
    pub payload: Bytes,
}

/// Whether a publish stored the event, or found it stored already under its message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Stored,
    Duplicate,
}

/// A durable consumer group: its name, what it reads, and how hard it tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// The group's durable name, for example `payments`; also names its dead letters.
    pub name: String,
    /// The subjects it receives (exact names, or a trailing `>` for everything below).
    pub subjects: Vec<String>,
    /// How long a delivery may stay unanswered before it is delivered again.
    pub ack_wait: Duration,
    /// Attempts before the event is dead-lettered.
    pub max_attempts: u32,
    /// The delay before attempt `n + 2` is `backoff[n]` (the last entry repeats).
    pub backoff: Vec<Duration>,
}

impl ConsumerConfig {
    /// Checks what both brokers need: a name usable as a durable name, at least one subject
    /// filter, each an exact subject or ending in a `>` token (no `*`: the embedded log does
    /// not match it, and both brokers must select the same events), and one attempt at least.
    pub fn validate(&self) -> crate::Result<()> {
        validate::consumer(self)
    }
}

/// A dead letter: an event a consumer group gave up on, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (the stream sequence on JetStream).
    pub id: u64,
    /// The consumer group that gave up.
    pub consumer: String,
    /// The subject it was published on.
    pub subject: String,
    pub message_id: String,
    pub headers: Headers,
    pub payload: Bytes,
    /// The last error, as the consumer reported it.
    pub error: String,
    /// How many attempts were made.
    pub attempts: u32,
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub time_ms: i64,
}

/// A boxed future, for the acknowledgement handles of both brokers.
pub(crate) type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// How a delivery is answered; each broker has its own. `Any`, so that a broker's
/// `dead_letter` can take its own handle back out of a [`Delivery`] ([`Delivery::reply`]).
pub(crate) trait Reply: std::any::Any + Send + Sync {
    fn ack(self: Box<Self>) -> BoxFuture<crate::Result<()>>;
    fn nak(self: Box<Self>, delay: Duration) -> BoxFuture<crate::Result<()>>;
}

/// One delivery of an event to a consumer group. Answer it with [`Delivery::ack`] after
/// its effect has committed, or [`Delivery::nak`] to have it again later; unanswered, it
/// comes back after the group's `ack_wait`.
pub struct Delivery {
    /// The subject it was published on (also for a replayed dead letter).
    pub subject: String,
    pub message_id: String,
    pub headers: Headers,
    pub payload: Bytes,
    /// Which attempt this is: 1 for the first delivery.
    pub attempt: u32,
    reply: Box<dyn Reply>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("message_id", &self.message_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    #[allow(dead_code)] // used by the brokers' implementations
    pub(crate) fn new(
        subject: String,
        message_id: String,
        headers: Headers,
        payload: Bytes,
        attempt: u32,
        reply: Box<dyn Reply>,
    ) -> Self {
        Self {
            subject,
            message_id,
            headers,
            payload,
            attempt,
            reply,
        }
    }

    /// The broker's own handle, or `None` for a delivery that came from another broker.
    #[allow(dead_code)] // used by the brokers' implementations
    pub(crate) fn reply<R: Reply>(&self) -> Option<&R> {
        let reply: &dyn std::any::Any = &*self.reply;
        reply.downcast_ref()
    }

    /// Done with: never delivered to this group again.
    pub async fn ack(self) -> crate::Result<()> {
        self.reply.ack().await
    }

    /// Not done: delivered again after `delay`.
    pub async fn nak(self, delay: Duration) -> crate::Result<()> {
        self.reply.nak(delay).await
    }
}

/// A broker. Clones share one connection.
pub trait EventBus: Clone + Send + Sync + 'static {
    type Consumer: Consumer;

    /// Stores `event` durably before it returns; a message id seen before stores nothing.
    fn publish(&self, event: Outgoing) -> impl Future<Output = crate::Result<Published>> + Send;

    /// Creates the durable group if it is new (idempotently: every replica calls this at
    /// start) and joins it.
    fn consumer(
        &self,
        config: &ConsumerConfig,
    ) -> impl Future<Output = crate::Result<Self::Consumer>> + Send;

    /// Moves `delivery` to the dead-letter stream under `consumer` with `error`, and
    /// answers it so the group never sees it again.
    fn dead_letter(
        &self,
        consumer: &str,
        delivery: Delivery,
        error: &str,
    ) -> impl Future<Output = crate::Result<()>> + Send;

    /// Dead letters, oldest first, of one group or of all; at most `limit`.
    fn dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = crate::Result<Vec<DeadLetter>>> + Send;

    /// One dead letter, if it is still there.
    fn find_dead_letter(
        &self,
        id: u64,
    ) -> impl Future<Output = crate::Result<Option<DeadLetter>>> + Send;

    /// Delivers a dead letter again, to the group that gave up on it only, and removes it
    /// from the dead-letter stream. `false` if there is no such dead letter.
    fn replay(&self, id: u64) -> impl Future<Output = crate::Result<bool>> + Send;
}

/// A member of a durable consumer group.
pub trait Consumer: Send + 'static {
    /// The next delivery, waiting for one as long as it takes.
    fn next(&mut self) -> impl Future<Output = crate::Result<Delivery>> + Send;
}
