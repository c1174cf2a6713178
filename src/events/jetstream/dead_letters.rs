//! Dead letters on JetStream: one subject per group in the dead-letter stream, the stream
//! sequence as the id, and a replay through the group's own replay subject.

use std::any::Any;

use async_nats::{
    HeaderMap,
    jetstream::{
        AckKind,
        message::StreamMessage,
        stream::{DirectGetErrorKind, RawMessageErrorKind},
    },
};

use super::{JetStreamBus, bus_error, check_token, consumer::JetStreamReply, headers};
use crate::{
    Result,
    events::{DeadLetter, Delivery},
};

/// Stores `delivery` under `group` in the dead-letter stream, then terminates it.
///
/// Terminated rather than acked: both end its deliveries to the group, but a termination
/// is what the server reports as a failure (`$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED`),
/// so monitoring can count dead letters without reading the stream.
///
/// The dead letter's `Nats-Msg-Id` is derived from the group, the event's id and its
/// sequence in the events stream, all the same on every redelivery: a process that
/// crashed between storing and terminating, and dead-letters the event again on its next
/// delivery, stores nothing new. The sequence keeps a replayed event (a new sequence) that
/// fails again from being taken for its first dead letter.
pub(super) async fn dead_letter(
    bus: &JetStreamBus,
    group: &str,
    delivery: Delivery,
    error: &str,
) -> Result<()> {
    check_token("consumer group name", group)?;
    let Delivery {
        subject,
        message_id,
        headers: event_headers,
        payload,
        attempt,
        reply,
    } = delivery;
    let reply: Box<dyn Any + Send + Sync> = reply;
    let Ok(reply) = reply.downcast::<JetStreamReply>() else {
        return Err(bus_error(
            format!("dead-letter for {group}"),
            "the delivery did not come from JetStream",
        ));
    };
    let mut map = headers::to_nats(&event_headers)?;
    let id = format!("{group}:{message_id}:{}", reply.sequence);
    let attempts = attempt.to_string();
    let error = headers::escape(error);
    for (name, value) in [
        (async_nats::header::NATS_MESSAGE_ID.as_ref(), id.as_str()),
        (headers::CONSUMER, group),
        (headers::SUBJECT, subject.as_str()),
        (headers::MESSAGE_ID, message_id.as_str()),
        (headers::ERROR, error.as_str()),
        (headers::ATTEMPTS, attempts.as_str()),
    ] {
        headers::insert(&mut map, name, value)?;
    }
    let to = bus.dead_letter_subject(group);
    let action = || format!("dead-letter {message_id} for {group}");
    bus.context
        .publish_with_headers(to, map, payload)
        .await
        .map_err(|e| bus_error(action(), e))?
        .await
        .map_err(|e| bus_error(action(), e))?;
    reply.answer(AckKind::Term).await?;
    tracing::warn!(group, %subject, %message_id, attempts = attempt, "event dead-lettered");
    Ok(())
}

/// Dead letters oldest first, of `group` or of all, at most `limit`: one direct get each,
/// each for the next message on the subject after the last one found.
pub(super) async fn list(
    bus: &JetStreamBus,
    group: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    let subject = match group {
        Some(group) => {
            check_token("consumer group name", group)?;
            bus.dead_letter_subject(group)
        }
        None => format!("{}.>", bus.options.dead_letter_prefix),
    };
    let stream = dead_letter_stream(bus).await?;
    let mut letters = Vec::new();
    let mut from = 1;
    while letters.len() < limit {
        match stream
            .direct_get_next_for_subject(&subject, Some(from))
            .await
        {
            Ok(message) => {
                from = message.sequence + 1;
                letters.push(parse(bus, message));
            }
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => break,
            Err(error) => return Err(bus_error("list dead letters", error)),
        }
    }
    Ok(letters)
}

/// One dead letter, read from the stream's leader (not a replica that may lag behind, as
/// a replay right after depends on it).
pub(super) async fn find(bus: &JetStreamBus, id: u64) -> Result<Option<DeadLetter>> {
    let stream = dead_letter_stream(bus).await?;
    match stream.get_raw_message(id).await {
        Ok(message) => Ok(Some(parse(bus, message))),
        Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(error) => Err(bus_error(format!("read dead letter {id}"), error)),
    }
}

/// Publishes dead letter `id` again on its group's replay subject, which no other group
/// reads, then deletes it. The replay's `Nats-Msg-Id` is derived from the dead letter, so
/// a replay retried after a failed delete is stored once.
pub(super) async fn replay(bus: &JetStreamBus, id: u64) -> Result<bool> {
    let Some(letter) = find(bus, id).await? else {
        return Ok(false);
    };
    check_token("consumer group name", &letter.consumer)?;
    let mut map: HeaderMap = headers::to_nats(&letter.headers)?;
    let replay_id = format!("replay:{id}:{}", letter.message_id);
    for (name, value) in [
        (
            async_nats::header::NATS_MESSAGE_ID.as_ref(),
            replay_id.as_str(),
        ),
        (headers::SUBJECT, letter.subject.as_str()),
        (headers::MESSAGE_ID, letter.message_id.as_str()),
    ] {
        headers::insert(&mut map, name, value)?;
    }
    let action = || format!("replay dead letter {id}");
    bus.context
        .publish_with_headers(bus.replay_subject(&letter.consumer), map, letter.payload)
        .await
        .map_err(|e| bus_error(action(), e))?
        .await
        .map_err(|e| bus_error(action(), e))?;
    let stream = dead_letter_stream(bus).await?;
    if let Err(error) = stream.delete_message(id).await {
        // Another replay of the same dead letter may have deleted it first; its publish
        // was a duplicate of this one, so the event went out once either way.
        if find(bus, id).await?.is_some() {
            return Err(bus_error(format!("delete dead letter {id}"), error));
        }
    }
    tracing::info!(id, group = %letter.consumer, subject = %letter.subject, "dead letter replayed");
    Ok(true)
}

async fn dead_letter_stream(
    bus: &JetStreamBus,
) -> Result<async_nats::jetstream::stream::Stream<()>> {
    bus.context
        .get_stream_no_info(&bus.options.dead_letter_stream)
        .await
        .map_err(|error| bus_error("open the dead-letter stream", error))
}

/// A dead letter from its stored message. Lenient: a message someone else put on a
/// dead-letter subject still lists, with what it lacks left empty.
fn parse(bus: &JetStreamBus, message: StreamMessage) -> DeadLetter {
    let map = Some(&message.headers);
    let text = |name| headers::get(map, name).unwrap_or_default().to_owned();
    let consumer = headers::get(map, headers::CONSUMER).map_or_else(
        || {
            message
                .subject
                .strip_prefix(bus.options.dead_letter_prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or_default()
                .to_owned()
        },
        str::to_owned,
    );
    DeadLetter {
        id: message.sequence,
        consumer,
        subject: text(headers::SUBJECT),
        message_id: text(headers::MESSAGE_ID),
        headers: headers::from_nats(map),
        payload: message.payload,
        error: headers::unescape(&text(headers::ERROR)),
        attempts: text(headers::ATTEMPTS).parse().unwrap_or(0),
        time_ms: i64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    }
}
