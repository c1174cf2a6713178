//! Fulfillment over a real bus and real gRPC: an order ships once whichever of its
//! ShipmentRequested and PaymentSucceeded comes first, an address the carrier refuses
//! fails, a failed order's shipment is cancelled, and the address never comes back.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    events::metadata::subjects,
    proto::{
        events::{ShipmentCreated, ShipmentFailed},
        fulfillment::{GetShipmentRequest, Shipment, ShipmentLine, shipment::State},
    },
};
use prost::Message;
use support::{Fulfillment, order_id, order_of};

/// Publishes a marker order that ships, and returns everything published up to its
/// ShipmentCreated: one consumer takes events in order, so everything published before the
/// marker has been handled by then.
async fn published_before_marker(fulfillment: &mut Fulfillment) -> Vec<support::Published> {
    let marker = order_id("marker");
    let (cause, requested) = support::shipment_requested(&marker, "10115");
    fulfillment.publish(requested).await;
    fulfillment
        .publish(support::payment_succeeded(&cause))
        .await;
    let mut seen = Vec::new();
    loop {
        let published = fulfillment.next_published().await;
        if order_of(&published) == marker {
            return seen;
        }
        seen.push(published);
    }
}

fn assert_no_address(shipment: &Shipment) {
    // Every field but the times, whose digits could spell a postal code.
    let shown = format!(
        "{:?}",
        Shipment {
            create_time: None,
            update_time: None,
            ..shipment.clone()
        }
    );
    for secret in ["Ada", "Secret", "Flat", "Hiddenville", "10115", "00000"] {
        assert!(!shown.contains(secret), "the API showed {secret}: {shown}");
    }
    assert_eq!(shipment.region_code, "DE");
}

