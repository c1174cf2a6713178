//! The order follows the flow: events published on the real bus, as payments, fulfillment
//! and the orchestrator publish them, move it on; GetOrder and WatchOrder show each
//! transition at the producer's time; late, repeated and foreign events change nothing.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::{
    db::timestamp,
    events::{
        EventBus,
        metadata::{self, subjects},
    },
    proto::{
        events::{EventMetadata, OrderCompleted, OrderFailed, PaymentSucceeded, ShipmentCreated},
        orders::{GetOrderRequest, Order, State, WatchOrderRequest, WatchOrderResponse},
    },
    testing::Backend,
};
use support::{Broker, Shop, WAIT, as_customer, cases, eventually, order_request, unique};
use tokio::time::{Instant, timeout};
use tonic::{Code, Streaming};

/// Places an order and returns its customer and id.
async fn place(shop: &Shop, request_id: &str) -> (String, String) {
    let customer = unique("flow-");
    shop.client
        .clone()
        .create_order(as_customer(
            &customer,
            order_request(request_id, &[("pour-over-kettle", 1)], "tok_visa_approved"),
        ))
        .await
        .unwrap();
    let order_id = orders::order_id(&customer, request_id);
    (customer, order_id)
}

/// The metadata another service would give its event about `order_id`, at `time_ms`.
fn reported(order_id: &str, producer: &str, time_ms: i64) -> EventMetadata {
    let mut metadata = metadata::first(order_id, "cause", producer);
    metadata.event_time = Some(timestamp(time_ms));
    metadata
}

fn paid(metadata: &EventMetadata) -> PaymentSucceeded {
    PaymentSucceeded {
        metadata: Some(metadata.clone()),
        charge_id: "charges/c-1".to_owned(),
        amount: None,
    }
}

fn shipped(metadata: &EventMetadata) -> ShipmentCreated {
    ShipmentCreated {
        metadata: Some(metadata.clone()),
        shipment_id: "shipments/s-1".to_owned(),
        tracking_number: "T-1".to_owned(),
    }
}

