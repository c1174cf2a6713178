//! A member of a consumer group: pulls from the group's durable consumer, one event at a time.

use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{
        PullConsumer,
        pull::{self, MessagesErrorKind},
    },
    message::Acker,
};
use tokio_stream::StreamExt;

use super::{bus_error, headers};
use crate::{
    Result,
    events::{BoxFuture, Consumer, Delivery, Reply},
};

/// How long one pull request waits on the server for an event before the client sends
/// the next; an idle member costs one request per period.
const PULL_EXPIRY: Duration = Duration::from_secs(30);
/// How often the server says "still here, nothing to send" during a pull: a pull that
/// misses two is reissued, so a lost connection is noticed within seconds.
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// The pause before pulling again after the connection or the pull failed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A member of a consumer group on JetStream.
pub struct JetStreamConsumer {
    group: String,
    consumer: PullConsumer,
    replay_prefix: String,
    /// The open pull, kept between calls so that an event already on its way is not lost
    /// when a caller stops waiting (it would come back only after `ack_wait`).
    messages: Option<pull::Stream>,
}

impl std::fmt::Debug for JetStreamConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamConsumer")
            .field("group", &self.group)
            .field("pulling", &self.messages.is_some())
            .finish_non_exhaustive()
    }
}

impl JetStreamConsumer {
    pub(super) fn new(group: String, consumer: PullConsumer, replay_prefix: String) -> Self {
        Self {
            group,
            consumer,
            replay_prefix,
            messages: None,
        }
    }

    async fn open(&self) -> Result<pull::Stream> {
        self.consumer
            .stream()
            // One at a time: an event fetched ahead would sit in this process with its
            // ack_wait running, while another member of the group could be handling it.
            .max_messages_per_batch(1)
            .expires(PULL_EXPIRY)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|error| bus_error(format!("pull for {}", self.group), error))
    }

    fn delivery(&self, message: jetstream::Message) -> Result<Delivery> {
        let (attempt, sequence) = {
            let info = message
                .info()
                .map_err(|error| bus_error(format!("delivery to {}", self.group), error))?;
            (
                u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
                info.stream_sequence,
            )
        };
        let (message, acker) = message.split();
        let map = message.headers.as_ref();
        let replayed = message
            .subject
            .strip_prefix(self.replay_prefix.as_str())
            .is_some_and(|rest| rest.starts_with('.'));
        // A replay carries the subject and id the event was first published with.
        let subject = headers::get(map, headers::SUBJECT)
            .filter(|_| replayed)
            .map_or_else(|| message.subject.to_string(), str::to_owned);
        let message_id = headers::get(map, headers::MESSAGE_ID)
            .filter(|_| replayed)
            .or_else(|| headers::get(map, async_nats::header::NATS_MESSAGE_ID.as_ref()))
            .map_or_else(|| format!("seq-{sequence}"), str::to_owned);
        let delivery_headers = headers::from_nats(map);
        Ok(Delivery::new(
            subject,
            message_id,
            delivery_headers,
            message.payload,
            attempt,
            Box::new(JetStreamReply {
                acker,
                sequence,
                group: self.group.clone(),
            }),
        ))
    }
}

impl Consumer for JetStreamConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            let messages = match &mut self.messages {
                Some(messages) => messages,
                None => match self.open().await {
                    Ok(messages) => self.messages.insert(messages),
                    Err(error) => {
                        tracing::warn!(%error, group = %self.group, "cannot pull; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                },
            };
            match messages.next().await {
                Some(Ok(message)) => return self.delivery(message),
                Some(Err(error)) => {
                    self.messages = None;
                    match error.kind() {
                        // The group is gone or cannot be pulled from like this: waiting
                        // cures none of these.
                        MessagesErrorKind::ConsumerDeleted
                        | MessagesErrorKind::PushBasedConsumer
                        | MessagesErrorKind::RequestLimitExceeded => {
                            return Err(bus_error(format!("pull for {}", self.group), error));
                        }
                        // A reconnect, a server restart, JetStream electing a leader.
                        MessagesErrorKind::MissingHeartbeat
                        | MessagesErrorKind::Pull
                        | MessagesErrorKind::NoResponders
                        | MessagesErrorKind::Other => {
                            tracing::warn!(%error, group = %self.group, "pull interrupted; retrying");
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                    }
                }
                None => self.messages = None,
            }
        }
    }
}

/// Answers one delivery. The server confirms each answer (a "double ack"), so an ack that
/// returns is recorded and a lost one is an error here, not a surprise redelivery.
pub(super) struct JetStreamReply {
    acker: Acker,
    /// The event's sequence in the events stream: with the group, it names this event
    /// across its redeliveries (a replay is a new event with a new sequence).
    pub(super) sequence: u64,
    group: String,
}

impl JetStreamReply {
    pub(super) async fn answer(&self, kind: AckKind) -> Result<()> {
        self.acker
            .double_ack_with(kind)
            .await
            .map_err(|error| bus_error(format!("answer a delivery to {}", self.group), error))
    }
}

impl Reply for JetStreamReply {
    fn ack(self: Box<Self>) -> BoxFuture<Result<()>> {
        Box::pin(async move { self.answer(AckKind::Ack).await })
    }

    fn nak(self: Box<Self>, delay: Duration) -> BoxFuture<Result<()>> {
        Box::pin(async move { self.answer(AckKind::Nak(Some(delay))).await })
    }
}