#[tokio::test]
async fn requested_then_paid_ships_once() {
    for (broker, backend) in support::setups() {
        let mut fulfillment = support::start(&broker, backend, "requested_then_paid").await;
        let order = order_id("requested-first");
        let (cause, requested) = support::shipment_requested(&order, "10115");
        fulfillment.publish(requested.clone()).await;
        let waiting = fulfillment.shipment_of(&order).await;
        assert_eq!(
            waiting.state(),
            State::AwaitingPayment,
            "{broker:?} {backend:?}"
        );
        assert!(waiting.tracking_number.is_empty());
        let line = |product_id: &str, quantity| ShipmentLine {
            product_id: product_id.to_owned(),
            quantity,
        };
        assert_eq!(
            waiting.lines,
            [line("espresso-cup", 2), line("travel-mug", 1)]
        );
        assert_no_address(&waiting);

        let paid = support::payment_succeeded(&cause);
        fulfillment.publish(paid.clone()).await;
        let created = fulfillment.next_published().await;
        assert_eq!(created.subject, subjects::SHIPMENT_CREATED);
        let created = ShipmentCreated::decode(created.payload).unwrap();
        assert_eq!(created.shipment_id, waiting.shipment_id);
        assert_eq!(created.metadata.unwrap().correlation_id, order);
        let shipped = fulfillment
            .client
            .get_shipment(GetShipmentRequest {
                name: waiting.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .shipment
            .unwrap();
        assert_eq!(shipped.state(), State::Shipped);
        assert_eq!(shipped.tracking_number, created.tracking_number);
        assert_no_address(&shipped);

        // Both again, as new events of the same order: nothing ships twice.
        let mut again = support::shipment_requested(&order, "10115").1;
        again.subject = requested.subject;
        fulfillment.publish(again).await;
        fulfillment
            .publish(support::payment_succeeded(&cause))
            .await;
        let seen = published_before_marker(&mut fulfillment).await;
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(fulfillment.shipments_of(&order).await, [shipped]);
        fulfillment.stop().await;
    }
}

#[tokio::test]
async fn paid_then_requested_ships_once() {
    for (broker, backend) in support::setups() {
        let mut fulfillment = support::start(&broker, backend, "paid_then_requested").await;
        let order = order_id("paid-first");
        let (cause, requested) = support::shipment_requested(&order, "10115");
        let paid = support::payment_succeeded(&cause);
        fulfillment.publish(paid.clone()).await;
        fulfillment.publish(requested.clone()).await;
        // The same two events delivered again (new message ids, same event ids).
        for mut event in [paid, requested] {
            event.message_id = format!("{}-again", event.message_id);
            fulfillment.publish(event).await;
        }
        let created = fulfillment.next_published().await;
        assert_eq!(
            created.subject,
            subjects::SHIPMENT_CREATED,
            "{broker:?} {backend:?}"
        );
        let seen = published_before_marker(&mut fulfillment).await;
        assert!(seen.is_empty(), "{seen:?}");
        let shipments = fulfillment.shipments_of(&order).await;
        assert_eq!(shipments.len(), 1);
        assert_eq!(shipments[0].state(), State::Shipped);
        assert_no_address(&shipments[0]);
        fulfillment.stop().await;
    }
}

#[tokio::test]
async fn an_address_the_carrier_does_not_serve_fails() {
    for (broker, backend) in support::setups() {
        let mut fulfillment = support::start(&broker, backend, "undeliverable").await;
        let order = order_id("undeliverable");
        let (cause, requested) = support::shipment_requested(&order, "00000");
        fulfillment.publish(requested).await;
        fulfillment
            .publish(support::payment_succeeded(&cause))
            .await;
        let failed = fulfillment.next_published().await;
        assert_eq!(
            failed.subject,
            subjects::SHIPMENT_FAILED,
            "{broker:?} {backend:?}"
        );
        let failed = ShipmentFailed::decode(failed.payload).unwrap();
        assert_eq!(
            failed.reason,
            "the carrier does not deliver to this address"
        );
        let shipment = fulfillment.shipment_of(&order).await;
        assert_eq!(shipment.state(), State::Failed);
        assert_eq!(shipment.failure_reason, failed.reason);
        assert!(shipment.tracking_number.is_empty());
        assert_no_address(&shipment);
        fulfillment.stop().await;
    }
}

#[tokio::test]
async fn a_failed_order_cancels_its_unshipped_shipment() {
    for (broker, backend) in support::setups() {
        let mut fulfillment = support::start(&broker, backend, "cancelled").await;
        let order = order_id("cancelled");
        let (cause, requested) = support::shipment_requested(&order, "10115");
        fulfillment.publish(requested).await;
        fulfillment.publish(support::order_failed(&cause)).await;
        // A PaymentSucceeded arriving late does not ship a failed order.
        fulfillment
            .publish(support::payment_succeeded(&cause))
            .await;
        // Nor does a request that arrives after its order failed.
        let late = order_id("failed-before-requested");
        let (late_cause, late_requested) = support::shipment_requested(&late, "10115");
        fulfillment
            .publish(support::order_failed(&late_cause))
            .await;
        fulfillment.publish(late_requested).await;
        fulfillment
            .publish(support::payment_succeeded(&late_cause))
            .await;
        let seen = published_before_marker(&mut fulfillment).await;
        assert!(seen.is_empty(), "{broker:?} {backend:?}: {seen:?}");
        for order in [&order, &late] {
            let shipments = fulfillment.shipments_of(order).await;
            assert_eq!(shipments.len(), 1);
            assert_eq!(shipments[0].state(), State::Cancelled, "{order}");
            assert!(shipments[0].tracking_number.is_empty());
        }
        fulfillment.stop().await;
    }
}

#[tokio::test]
async fn listing_pages_and_bad_requests() {
    let (broker, backend) = support::setups().remove(0);
    let mut fulfillment = support::start(&broker, backend, "listing").await;
    let orders: Vec<_> = (0..3).map(|i| order_id(&format!("list{i}"))).collect();
    for order in &orders {
        fulfillment
            .publish(support::shipment_requested(order, "10115").1)
            .await;
        fulfillment.shipment_of(order).await;
    }
    let (mut listed, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = fulfillment
            .client
            .list_shipments(meshmart::proto::fulfillment::ListShipmentsRequest {
                page_size: 2,
                page_token,
                order_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.shipments.len() <= 2);
        listed.extend(page.shipments.into_iter().map(|s| s.order_id));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(listed, orders);
    let fields = meshmart::testing::violated_fields(
        fulfillment
            .client
            .get_shipment(GetShipmentRequest {
                name: "orders/x".to_owned(),
            })
            .await,
    );
    assert_eq!(fields, ["name"]);
    let missing = fulfillment
        .client
        .get_shipment(GetShipmentRequest {
            name: "shipments/nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    fulfillment.stop().await;
}