async fn get(shop: &Shop, customer: &str, order_id: &str) -> Order {
    shop.client
        .clone()
        .get_order(as_customer(
            customer,
            GetOrderRequest {
                name: format!("orders/{order_id}"),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
}

async fn watch(shop: &Shop, customer: &str, order_id: &str) -> Streaming<WatchOrderResponse> {
    shop.client
        .clone()
        .watch_order(as_customer(
            customer,
            WatchOrderRequest {
                name: format!("orders/{order_id}"),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The next order the watch sends, within [`WAIT`].
async fn next(watch: &mut Streaming<WatchOrderResponse>) -> Order {
    timeout(WAIT, watch.message())
        .await
        .expect("a message in time")
        .unwrap()
        .expect("the watch goes on")
        .order
        .unwrap()
}

fn states(order: &Order) -> Vec<(State, i64)> {
    order
        .history
        .iter()
        .map(|t| (t.state(), t.time.unwrap().seconds))
        .collect()
}

fn name(test: &str, backend: Backend) -> String {
    format!("{test}_{backend:?}").to_lowercase()
}

#[tokio::test]
async fn the_flow_moves_the_order_and_a_watch_sees_each_transition_until_completed() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &name("flow", backend)).await;
        let (customer, order_id) = place(&shop, "happy").await;
        let mut watch = watch(&shop, &customer, &order_id).await;
        let first = next(&mut watch).await;
        assert_eq!(first.state(), State::Pending);
        let placed_at = first.create_time.unwrap().seconds;

        // The producers' times, a minute apart, so the history shows whose they are.
        let t_paid = (placed_at + 60) * 1000;
        let t_shipped = (placed_at + 120) * 1000;
        let t_completed = (placed_at + 180) * 1000;
        let payment = reported(&order_id, "payments", t_paid);
        shop.publish(subjects::PAYMENT_SUCCEEDED, &payment, &paid(&payment))
            .await;
        let order = next(&mut watch).await;
        assert_eq!(order.state(), State::Paid, "{backend:?} {broker:?}");
        assert_eq!(order.update_time.unwrap().seconds, placed_at + 60);
        assert_eq!(get(&shop, &customer, &order_id).await, order);

        let shipment = reported(&order_id, "fulfillment", t_shipped);
        shop.publish(subjects::SHIPMENT_CREATED, &shipment, &shipped(&shipment))
            .await;
        let order = next(&mut watch).await;
        assert_eq!(order.state(), State::Shipped);

        // The payment again, under another message id (as a producer that crashed before
        // its relay marked it sent might, past the broker's de-duplication), and a second,
        // late payment event: neither changes anything.
        let mut repeat = metadata::outgoing(subjects::PAYMENT_SUCCEEDED, &payment, &paid(&payment));
        repeat.message_id = unique("again-");
        shop.bus.publish(repeat).await.unwrap();
        shop.events_counted("repeated", 1).await;
        let late = reported(&order_id, "payments", t_paid + 5000);
        shop.publish(subjects::PAYMENT_SUCCEEDED, &late, &paid(&late))
            .await;
        shop.events_counted("unchanged", 1).await;

        let completion = reported(&order_id, "orchestrator", t_completed);
        shop.publish(
            subjects::ORDER_COMPLETED,
            &completion,
            &OrderCompleted {
                metadata: Some(completion.clone()),
            },
        )
        .await;
        let order = next(&mut watch).await;
        assert_eq!(order.state(), State::Completed);
        assert_eq!(
            states(&order),
            [
                (State::Pending, placed_at),
                (State::Paid, placed_at + 60),
                (State::Shipped, placed_at + 120),
                (State::Completed, placed_at + 180),
            ]
        );
        // Final: the watch ends, with OK.
        let end = timeout(WAIT, watch.message()).await.unwrap().unwrap();
        assert!(end.is_none(), "{end:?}");

        // A final state changes no more: not even a failure.
        let failure = reported(&order_id, "orchestrator", t_completed + 1000);
        shop.publish(
            subjects::ORDER_FAILED,
            &failure,
            &OrderFailed {
                metadata: Some(failure.clone()),
                reason: "too late".to_owned(),
            },
        )
        .await;
        shop.events_counted("unchanged", 2).await;
        assert_eq!(get(&shop, &customer, &order_id).await, order);

        let metrics = shop.metrics().await;
        for line in [
            "orders_placements_total{outcome=\"placed\"} 1",
            "orders_transitions_total{state=\"PENDING\"} 1",
            "orders_transitions_total{state=\"PAID\"} 1",
            "orders_transitions_total{state=\"COMPLETED\"} 1",
            "orders_events_total{outcome=\"transition\"} 3",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
        }
        // The shared runtime's gauge, registered with the outbox relay.
        assert!(metrics.contains("meshmart_outbox_lag_ms "), "{metrics}");
        shop.stop().await;
    }
}

#[tokio::test]
async fn a_shipment_heard_before_its_payment_skips_paid_and_the_payment_joins_the_history() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &name("skipped", backend)).await;
        let (customer, order_id) = place(&shop, "early-shipment").await;
        let placed_at = get(&shop, &customer, &order_id)
            .await
            .create_time
            .unwrap()
            .seconds;

        let shipment = reported(&order_id, "fulfillment", (placed_at + 120) * 1000);
        shop.publish(subjects::SHIPMENT_CREATED, &shipment, &shipped(&shipment))
            .await;
        eventually("shipped", || async {
            get(&shop, &customer, &order_id).await.state() == State::Shipped
        })
        .await;
        let payment = reported(&order_id, "payments", (placed_at + 60) * 1000);
        shop.publish(subjects::PAYMENT_SUCCEEDED, &payment, &paid(&payment))
            .await;
        shop.events_counted("history_only", 1).await;
        let order = get(&shop, &customer, &order_id).await;
        assert_eq!(order.state(), State::Shipped, "{backend:?} {broker:?}");
        assert_eq!(order.update_time.unwrap().seconds, placed_at + 120);
        assert_eq!(
            states(&order),
            [
                (State::Pending, placed_at),
                (State::Paid, placed_at + 60),
                (State::Shipped, placed_at + 120),
            ]
        );
        shop.stop().await;
    }
}

#[tokio::test]
async fn a_failed_order_keeps_its_reason_and_changes_no_more() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &name("failed", backend)).await;
        let (customer, order_id) = place(&shop, "declined").await;
        let mut watch = watch(&shop, &customer, &order_id).await;
        assert_eq!(next(&mut watch).await.state(), State::Pending);

        let failure = reported(&order_id, "orchestrator", meshmart::db::now_millis());
        shop.publish(
            subjects::ORDER_FAILED,
            &failure,
            &OrderFailed {
                metadata: Some(failure.clone()),
                reason: "card declined".to_owned(),
            },
        )
        .await;
        let order = next(&mut watch).await;
        assert_eq!(order.state(), State::Failed, "{backend:?} {broker:?}");
        assert_eq!(order.failure_reason, "card declined");
        assert_eq!(order.history.last().unwrap().reason, "card declined");
        assert!(
            timeout(WAIT, watch.message())
                .await
                .unwrap()
                .unwrap()
                .is_none()
        );

        let payment = reported(&order_id, "payments", meshmart::db::now_millis());
        shop.publish(subjects::PAYMENT_SUCCEEDED, &payment, &paid(&payment))
            .await;
        shop.events_counted("unchanged", 1).await;
        assert_eq!(get(&shop, &customer, &order_id).await, order);
        shop.stop().await;
    }
}

