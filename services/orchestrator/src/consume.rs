//! The consumer group `orchestrator`: each event of an order moves its saga, and the saga
//! decides what to call and what to publish (`saga::apply`).
//!
//! Per event: read the saga and work out the inventory call the event needs; make it
//! (CommitReservation or ReleaseReservation, both idempotent in inventory, so making it
//! again after a crash before the commit is harmless); then, in one `apply_once`
//! transaction, lock the saga, apply the event again to what is now there, and write the
//! saga, its steps and the events to publish. If the saga moved in between and now needs
//! a call that was not made, the event is tried again. An inventory that cannot be reached
//! is transient: the event is redelivered after the backoff, and after `max_attempts`
//! dead-lettered, to be replayed once inventory is back. A release that cannot be made
//! leaves the saga COMPENSATING with its reason, so GetSaga shows what is pending.

use meshmart::{
    client::MeshChannel,
    db::now_millis,
    events::{
        HandlerError, Incoming, Outgoing,
        metadata::{caused_by, decode, outgoing, subjects},
        outbox::Outbox,
    },
    proto::{
        events::{
            EventMetadata, OrderCompleted, OrderCreated, OrderFailed, PaymentDeclined,
            PaymentFailed, PaymentRefunded, PaymentSucceeded, RefundRequested, ShipmentCreated,
            ShipmentFailed,
        },
        inventory::{
            CommitReservationRequest, ReleaseReservationRequest,
            inventory_service_client::InventoryServiceClient,
        },
    },
};
use tonic::Code;

use crate::{
    saga::{self, Action, Event, Publish, Saga, State},
    store::{Store, tx},
};

/// The subjects the group reads.
pub const SUBJECTS: [&str; 7] = [
    subjects::ORDER_CREATED,
    subjects::PAYMENT_SUCCEEDED,
    subjects::PAYMENT_DECLINED,
    subjects::PAYMENT_FAILED,
    subjects::SHIPMENT_CREATED,
    subjects::SHIPMENT_FAILED,
    subjects::PAYMENT_REFUNDED,
];

const PRODUCER: &str = "orchestrator";

fn event(incoming: &Incoming) -> Result<(Option<EventMetadata>, Event), HandlerError> {
    Ok(match incoming.subject.as_str() {
        subjects::ORDER_CREATED => {
            let e: OrderCreated = decode(incoming)?;
            (e.metadata, Event::OrderCreated)
        }
        subjects::PAYMENT_SUCCEEDED => {
            let e: PaymentSucceeded = decode(incoming)?;
            if e.charge_id.is_empty() {
                return Err(HandlerError::Permanent(
                    "PaymentSucceeded without a charge_id".to_owned(),
                ));
            }
            let charge_id = e.charge_id;
            (e.metadata, Event::PaymentSucceeded { charge_id })
        }
        subjects::PAYMENT_DECLINED => {
            let e: PaymentDeclined = decode(incoming)?;
            (e.metadata, Event::PaymentDeclined { reason: e.reason })
        }
        subjects::PAYMENT_FAILED => {
            let e: PaymentFailed = decode(incoming)?;
            let event = Event::PaymentFailed {
                reason: e.reason,
                will_retry: e.will_retry,
            };
            (e.metadata, event)
        }
        subjects::SHIPMENT_CREATED => {
            let e: ShipmentCreated = decode(incoming)?;
            (e.metadata, Event::ShipmentCreated)
        }
        subjects::SHIPMENT_FAILED => {
            let e: ShipmentFailed = decode(incoming)?;
            (e.metadata, Event::ShipmentFailed { reason: e.reason })
        }
        subjects::PAYMENT_REFUNDED => {
            let e: PaymentRefunded = decode(incoming)?;
            let refund_id = e.refund_id;
            (e.metadata, Event::PaymentRefunded { refund_id })
        }
        other => {
            return Err(HandlerError::Permanent(format!(
                "the orchestrator does not read {other}"
            )));
        }
    })
}

/// What the consumer loop calls for every delivery.
#[derive(Debug, Clone)]
pub(crate) struct Handler {
    pub(crate) group: String,
    pub(crate) store: Store,
    pub(crate) outbox: Outbox,
    pub(crate) inventory: InventoryServiceClient<MeshChannel>,
}

impl meshmart::events::EventHandler for Handler {
    async fn handle(&self, incoming: Incoming) -> Result<(), HandlerError> {
        let (metadata, event) = event(&incoming)?;
        let metadata = metadata
            .filter(|m| !m.event_id.is_empty() && !m.order_id.is_empty())
            .ok_or_else(|| {
                HandlerError::Permanent(format!(
                    "{} without an event_id or order_id",
                    incoming.subject
                ))
            })?;
        meshmart::events::metadata::within(&incoming, &metadata, self.apply(&metadata, &event))
            .await
    }
}

