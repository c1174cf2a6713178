//! The consumer group `notifications`: one message per customer-visible step of an order.
//!
//! Exactly one notification per order and kind: the inbox (`apply_once`) keeps a
//! redelivered event from applying twice, and the table's `UNIQUE (order_id, kind)` keeps
//! two events of one kind from writing two messages.
//!
//! Only OrderCreated says whose an order is. An event of an order whose OrderCreated has
//! not arrived yet (no order is promised on the broker) fails transiently: it is delivered
//! again after the group's backoff and written then, or ends in the dead letters after
//! `max_attempts` if the OrderCreated never comes.

use meshmart::{
    db::now_millis,
    events::{
        HandlerError, Incoming,
        metadata::{decode, subjects},
        outbox::Outbox,
    },
    proto::events::{
        EventMetadata, OrderCompleted, OrderCreated, OrderFailed, PaymentDeclined, PaymentRefunded,
        ShipmentCreated,
    },
};

use crate::{
    messages::{self, Detail},
    metrics::Metrics,
    store::{self, Kind, NotificationRecord, Store},
};

/// The subjects the group reads.
pub const SUBJECTS: [&str; 6] = [
    subjects::ORDER_CREATED,
    subjects::PAYMENT_DECLINED,
    subjects::SHIPMENT_CREATED,
    subjects::ORDER_COMPLETED,
    subjects::ORDER_FAILED,
    subjects::PAYMENT_REFUNDED,
];

/// One event, as far as notifications reads it.
struct Event {
    metadata: EventMetadata,
    kind: Kind,
    detail: Detail,
    /// Set by OrderCreated only.
    customer_id: Option<String>,
}

fn event(incoming: &Incoming) -> Result<Event, HandlerError> {
    let (metadata, kind, detail, customer_id) = match incoming.subject.as_str() {
        subjects::ORDER_CREATED => {
            let e: OrderCreated = decode(incoming)?;
            let customer = Some(e.customer_id)
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    HandlerError::Permanent("OrderCreated without a customer_id".to_owned())
                })?;
            (
                e.metadata,
                Kind::OrderPlaced,
                Detail::Amount(e.total),
                Some(customer),
            )
        }
        subjects::PAYMENT_DECLINED => {
            let e: PaymentDeclined = decode(incoming)?;
            (
                e.metadata,
                Kind::PaymentDeclined,
                Detail::Reason(e.reason),
                None,
            )
        }
        subjects::SHIPMENT_CREATED => {
            let e: ShipmentCreated = decode(incoming)?;
            let detail = Detail::TrackingNumber(e.tracking_number);
            (e.metadata, Kind::OrderShipped, detail, None)
        }
        subjects::ORDER_COMPLETED => {
            let e: OrderCompleted = decode(incoming)?;
            (e.metadata, Kind::OrderCompleted, Detail::None, None)
        }
        subjects::ORDER_FAILED => {
            let e: OrderFailed = decode(incoming)?;
            (
                e.metadata,
                Kind::OrderFailed,
                Detail::Reason(e.reason),
                None,
            )
        }
        subjects::PAYMENT_REFUNDED => {
            let e: PaymentRefunded = decode(incoming)?;
            (
                e.metadata,
                Kind::RefundIssued,
                Detail::Amount(e.amount),
                None,
            )
        }
        other => {
            return Err(HandlerError::Permanent(format!(
                "notifications does not read {other}"
            )));
        }
    };
    let metadata = metadata
        .filter(|m| !m.event_id.is_empty() && !m.order_id.is_empty())
        .ok_or_else(|| {
            HandlerError::Permanent(format!(
                "{} without an event_id or order_id",
                incoming.subject
            ))
        })?;
    Ok(Event {
        metadata,
        kind,
        detail,
        customer_id,
    })
}

/// What the consumer loop calls for every delivery.
#[derive(Debug, Clone)]
pub(crate) struct Handler {
    pub(crate) group: String,
    pub(crate) store: Store,
    pub(crate) outbox: Outbox,
    pub(crate) metrics: Metrics,
}

impl meshmart::events::EventHandler for Handler {
    async fn handle(&self, incoming: Incoming) -> Result<(), HandlerError> {
        let event = event(&incoming)?;
        let cause = event.metadata.clone();
        meshmart::events::metadata::within(&incoming, &cause, self.apply(event)).await
    }
}

impl Handler {
    async fn apply(&self, event: Event) -> Result<(), HandlerError> {
        let order_id = event.metadata.order_id.as_str();
        let text = messages::text(event.kind, order_id, &event.detail);
        let mut written = false;
        meshmart::events::inbox::apply_once(
            self.store.pools(),
            &self.outbox,
            &self.group,
            &event.metadata.event_id,
            async |tx| {
                let now = now_millis();
                if let Some(customer) = &event.customer_id {
                    store::remember_customer(tx, order_id, customer, now).await?;
                }
                let Some(customer_id) = store::customer_of(tx, order_id).await? else {
                    return Err(HandlerError::Transient(format!(
                        "order {order_id} is not known yet (its OrderCreated has not arrived)"
                    )));
                };
                let notification = NotificationRecord {
                    notification_id: uuid::Uuid::new_v4().to_string(),
                    customer_id,
                    order_id: order_id.to_owned(),
                    kind: Some(event.kind),
                    subject: text.subject,
                    body: text.body,
                    event_id: event.metadata.event_id.clone(),
                    create_time_ms: now,
                };
                written = store::insert(tx, &notification, event.kind).await?;
                Ok(Vec::new())
            },
        )
        .await?;
        if written {
            self.metrics.written(event.kind);
        }
        Ok(())
    }
}
