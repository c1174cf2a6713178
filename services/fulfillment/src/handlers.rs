//! The consumer group `fulfillment`: holds an order's shipment until the order is paid,
//! ships it then (or reports that the carrier refused), and cancels it if the order fails
//! first. Events of an order may come in any order and more than once: each handler notes
//! what its event says in the order's progress and acts on the state it then finds.

use meshmart::{
    db::{is_transient, now_millis},
    events::{
        HandlerError, Incoming, Outgoing,
        inbox::apply_once,
        metadata::{self, caused_by, outgoing, subjects},
        outbox::Outbox,
    },
    proto::events::{
        EventMetadata, OrderFailed, PaymentSucceeded, ShipmentCreated, ShipmentFailed,
        ShipmentRequested,
    },
};
use sqlx::AnyConnection;

use crate::{
    carrier,
    metrics::Metrics,
    store::{
        NewShipment, Progress, ShipmentState, Store, awaiting_shipment, cancel_awaiting,
        insert_shipment, mark_failed, mark_shipped, note_progress,
    },
    validate,
};

/// The consumer group's name, which is also the inbox's.
pub(crate) const GROUP: &str = "fulfillment";
/// What fulfillment signs its events with.
const PRODUCER: &str = "fulfillment";

#[derive(Debug, Clone)]
pub(crate) struct Handlers {
    pub(crate) store: Store,
    pub(crate) outbox: Outbox,
    pub(crate) metrics: Metrics,
}

/// How a shipment ended in one transaction, for the metrics once it has committed.
type Ended = Option<&'static str>;

impl meshmart::events::EventHandler for Handlers {
    /// Handles one delivery, in the trace context it carried and in a span naming its order.
    async fn handle(&self, incoming: Incoming) -> Result<(), HandlerError> {
        let (cause, work) = match incoming.subject.as_str() {
            subjects::SHIPMENT_REQUESTED => {
                let event: ShipmentRequested = metadata::decode(&incoming)?;
                (
                    validate::metadata(event.metadata.as_ref())?,
                    Work::Requested(Box::new(event)),
                )
            }
            subjects::PAYMENT_SUCCEEDED => {
                let event: PaymentSucceeded = metadata::decode(&incoming)?;
                (validate::metadata(event.metadata.as_ref())?, Work::Paid)
            }
            subjects::ORDER_FAILED => {
                let event: OrderFailed = metadata::decode(&incoming)?;
                (validate::metadata(event.metadata.as_ref())?, Work::Failed)
            }
            other => {
                return Err(HandlerError::Permanent(format!(
                    "fulfillment does not handle {other}"
                )));
            }
        };
        metadata::within(&incoming, &cause, self.apply(&cause, work)).await
    }
}

impl Handlers {
    async fn apply(&self, cause: &EventMetadata, work: Work) -> Result<(), HandlerError> {
        let requested = match &work {
            Work::Requested(event) => Some(validate::shipment(event)?),
            Work::Paid | Work::Failed => None,
        };
        let shipment_id = uuid::Uuid::new_v4().to_string();
        let mut ended: Ended = None;
        let db = self.store.pools();
        apply_once(db, &self.outbox, GROUP, &cause.event_id, async |tx| {
            let now_ms = now_millis();
            let progress = match &work {
                Work::Requested(_) => Progress::Requested,
                Work::Paid => Progress::Paid,
                Work::Failed => Progress::Failed,
            };
            let known = note_progress(tx, &cause.order_id, progress, now_ms).await?;
            if let Some((lines, address)) = &requested {
                // An order that failed before its request arrived never ships.
                let state = if known.failed {
                    ShipmentState::Cancelled
                } else {
                    ShipmentState::AwaitingPayment
                };
                let shipment = NewShipment {
                    shipment_id: &shipment_id,
                    order_id: &cause.order_id,
                    state,
                    lines,
                    address,
                    now_ms,
                };
                if !insert_shipment(tx, &shipment).await? {
                    return Ok(Vec::new());
                }
                if state == ShipmentState::Cancelled {
                    ended = Some("cancelled");
                    return Ok(Vec::new());
                }
            }
            if known.failed {
                if cancel_awaiting(tx, &cause.order_id, now_ms).await? {
                    ended = Some("cancelled");
                }
                return Ok(Vec::new());
            }
            if !known.paid {
                return Ok(Vec::new());
            }
            ship(tx, cause, now_ms, &mut ended).await
        })
        .await
        .map_err(|error| {
            if is_transient(&error) {
                HandlerError::Transient(format!("database: {error}"))
            } else {
                HandlerError::Permanent(format!("database: {error}"))
            }
        })?;
        if let Some(outcome) = ended {
            self.metrics.shipment(outcome);
        }
        Ok(())
    }
}

/// What an event asks of fulfillment.
#[derive(Debug)]
enum Work {
    // Boxed: the request with its lines and address dwarfs the other two.
    Requested(Box<ShipmentRequested>),
    Paid,
    Failed,
}

/// Hands the order's shipment to the carrier, if it awaits payment (the order is paid):
/// SHIPPED and ShipmentCreated, or FAILED and ShipmentFailed.
async fn ship(
    tx: &mut AnyConnection,
    cause: &EventMetadata,
    now_ms: i64,
    ended: &mut Ended,
) -> Result<Vec<Outgoing>, sqlx::Error> {
    let Some((shipment_id, postal_code)) = awaiting_shipment(tx, &cause.order_id).await? else {
        return Ok(Vec::new());
    };
    let metadata = caused_by(cause, PRODUCER);
    match carrier::hand_over(&shipment_id, &postal_code) {
        Ok(tracking_number) => {
            if !mark_shipped(tx, &shipment_id, &tracking_number, now_ms).await? {
                return Ok(Vec::new());
            }
            *ended = Some("shipped");
            let event = ShipmentCreated {
                metadata: Some(metadata.clone()),
                shipment_id,
                tracking_number,
            };
            Ok(vec![outgoing(
                subjects::SHIPMENT_CREATED,
                &metadata,
                &event,
            )])
        }
        Err(reason) => {
            if !mark_failed(tx, &shipment_id, reason, now_ms).await? {
                return Ok(Vec::new());
            }
            *ended = Some("failed");
            let event = ShipmentFailed {
                metadata: Some(metadata.clone()),
                reason: reason.to_owned(),
            };
            Ok(vec![outgoing(subjects::SHIPMENT_FAILED, &metadata, &event)])
        }
    }
}