impl Handler {
    async fn apply(&self, metadata: &EventMetadata, event: &Event) -> Result<(), HandlerError> {
        let order_id = metadata.order_id.as_str();
        let before = self
            .store
            .find(order_id)
            .await?
            .unwrap_or_else(|| Saga::new(order_id, now_millis()));
        let done = saga::apply(&before, event).action;
        if let Err(error) = self.act(order_id, done).await {
            if done == Action::Release {
                self.still_compensating(metadata, event, &error).await?;
            }
            return Err(error);
        }
        let mut moved = None;
        meshmart::events::inbox::apply_once(
            self.store.pools(),
            &self.outbox,
            &self.group,
            &metadata.event_id,
            async |tx| {
                let now = now_millis();
                let current = tx::lock_or_create(tx, order_id, now).await?;
                let outcome = saga::apply(&current, event);
                if outcome.action != Action::None && outcome.action != done {
                    return Err(HandlerError::Transient(format!(
                        "saga {order_id} moved while this event was handled; trying again"
                    )));
                }
                tx::save(tx, &outcome.saga, now).await?;
                tx::add_steps(tx, order_id, &metadata.event_id, &outcome.steps, now).await?;
                if outcome.saga.state != current.state {
                    moved = Some((current.state, outcome.saga.state));
                }
                Ok(outcome
                    .publish
                    .iter()
                    .map(|publish| to_event(metadata, publish))
                    .collect::<Vec<Outgoing>>())
            },
        )
        .await?;
        if let Some((from, to)) = moved {
            tracing::debug!(from = from.as_str(), to = to.as_str(), "saga moved");
        }
        Ok(())
    }

    /// Makes the inventory call `action` needs. Inventory's own answers for a reservation
    /// that cannot take the call are the only permanent failures.
    async fn act(&self, order_id: &str, action: Action) -> Result<(), HandlerError> {
        let mut inventory = self.inventory.clone();
        let reservation_id = order_id.to_owned();
        match action {
            Action::None => Ok(()),
            Action::Commit => match inventory
                .commit_reservation(CommitReservationRequest { reservation_id })
                .await
            {
                Ok(_) => Ok(()),
                // Released or expired before the order was paid and shipped, or never
                // made: nothing waiting fixes it, so an operator should look.
                Err(status)
                    if matches!(
                        status.code(),
                        Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument
                    ) =>
                {
                    Err(HandlerError::Permanent(format!(
                        "cannot commit reservation {order_id}: {}",
                        status.message()
                    )))
                }
                Err(status) => Err(transient("commit", order_id, &status)),
            },
            Action::Release => match inventory
                .release_reservation(ReleaseReservationRequest { reservation_id })
                .await
            {
                Ok(_) => Ok(()),
                // Nothing is held under the order (never reserved, or expired): nothing
                // to give back, so the compensation goes on.
                Err(status)
                    if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) =>
                {
                    tracing::warn!(code = ?status.code(), message = status.message(), "reservation not released: nothing held");
                    Ok(())
                }
                Err(status) => Err(transient("release", order_id, &status)),
            },
        }
    }

    /// Records that the saga is compensating, with why, when its release did not go
    /// through: the event itself is not recorded as applied, so it comes again.
    async fn still_compensating(
        &self,
        metadata: &EventMetadata,
        event: &Event,
        error: &HandlerError,
    ) -> Result<(), HandlerError> {
        let order_id = metadata.order_id.as_str();
        let mut db = self.store.pools().write().begin().await?;
        let now = now_millis();
        let current = tx::lock_or_create(&mut db, order_id, now).await?;
        let mut compensating = saga::apply(&current, event).saga;
        if current.state == State::Compensating && compensating.paid == current.paid {
            return Ok(());
        }
        compensating.state = State::Compensating;
        compensating.refund_requested = current.refund_requested;
        tx::save(&mut db, &compensating, now).await?;
        tx::add_steps(
            &mut db,
            order_id,
            &metadata.event_id,
            &[format!("reservation release failed; retrying: {error}")],
            now,
        )
        .await?;
        db.commit().await?;
        Ok(())
    }
}

fn transient(call: &str, order_id: &str, status: &tonic::Status) -> HandlerError {
    HandlerError::Transient(format!(
        "inventory could not {call} reservation {order_id}: {:?}: {}",
        status.code(),
        status.message()
    ))
}

/// The broker message for one thing the saga publishes, caused by `cause`.
fn to_event(cause: &EventMetadata, publish: &Publish) -> Outgoing {
    let metadata = caused_by(cause, PRODUCER);
    match publish {
        Publish::OrderCompleted => outgoing(
            subjects::ORDER_COMPLETED,
            &metadata,
            &OrderCompleted {
                metadata: Some(metadata.clone()),
            },
        ),
        Publish::OrderFailed { reason } => outgoing(
            subjects::ORDER_FAILED,
            &metadata,
            &OrderFailed {
                metadata: Some(metadata.clone()),
                reason: reason.clone(),
            },
        ),
        Publish::RefundRequested { charge_id, reason } => outgoing(
            subjects::REFUND_REQUESTED,
            &metadata,
            &RefundRequested {
                metadata: Some(metadata.clone()),
                charge_id: charge_id.clone(),
                reason: reason.clone(),
            },
        ),
    }
}
