//! A dead letter's event as protobuf JSON (the proto3 canonical mapping: lowerCamelCase
//! names, fields at their default left out, int64 as a string, Timestamp in RFC 3339),
//! written by hand for the twelve events of `meshmart.events.v1`: the workspace has no
//! protobuf JSON, and prost-reflect or pbjson would add a descriptor pool or a second code
//! generator for this one read-only view. A new event needs its arm here; until then its
//! dead letters show an `event_type` and no `payload_json`.
//!
//! A payment token never shows: PaymentRequested's `paymentToken` reads `[redacted]`. The
//! shipping address is shown: the operator replaying a ShipmentRequested may need to see
//! why the carrier refused it, and the API is the operators'.

use meshmart::{
    events::metadata::subjects,
    proto::{
        events::{
            EventMetadata, OrderCompleted, OrderCreated, OrderFailed, OrderLine, PaymentDeclined,
            PaymentFailed, PaymentRefunded, PaymentRequested, PaymentSucceeded, RefundRequested,
            ShipmentCreated, ShipmentFailed, ShipmentRequested, ShippingAddress,
        },
        google::r#type::Money,
    },
};
use prost::Message;
use serde_json::{Map, Value};

/// What a payment token reads as.
pub(crate) const REDACTED: &str = "[redacted]";

/// The full name of the event message published on `subject`; `None` for a subject that
/// is not the order flow's.
pub(crate) fn event_type(subject: &str) -> Option<&'static str> {
    Some(match subject {
        subjects::ORDER_CREATED => "meshmart.events.v1.OrderCreated",
        subjects::PAYMENT_REQUESTED => "meshmart.events.v1.PaymentRequested",
        subjects::PAYMENT_SUCCEEDED => "meshmart.events.v1.PaymentSucceeded",
        subjects::PAYMENT_DECLINED => "meshmart.events.v1.PaymentDeclined",
        subjects::PAYMENT_FAILED => "meshmart.events.v1.PaymentFailed",
        subjects::REFUND_REQUESTED => "meshmart.events.v1.RefundRequested",
        subjects::PAYMENT_REFUNDED => "meshmart.events.v1.PaymentRefunded",
        subjects::SHIPMENT_REQUESTED => "meshmart.events.v1.ShipmentRequested",
        subjects::SHIPMENT_CREATED => "meshmart.events.v1.ShipmentCreated",
        subjects::SHIPMENT_FAILED => "meshmart.events.v1.ShipmentFailed",
        subjects::ORDER_COMPLETED => "meshmart.events.v1.OrderCompleted",
        subjects::ORDER_FAILED => "meshmart.events.v1.OrderFailed",
        _ => return None,
    })
}

/// The payload as JSON, if it decodes as the event of `subject`.
pub(crate) fn render(subject: &str, payload: &[u8]) -> Option<String> {
    let value = match subject {
        subjects::ORDER_CREATED => {
            let e = OrderCreated::decode(payload).ok()?;
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .string("customerId", &e.customer_id)
                .list("lines", e.lines.iter().map(line).collect())
                .message("total", e.total.as_ref().map(money))
        }
        subjects::PAYMENT_REQUESTED => {
            let e = PaymentRequested::decode(payload).ok()?;
            let token = if e.payment_token.is_empty() {
                ""
            } else {
                REDACTED
            };
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .message("amount", e.amount.as_ref().map(money))
                .string("paymentToken", token)
        }
        subjects::PAYMENT_SUCCEEDED => {
            let e = PaymentSucceeded::decode(payload).ok()?;
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .string("chargeId", &e.charge_id)
                .message("amount", e.amount.as_ref().map(money))
        }
        subjects::PAYMENT_DECLINED => {
            let e = PaymentDeclined::decode(payload).ok()?;
            with_reason(e.metadata.as_ref(), &e.reason)
        }
        subjects::PAYMENT_FAILED => {
            let e = PaymentFailed::decode(payload).ok()?;
            with_reason(e.metadata.as_ref(), &e.reason)
                .int32("attempt", e.attempt)
                .boolean("willRetry", e.will_retry)
        }
        subjects::REFUND_REQUESTED => {
            let e = RefundRequested::decode(payload).ok()?;
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .string("chargeId", &e.charge_id)
                .string("reason", &e.reason)
        }
        subjects::PAYMENT_REFUNDED => {
            let e = PaymentRefunded::decode(payload).ok()?;
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .string("chargeId", &e.charge_id)
                .string("refundId", &e.refund_id)
                .message("amount", e.amount.as_ref().map(money))
        }
        subjects::SHIPMENT_REQUESTED => {
            let e = ShipmentRequested::decode(payload).ok()?;
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .list("lines", e.lines.iter().map(line).collect())
                .message("address", e.address.as_ref().map(address))
        }
        subjects::SHIPMENT_CREATED => {
            let e = ShipmentCreated::decode(payload).ok()?;
            Object::new()
                .message("metadata", e.metadata.as_ref().map(metadata))
                .string("shipmentId", &e.shipment_id)
                .string("trackingNumber", &e.tracking_number)
        }
        subjects::SHIPMENT_FAILED => {
            let e = ShipmentFailed::decode(payload).ok()?;
            with_reason(e.metadata.as_ref(), &e.reason)
        }
        subjects::ORDER_COMPLETED => {
            let e = OrderCompleted::decode(payload).ok()?;
            Object::new().message("metadata", e.metadata.as_ref().map(metadata))
        }
        subjects::ORDER_FAILED => {
            let e = OrderFailed::decode(payload).ok()?;
            with_reason(e.metadata.as_ref(), &e.reason)
        }
        _ => return None,
    };
    serde_json::to_string(&Value::Object(value.0)).ok()
}

