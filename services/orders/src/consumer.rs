//! The consumer group `orders`: moves each order on as the flow reports, once per event.
//!
//! | subject | event | the order moves to |
//! |---|---|---|
//! | `payments.succeeded` | PaymentSucceeded | PAID |
//! | `shipments.created` | ShipmentCreated | SHIPPED |
//! | `orders.completed` | OrderCompleted | COMPLETED |
//! | `orders.failed` | OrderFailed | FAILED, with its reason |
//!
//! Each event is applied with `inbox::apply_once`: the inbox record and the change commit
//! together, so a redelivered event changes nothing; `store::advance` weighs it against
//! where the order stands, so a late one cannot move an order back. The history entry's
//! time is the event's `event_time`, the producer's.
//!
//! An event about an order this service does not have is dead-lettered at once
//! (permanent): orders commits an order before its relay publishes anything about it, so
//! no event of this flow can come before its order is visible; one for an unknown order
//! is foreign (another environment's, or a bug), and waiting would not make it ours.
//! Database failures are transient: redelivered after the group's backoff.

use meshmart::{
    db::now_millis,
    events::{
        HandlerError, Incoming, inbox,
        metadata::{decode, subjects},
        outbox::Outbox,
    },
    proto::events::{
        EventMetadata, OrderCompleted, OrderFailed, PaymentSucceeded, ShipmentCreated,
    },
};

use crate::{
    Error,
    metrics::Metrics,
    store::{self, Advance, State, Store},
    watch::Changes,
};

/// What the consumer needs to apply an event.
#[derive(Debug, Clone)]
pub(crate) struct Handler {
    store: Store,
    outbox: Outbox,
    changes: Changes,
    metrics: Metrics,
    group: String,
}

/// What one event says about its order.
struct Reported {
    metadata: EventMetadata,
    state: State,
    reason: String,
}

impl meshmart::events::EventHandler for Handler {
    async fn handle(&self, incoming: Incoming) -> Result<(), HandlerError> {
        let reported = reported(&incoming)?;
        let metadata = reported.metadata.clone();
        meshmart::events::metadata::within(&incoming, &metadata, self.apply(reported)).await
    }
}

impl Handler {
    pub(crate) fn new(
        store: Store,
        outbox: Outbox,
        changes: Changes,
        metrics: Metrics,
        group: String,
    ) -> Self {
        Self {
            store,
            outbox,
            changes,
            metrics,
            group,
        }
    }

    async fn apply(&self, reported: Reported) -> Result<(), HandlerError> {
        let Reported {
            metadata,
            state,
            reason,
        } = reported;
        let order_id = metadata.order_id.as_str();
        let time_ms = metadata.event_time.as_ref().map_or_else(now_millis, millis);
        let mut advanced = Advance::Unchanged;
        let applied = inbox::apply_once(
            self.store.pools(),
            &self.outbox,
            &self.group,
            &metadata.event_id,
            async |tx| {
                advanced = store::advance(tx, order_id, state, time_ms, &reason).await?;
                Ok::<_, Error>(Vec::new())
            },
        )
        .await;
        match applied {
            Ok(false) => self.metrics.event("repeated"),
            Ok(true) => match advanced {
                Advance::Transition => {
                    self.metrics.event("transition");
                    self.metrics.transition(state);
                    self.changes.changed(order_id);
                    tracing::debug!(state = state.as_str(), "order moved on");
                }
                Advance::HistoryOnly => self.metrics.event("history_only"),
                Advance::Unchanged => self.metrics.event("unchanged"),
            },
            Err(Error::NotFound(_)) => {
                self.metrics.event("unknown_order");
                tracing::warn!(
                    "event about an order this service does not have; dead-lettering it"
                );
                return Err(HandlerError::Permanent(format!(
                    "order {order_id} is not one of this service's orders"
                )));
            }
            Err(error) => return Err(HandlerError::Transient(error.to_string())),
        }
        Ok(())
    }
}

/// The event's order, the state it reports and why; permanent for an event that does not
/// decode, comes on a subject this group does not read, or lacks its order or its id.
fn reported(incoming: &Incoming) -> Result<Reported, HandlerError> {
    let (metadata, state, reason) = match incoming.subject.as_str() {
        subjects::PAYMENT_SUCCEEDED => (
            decode::<PaymentSucceeded>(incoming)?.metadata,
            State::Paid,
            String::new(),
        ),
        subjects::SHIPMENT_CREATED => (
            decode::<ShipmentCreated>(incoming)?.metadata,
            State::Shipped,
            String::new(),
        ),
        subjects::ORDER_COMPLETED => (
            decode::<OrderCompleted>(incoming)?.metadata,
            State::Completed,
            String::new(),
        ),
        subjects::ORDER_FAILED => {
            let failed = decode::<OrderFailed>(incoming)?;
            (failed.metadata, State::Failed, failed.reason)
        }
        other => {
            return Err(HandlerError::Permanent(format!(
                "{other} is not a subject the orders group reads"
            )));
        }
    };
    let metadata = metadata
        .filter(|metadata| !metadata.event_id.is_empty() && !metadata.order_id.is_empty())
        .ok_or_else(|| {
            HandlerError::Permanent(format!(
                "{} without an event id or an order id",
                incoming.subject
            ))
        })?;
    Ok(Reported {
        metadata,
        state,
        reason,
    })
}

fn millis(time: &prost_types::Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(time.nanos / 1_000_000))
}
