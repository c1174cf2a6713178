//! The consumer loop every service runs, on either broker: take a delivery, hand it to the
//! handler, answer it by the handler's verdict, and give up on an event after
//! `max_attempts` (or at once when it can never succeed) by dead-lettering it.

use std::{pin::pin, time::Duration};

use bytes::Bytes;

use super::{Consumer, ConsumerConfig, Delivery, EventBus, Headers};

/// What a handler gets: the event and which attempt this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub subject: String,
    pub message_id: String,
    pub headers: Headers,
    pub payload: Bytes,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// What a consumer group does with each event it receives ([`run_consumer`]): every
/// consuming service implements it once, dispatching on the subject.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, incoming: Incoming) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Why a handler did not finish an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// May succeed later (a database or a service out of reach): delivered again after the
    /// group's backoff, until `max_attempts`.
    #[error("{0}")]
    Transient(String),
    /// Can never succeed (the payload does not decode, the event contradicts itself):
    /// dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

/// A payload that does not decode never will: permanent.
impl From<prost::DecodeError> for HandlerError {
    fn from(error: prost::DecodeError) -> Self {
        Self::Permanent(format!("undecodable event: {error}"))
    }
}

/// A database error while applying an event: transient, whatever its kind. One that is out
/// of reach comes back; one that never will (a bug, a schema a release behind) ends in the
/// dead letters after `max_attempts`, where an operator sees it and can replay the event
/// after the fix, rather than at once on a guess. So handlers can run `inbox::apply_once`
/// with this as its error type.
impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Transient(format!("database: {error}"))
    }
}

/// The first pause after the broker itself fails (not the handler), doubled on every
/// failure in a row up to [`MAX_PAUSE`], so a broker that is down is not hammered and one
/// that is back is used again within seconds.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How long to wait after a broker failure; reset by the next success.
#[derive(Debug)]
struct Pause(Duration);

impl Pause {
    fn new() -> Self {
        Self(FIRST_PAUSE)
    }

    fn reset(&mut self) {
        self.0 = FIRST_PAUSE;
    }

    /// The pause to take now; the next one is twice as long, up to the cap.
    fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(MAX_PAUSE);
        pause
    }
}

/// The delay before the attempt after `attempt`: `backoff[attempt - 1]`, the last entry
/// repeating, none if the list is empty.
fn backoff(config: &ConsumerConfig, attempt: u32) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    config
        .backoff
        .get(index)
        .or(config.backoff.last())
        .copied()
        .unwrap_or(Duration::ZERO)
}

/// Consumes `config`'s group on `bus` until `shutdown` completes, calling `handler` for
/// every delivery and answering it by the result:
///
/// - `Ok`: ack.
/// - [`HandlerError::Transient`] before `max_attempts`: nak, redelivered after the backoff
///   for that attempt; at `max_attempts`: dead letter.
/// - [`HandlerError::Permanent`]: dead letter at once.
///
/// A delivery already past `max_attempts` (its process died mid-work, again and again) is
/// dead-lettered without calling the handler. A delivery in hand when `shutdown` completes
/// is finished first; one not yet taken stays with the broker. Broker failures are logged
/// and waited out (from 100 ms, doubling, up to 5 s); a handler that panics leaves its
/// delivery unanswered, so it comes back after `ack_wait`.
///
/// Fails only for a configuration no broker accepts ([`ConsumerConfig::validate`]).
pub async fn run_consumer<B, H, F>(
    bus: B,
    config: ConsumerConfig,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> crate::Result<()>
where
    B: EventBus,
    H: Fn(Incoming) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    config.validate()?;
    let mut shutdown = pin!(shutdown);
    let mut pause = Pause::new();
    let group = config.name.as_str();
    let mut consumer = loop {
        let joined = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            joined = bus.consumer(&config) => joined,
        };
        match joined {
            Ok(consumer) => break consumer,
            Err(error) => {
                let wait = pause.next();
                tracing::warn!(consumer = group, %error, retry_in_ms = wait.as_millis(), "cannot join the consumer group; retrying");
                tokio::select! {
                    biased;
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    };
    pause.reset();
    tracing::info!(consumer = group, "consuming");
    loop {
        // Waiting for a delivery is cut short by the shutdown; a claim lost that way comes
        // back after ack_wait.
        let next = tokio::select! {
            biased;
            () = &mut shutdown => break,
            next = consumer.next() => next,
        };
        let answered = match next {
            Ok(delivery) => handle(&bus, &config, &handler, delivery).await,
            Err(error) => Err(error),
        };
        match answered {
            Ok(()) => pause.reset(),
            Err(error) => {
                let wait = pause.next();
                tracing::warn!(consumer = group, %error, retry_in_ms = wait.as_millis(), "event broker failed; waiting");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    tracing::info!(consumer = group, "stopped consuming");
    Ok(())
}

/// Runs the handler on one delivery and answers it, in a span naming the event; an error
/// is the broker's.
async fn handle<B, H, F>(
    bus: &B,
    config: &ConsumerConfig,
    handler: &H,
    delivery: Delivery,
) -> crate::Result<()>
where
    B: EventBus,
    H: Fn(Incoming) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let span = tracing::debug_span!(
        "event",
        consumer = %config.name,
        subject = %delivery.subject,
        message_id = %delivery.message_id,
        attempt = delivery.attempt,
    );
    tracing::Instrument::instrument(answer(bus, config, handler, delivery), span).await
}

async fn answer<B, H, F>(
    bus: &B,
    config: &ConsumerConfig,
    handler: &H,
    delivery: Delivery,
) -> crate::Result<()>
where
    B: EventBus,
    H: Fn(Incoming) -> F,
    F: Future<Output = Result<(), HandlerError>>,
{
    let group = config.name.as_str();
    let attempt = delivery.attempt;
    if attempt > config.max_attempts {
        let error = format!(
            "gave up after {} attempts: none was answered (the consumer stopped or died mid-work)",
            attempt - 1
        );
        return bus.dead_letter(group, delivery, &error).await;
    }
    let incoming = Incoming {
        subject: delivery.subject.clone(),
        message_id: delivery.message_id.clone(),
        headers: delivery.headers.clone(),
        payload: delivery.payload.clone(),
        attempt,
    };
    match handler(incoming).await {
        Ok(()) => delivery.ack().await,
        Err(HandlerError::Transient(error)) if attempt < config.max_attempts => {
            let delay = backoff(config, attempt);
            tracing::warn!(%error, retry_in_ms = delay.as_millis(), "event handler failed; redelivering later");
            delivery.nak(delay).await
        }
        Err(HandlerError::Transient(error)) => {
            let error = format!("failed {attempt} times; last: {error}");
            bus.dead_letter(group, delivery, &error).await
        }
        Err(HandlerError::Permanent(error)) => bus.dead_letter(group, delivery, &error).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_its_last_entry() {
        let mut config = ConsumerConfig {
            name: "g".to_owned(),
            subjects: vec![">".to_owned()],
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
        };
        assert_eq!(backoff(&config, 1), Duration::from_secs(1));
        assert_eq!(backoff(&config, 2), Duration::from_secs(5));
        assert_eq!(backoff(&config, 9), Duration::from_secs(5));
        config.backoff.clear();
        assert_eq!(backoff(&config, 1), Duration::ZERO);
    }

    #[test]
    fn broker_pauses_double_up_to_the_cap() {
        let mut pause = Pause::new();
        let pauses: Vec<_> = (0..8).map(|_| pause.next()).collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(pauses[7], MAX_PAUSE);
        pause.reset();
        assert_eq!(pause.next(), FIRST_PAUSE);
    }
}
