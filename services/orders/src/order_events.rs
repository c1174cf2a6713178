//! The events that start an order's flow, written to the outbox with the order: what each
//! consumer needs and nothing more (events.proto). The payment token goes to payments only,
//! in PaymentRequested; the address to fulfillment only, in ShipmentRequested.

use meshmart::{
    db::timestamp,
    events::{
        Outgoing,
        metadata::{first, outgoing, subjects},
    },
    proto::events::{
        EventMetadata, OrderCreated, OrderLine, PaymentRequested, ShipmentRequested,
        ShippingAddress,
    },
};

use crate::{SERVICE, store::NewOrder};

/// OrderCreated, PaymentRequested and ShipmentRequested for `order`, each with an event id
/// of its own, caused by the CreateOrder call's request_id, at the time the order was
/// placed, and with the call's trace context in their headers.
pub(crate) fn placed(order: &NewOrder, payment_token: &str) -> Vec<Outgoing> {
    let record = &order.record;
    let metadata = || -> EventMetadata {
        let mut metadata = first(&record.order_id, &order.request_id, SERVICE.name);
        // The order's own time, so the flow's first events and its PENDING agree.
        metadata.event_time = Some(timestamp(record.create_time_ms));
        metadata
    };
    let lines: Vec<OrderLine> = record
        .lines
        .iter()
        .map(|line| OrderLine {
            product_id: line.product_id.clone(),
            quantity: line.quantity,
            unit_price: Some(line.unit_price.clone()),
        })
        .collect();
    let (created_meta, payment_meta, shipment_meta) = (metadata(), metadata(), metadata());
    let created = OrderCreated {
        metadata: Some(created_meta.clone()),
        customer_id: record.customer_id.clone(),
        lines: lines.clone(),
        total: Some(record.total.clone()),
    };
    let payment = PaymentRequested {
        metadata: Some(payment_meta.clone()),
        amount: Some(record.total.clone()),
        payment_token: payment_token.to_owned(),
    };
    let address = &record.address;
    let shipment = ShipmentRequested {
        metadata: Some(shipment_meta.clone()),
        lines,
        address: Some(ShippingAddress {
            recipient: address.recipient.clone(),
            address_lines: address.address_lines.clone(),
            locality: address.locality.clone(),
            postal_code: address.postal_code.clone(),
            region_code: address.region_code.clone(),
        }),
    };
    vec![
        outgoing(subjects::ORDER_CREATED, &created_meta, &created),
        outgoing(subjects::PAYMENT_REQUESTED, &payment_meta, &payment),
        outgoing(subjects::SHIPMENT_REQUESTED, &shipment_meta, &shipment),
    ]
}
