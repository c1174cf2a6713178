//! CreateOrder over real gRPC, against the real catalog and inventory, on both database
//! backends and every broker: the order is stored PENDING at the catalog's prices, with its
//! stock held, and the three events of the flow go out once, each carrying only what its
//! consumer needs; retries and concurrent duplicates converge on one order.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::{
        events::{OrderCreated, PaymentRequested, ShipmentRequested},
        google::r#type::Money,
        inventory::{GetReservationRequest, ReservationState},
        orders::{CreateOrderResponse, GetOrderRequest, State},
    },
    testing::Backend,
};
use prost::Message;
use support::{PUBLISHED, as_customer, cases, order_request, unique};
use tonic::Code;
use tonic_types::StatusExt;

fn eur(units: i64, nanos: i32) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".to_owned(),
        units,
        nanos,
    })
}

fn test_name(test: &str, backend: Backend) -> String {
    format!("{test}_{backend:?}").to_lowercase()
}

#[tokio::test]
async fn an_order_is_stored_pending_and_announced_once_with_only_what_each_consumer_needs() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &test_name("placed", backend)).await;
        let customer = unique("alice-");
        let mut observer = shop.observe(&PUBLISHED).await;

        // Two cups at 18.00 and a dripper at 24.50: 60.50.
        let mut request = as_customer(
            &customer,
            order_request(
                "r-1",
                &[("espresso-cup", 2), ("ceramic-dripper", 1)],
                "tok_visa_approved",
            ),
        );
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        let order = shop
            .client
            .clone()
            .create_order(request)
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        let order_id = orders::order_id(&customer, "r-1");
        assert_eq!(order.name, format!("orders/{order_id}"));
        assert_eq!(order.customer_id, customer);
        assert_eq!(order.state(), State::Pending);
        assert_eq!(order.lines[0].unit_price, eur(18, 0));
        assert_eq!(order.lines[1].unit_price, eur(24, 500_000_000));
        assert_eq!(order.total, eur(60, 500_000_000));
        assert_eq!(order.history.len(), 1);
        assert_eq!(order.history[0].state(), State::Pending);
        assert_eq!(order.history[0].time, order.create_time);
        assert_eq!(
            order.shipping_address.as_ref().unwrap().postal_code,
            "10117"
        );

        let stored = shop
            .client
            .clone()
            .get_order(as_customer(
                &customer,
                GetOrderRequest {
                    name: order.name.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(stored, order, "{backend:?} {broker:?}");

        let reservation = shop
            .inventory_client
            .clone()
            .get_reservation(GetReservationRequest {
                reservation_id: order_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(reservation.state(), ReservationState::Active);
        assert_eq!(reservation.items.len(), 2);

        let mut events = observer.events_for(&order_id, 3).await;
        events.sort_by_key(|event| PUBLISHED.iter().position(|s| *s == event.subject));
        let subjects: Vec<&str> = events.iter().map(|event| event.subject.as_str()).collect();
        assert_eq!(subjects, PUBLISHED);
        let mut ids = Vec::new();
        for event in &events {
            let metadata = &event.metadata;
            assert_eq!(
                event.message_id, metadata.event_id,
                "the broker de-duplicates on it"
            );
            assert!(!metadata.event_id.is_empty());
            ids.push(metadata.event_id.clone());
            assert_eq!(metadata.order_id, order_id);
            assert_eq!(metadata.correlation_id, order_id);
            assert_eq!(metadata.causation_id, "r-1");
            assert_eq!(metadata.producer, "orders");
            assert_eq!(metadata.event_time, order.create_time);
            assert_eq!(
                event.headers.get("traceparent").map(String::as_str),
                Some(traceparent),
                "{}",
                event.subject
            );
            let has = |needle: &str| {
                event
                    .payload
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            };
            let is = |subject: &str| event.subject == subject;
            assert_eq!(
                has("tok_visa_approved"),
                is("payments.requested"),
                "{}",
                event.subject
            );
            assert_eq!(
                has("Unter den Linden"),
                is("shipments.requested"),
                "{}",
                event.subject
            );
            assert_eq!(has("10117"), is("shipments.requested"), "{}", event.subject);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "each event has an id of its own");

        let created = OrderCreated::decode(events[0].payload.clone()).unwrap();
        assert_eq!(created.customer_id, customer);
        assert_eq!(created.total, eur(60, 500_000_000));
        assert_eq!(created.lines.len(), 2);
        assert_eq!(created.lines[1].unit_price, eur(24, 500_000_000));
        let payment = PaymentRequested::decode(events[1].payload.clone()).unwrap();
        assert_eq!(payment.amount, eur(60, 500_000_000));
        assert_eq!(payment.payment_token, "tok_visa_approved");
        let shipment = ShipmentRequested::decode(events[2].payload.clone()).unwrap();
        let address = shipment.address.unwrap();
        assert_eq!(address.recipient, "Ada Lovelace");
        assert_eq!(address.address_lines.len(), 2);
        assert_eq!(address.region_code, "DE");
        assert_eq!(shipment.lines.len(), 2);

        // A retry answers what the first call answered, and announces nothing again.
        let again = shop
            .client
            .clone()
            .create_order(as_customer(
                &customer,
                order_request(
                    "r-1",
                    &[("espresso-cup", 2), ("ceramic-dripper", 1)],
                    "tok_visa_approved",
                ),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.order.unwrap(), order);
        observer.nothing_more_for(&order_id).await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn a_hundred_concurrent_attempts_place_one_order_and_all_hear_the_same_reply() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &test_name("concurrent", backend)).await;
        let customer = unique("bob-");
        let order_id = orders::order_id(&customer, "same-request");
        let mut observer = shop.observe(&PUBLISHED).await;
        let attempts: Vec<_> = (0..100)
            .map(|_| {
                let mut client = shop.client.clone();
                let request = as_customer(
                    &customer,
                    order_request("same-request", &[("travel-mug", 3)], "tok_visa_approved"),
                );
                tokio::spawn(async move { client.create_order(request).await })
            })
            .collect();
        let mut replies = Vec::new();
        for attempt in attempts {
            let reply: CreateOrderResponse = attempt.await.unwrap().unwrap().into_inner();
            replies.push(reply.encode_to_vec());
        }
        assert!(
            replies.iter().all(|reply| *reply == replies[0]),
            "{backend:?} {broker:?}: every attempt hears the same bytes"
        );
        let reservation = shop
            .inventory_client
            .clone()
            .get_reservation(GetReservationRequest {
                reservation_id: order_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(reservation.items.len(), 1);
        assert_eq!(reservation.items[0].quantity, 3, "held once");
        let events = observer.events_for(&order_id, 3).await;
        assert_eq!(
            events
                .iter()
                .filter(|e| e.subject == "orders.created")
                .count(),
            1
        );
        observer.nothing_more_for(&order_id).await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn the_same_request_id_with_another_request_is_already_exists() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &test_name("reused", backend)).await;
        let customer = unique("carol-");
        let mut client = shop.client.clone();
        client
            .create_order(as_customer(
                &customer,
                order_request("k", &[("french-press", 1)], "tok_visa_approved"),
            ))
            .await
            .unwrap();
        for other in [
            order_request("k", &[("french-press", 2)], "tok_visa_approved"),
            order_request("k", &[("french-press", 1)], "tok_visa_declined"),
            {
                let mut moved = order_request("k", &[("french-press", 1)], "tok_visa_approved");
                moved.shipping_address.as_mut().unwrap().postal_code = "80331".to_owned();
                moved
            },
        ] {
            let status = client
                .create_order(as_customer(&customer, other))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::AlreadyExists, "{backend:?} {status:?}");
        }
        // Another customer's request_id is theirs alone.
        let other = client
            .create_order(as_customer(
                &unique("dave-"),
                order_request("k", &[("french-press", 2)], "tok_visa_approved"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(other.order.unwrap().lines[0].quantity, 2);
        shop.stop().await;
    }
}

#[tokio::test]
async fn missing_stock_or_products_place_nothing_and_announce_nothing() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &test_name("refused", backend)).await;
        let customer = unique("erin-");
        let mut client = shop.client.clone();
        let mut observer = shop.observe(&PUBLISHED).await;

        // Eight grinders in stock.
        let status = client
            .create_order(as_customer(
                &customer,
                order_request(
                    "short",
                    &[("espresso-cup", 1), ("burr-grinder", 9)],
                    "tok_visa_approved",
                ),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let violations = status
            .get_details_precondition_failure()
            .unwrap()
            .violations;
        assert_eq!(violations[0].r#type, "STOCK");
        assert_eq!(violations[0].subject, "burr-grinder");
        let short_id = orders::order_id(&customer, "short");
        let status = client
            .get_order(as_customer(
                &customer,
                GetOrderRequest {
                    name: format!("orders/{short_id}"),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);

        let status = client
            .create_order(as_customer(
                &customer,
                order_request(
                    "unknown",
                    &[("teapot", 1), ("espresso-cup", 1), ("samovar", 2)],
                    "tok_visa_approved",
                ),
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let violations = status
            .get_details_precondition_failure()
            .unwrap()
            .violations;
        let unknown: Vec<(&str, &str)> = violations
            .iter()
            .map(|v| (v.r#type.as_str(), v.subject.as_str()))
            .collect();
        assert_eq!(unknown, [("PRODUCT", "teapot"), ("PRODUCT", "samovar")]);
        let status = shop
            .inventory_client
            .clone()
            .get_reservation(GetReservationRequest {
                reservation_id: orders::order_id(&customer, "unknown"),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "no stock held for it");

        observer.nothing_more_for(&short_id).await;
        observer
            .nothing_more_for(&orders::order_id(&customer, "unknown"))
            .await;
        shop.stop().await;
    }
}