#[tokio::test]
async fn an_event_about_an_order_orders_does_not_have_is_dead_lettered() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &name("foreign", backend)).await;
        let stranger = orders::order_id(&unique("nobody-"), "r");
        let payment = reported(&stranger, "payments", meshmart::db::now_millis());
        shop.publish(subjects::PAYMENT_SUCCEEDED, &payment, &paid(&payment))
            .await;
        let group = shop.config.flow.consumer.name.clone();
        eventually("the dead letter", || async {
            shop.bus
                .dead_letters(Some(&group), 1000)
                .await
                .unwrap()
                .iter()
                .any(|letter| letter.message_id == payment.event_id)
        })
        .await;
        // The group goes on with the next event.
        let (customer, order_id) = place(&shop, "after-the-stranger").await;
        let mine = reported(&order_id, "payments", meshmart::db::now_millis());
        shop.publish(subjects::PAYMENT_SUCCEEDED, &mine, &paid(&mine))
            .await;
        eventually("paid", || async {
            get(&shop, &customer, &order_id).await.state() == State::Paid
        })
        .await;
        shop.stop().await;
    }
}

#[tokio::test]
async fn a_watch_ends_at_its_deadline_with_deadline_exceeded() {
    for (backend, broker) in cases() {
        let shop = support::start(backend, &broker, &name("deadline", backend)).await;
        let (customer, order_id) = place(&shop, "slow").await;
        let mut request = as_customer(
            &customer,
            WatchOrderRequest {
                name: format!("orders/{order_id}"),
            },
        );
        // The header alone, without a timer in this client: the server must end it.
        request
            .metadata_mut()
            .insert("grpc-timeout", "700m".parse().unwrap());
        let started = Instant::now();
        let mut watch = shop
            .client
            .clone()
            .watch_order(request)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut watch).await.state(), State::Pending);
        let status = timeout(WAIT, watch.message()).await.unwrap().unwrap_err();
        assert_eq!(
            status.code(),
            Code::DeadlineExceeded,
            "{backend:?} {broker:?} {status:?}"
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(650), "{took:?}");
        shop.stop().await;
    }
}

#[tokio::test]
async fn watches_end_with_unavailable_when_the_service_drains_and_hold_nothing_up() {
    let (backend, broker) = (Backend::Sqlite, Broker::Embedded);
    let mut shop = support::start(backend, &broker, "drain").await;
    let (customer, order_id) = place(&shop, "drained").await;
    let mut watch = watch(&shop, &customer, &order_id).await;
    assert_eq!(next(&mut watch).await.state(), State::Pending);
    let mut orders = shop.orders.take().unwrap();
    orders.begin_stop();
    let status = timeout(WAIT, watch.message()).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Nothing abandoned: the server stops cleanly.
    timeout(WAIT, orders.stop()).await.unwrap().unwrap();
    shop.stop().await;
}

#[tokio::test]
async fn a_watch_hears_of_transitions_another_replica_made() {
    for backend in meshmart::testing::backends() {
        let mut shop = support::start(backend, &Broker::Embedded, &name("replicas", backend)).await;
        // Placed first, so the first replica has migrated the database before the second
        // starts (sqlx's migrator takes no lock on SQLite; one process per file is the rule).
        let (customer, order_id) = place(&shop, "two-replicas").await;
        // A second replica on the same database, whose consumer reads a bus of its own
        // that nothing is published on: it hears of the flow only through the database.
        let mut deaf = shop.config.clone();
        let elsewhere = tempfile::tempdir().unwrap();
        deaf.flow.events = meshmart::events::EventsConfig::from_env(
            &meshmart::config::Env::from_pairs([("DATA_DIR", elsewhere.path().to_str().unwrap())]),
        )
        .unwrap();
        let replica = meshmart::testing::TestServer::spawn(
            &deaf.flow.server.clone(),
            |listeners, shutdown| orders::serve(deaf, listeners, shutdown),
        )
        .await;
        let mut replica_client =
            meshmart::proto::orders::order_service_client::OrderServiceClient::connect(
                replica.endpoint(),
            )
            .await
            .unwrap();
        let mut watch = replica_client
            .watch_order(as_customer(
                &customer,
                WatchOrderRequest {
                    name: format!("orders/{order_id}"),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut watch).await.state(), State::Pending);
        let payment = reported(&order_id, "payments", meshmart::db::now_millis());
        shop.publish(subjects::PAYMENT_SUCCEEDED, &payment, &paid(&payment))
            .await;
        assert_eq!(next(&mut watch).await.state(), State::Paid, "{backend:?}");
        drop(watch);
        replica.stop().await.unwrap();
        shop.stop_orders().await;
        shop.stop().await;
    }
}