fn with_reason(m: Option<&EventMetadata>, reason: &str) -> Object {
    Object::new()
        .message("metadata", m.map(metadata))
        .string("reason", reason)
}

fn metadata(m: &EventMetadata) -> Object {
    Object::new()
        .string("eventId", &m.event_id)
        .string("orderId", &m.order_id)
        .string(
            "eventTime",
            &m.event_time
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        )
        .string("correlationId", &m.correlation_id)
        .string("causationId", &m.causation_id)
        .string("producer", &m.producer)
}

fn money(m: &Money) -> Object {
    Object::new()
        .string("currencyCode", &m.currency_code)
        .int64("units", m.units)
        .int32("nanos", m.nanos)
}

fn line(l: &OrderLine) -> Object {
    Object::new()
        .string("productId", &l.product_id)
        .int64("quantity", l.quantity)
        .message("unitPrice", l.unit_price.as_ref().map(money))
}

fn address(a: &ShippingAddress) -> Object {
    Object::new()
        .string("recipient", &a.recipient)
        .list(
            "addressLines",
            a.address_lines
                .iter()
                .map(|l| Value::String(l.clone()))
                .collect(),
        )
        .string("locality", &a.locality)
        .string("postalCode", &a.postal_code)
        .string("regionCode", &a.region_code)
}

/// A JSON object built field by field, leaving out fields at their default as proto3
/// JSON does.
struct Object(Map<String, Value>);

impl Object {
    fn new() -> Self {
        Self(Map::new())
    }

    fn put(mut self, name: &str, value: Value) -> Self {
        self.0.insert(name.to_owned(), value);
        self
    }

    fn string(self, name: &str, value: &str) -> Self {
        if value.is_empty() {
            return self;
        }
        self.put(name, Value::String(value.to_owned()))
    }

    /// int64 travels as a string in proto3 JSON: a double cannot hold every value.
    fn int64(self, name: &str, value: i64) -> Self {
        if value == 0 {
            return self;
        }
        self.put(name, Value::String(value.to_string()))
    }

    fn int32(self, name: &str, value: i32) -> Self {
        if value == 0 {
            return self;
        }
        self.put(name, Value::from(value))
    }

    fn boolean(self, name: &str, value: bool) -> Self {
        if !value {
            return self;
        }
        self.put(name, Value::Bool(true))
    }

    fn message(self, name: &str, value: Option<Object>) -> Self {
        match value {
            Some(object) => self.put(name, Value::Object(object.0)),
            None => self,
        }
    }

    fn list(self, name: &str, values: Vec<impl Into<Value>>) -> Self {
        if values.is_empty() {
            return self;
        }
        self.put(
            name,
            Value::Array(values.into_iter().map(Into::into).collect()),
        )
    }
}

impl From<Object> for Value {
    fn from(object: Object) -> Self {
        Value::Object(object.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_token_never_shows() {
        let event = PaymentRequested {
            metadata: Some(EventMetadata {
                event_id: "e1".to_owned(),
                order_id: "o1".to_owned(),
                event_time: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..EventMetadata::default()
            }),
            amount: Some(Money {
                currency_code: "EUR".to_owned(),
                units: 12,
                nanos: 500_000_000,
            }),
            payment_token: "tok_visa_approved".to_owned(),
        };
        let json = render(subjects::PAYMENT_REQUESTED, &event.encode_to_vec()).unwrap();
        assert!(!json.contains("tok_visa"), "{json}");
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["paymentToken"], REDACTED);
        assert_eq!(value["amount"]["units"], "12");
        assert_eq!(value["amount"]["nanos"], 500_000_000);
        assert_eq!(value["metadata"]["eventTime"], "2023-11-14T22:13:20Z");
        assert_eq!(value["metadata"]["orderId"], "o1");
    }

    #[test]
    fn what_does_not_decode_renders_nothing() {
        assert_eq!(render(subjects::ORDER_CREATED, b"\xff\xff\xff"), None);
        assert_eq!(render("elsewhere.thing", b""), None);
        assert_eq!(event_type("elsewhere.thing"), None);
    }
}
