//! What every event carries ([`EventMetadata`]), the subjects events travel on, and the
//! encoding between an event and a broker message.

use prost::Message;

use super::{HandlerError, Incoming, Outgoing};
use crate::proto::events::EventMetadata;

/// The subjects of the order flow, one per event message (`proto/meshmart/events/v1`).
pub mod subjects {
    pub const ORDER_CREATED: &str = "orders.created";
    pub const PAYMENT_REQUESTED: &str = "payments.requested";
    pub const PAYMENT_SUCCEEDED: &str = "payments.succeeded";
    pub const PAYMENT_DECLINED: &str = "payments.declined";
    pub const PAYMENT_FAILED: &str = "payments.failed";
    pub const REFUND_REQUESTED: &str = "payments.refund_requested";
    pub const PAYMENT_REFUNDED: &str = "payments.refunded";
    pub const SHIPMENT_REQUESTED: &str = "shipments.requested";
    pub const SHIPMENT_CREATED: &str = "shipments.created";
    pub const SHIPMENT_FAILED: &str = "shipments.failed";
    pub const ORDER_COMPLETED: &str = "orders.completed";
    pub const ORDER_FAILED: &str = "orders.failed";
}

/// The metadata of the first event of an order, caused by the request that placed it.
pub fn first(order_id: &str, request_id: &str, producer: &str) -> EventMetadata {
    EventMetadata {
        event_id: uuid::Uuid::new_v4().to_string(),
        order_id: order_id.to_owned(),
        event_time: Some(crate::db::timestamp(crate::db::now_millis())),
        correlation_id: order_id.to_owned(),
        causation_id: request_id.to_owned(),
        producer: producer.to_owned(),
    }
}

/// The metadata of an event `producer` publishes because of `cause`: the same order and
/// correlation, caused by `cause`.
pub fn caused_by(cause: &EventMetadata, producer: &str) -> EventMetadata {
    EventMetadata {
        event_id: uuid::Uuid::new_v4().to_string(),
        order_id: cause.order_id.clone(),
        event_time: Some(crate::db::timestamp(crate::db::now_millis())),
        correlation_id: cause.correlation_id.clone(),
        causation_id: cause.event_id.clone(),
        producer: producer.to_owned(),
    }
}

/// `event` as a broker message on `subject`: its event id is the message id (so a
/// republished event is de-duplicated), and the trace context of the work that made it
/// travels in the headers.
pub fn outgoing(subject: &str, metadata: &EventMetadata, event: &impl Message) -> Outgoing {
    Outgoing {
        subject: subject.to_owned(),
        message_id: metadata.event_id.clone(),
        headers: crate::context::event_headers(),
        payload: event.encode_to_vec().into(),
    }
}

/// Runs `handle`, the handling of the event `metadata` belongs to, in the trace context the
/// event carried and in a span naming its order, its correlation and the event, so that
/// every log line about the order carries them ([`crate::context::within_event`]).
pub async fn within<F: Future>(
    incoming: &Incoming,
    metadata: &EventMetadata,
    handle: F,
) -> F::Output {
    let span = tracing::info_span!(
        "event",
        subject = %incoming.subject,
        order_id = %metadata.order_id,
        correlation_id = %metadata.correlation_id,
        event_id = %metadata.event_id,
        attempt = incoming.attempt,
    );
    crate::context::within_event(&incoming.headers, span, handle).await
}

/// Decodes an event's payload as `M`. A payload that does not decode never will, so the
/// error is permanent: the event goes to the dead letters at once.
pub fn decode<M: Message + Default>(incoming: &Incoming) -> Result<M, HandlerError> {
    M::decode(incoming.payload.clone()).map_err(|error| {
        HandlerError::Permanent(format!(
            "cannot decode {} as {}: {error}",
            incoming.subject,
            std::any::type_name::<M>()
        ))
    })
}
