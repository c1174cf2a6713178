//! Notifications over real gRPC, fed through a real event bus, on every broker and
//! database backend: one message per order and kind however often an event comes, an
//! event ahead of its order's OrderCreated written once that arrives, and each customer
//! seeing only their own.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use meshmart::{
    events::{
        ConsumerConfig, EventBus, Outgoing,
        metadata::{outgoing, subjects},
    },
    proto::{
        events::{
            EventMetadata, OrderCompleted, OrderCreated, OrderFailed, PaymentDeclined,
            PaymentRefunded, ShipmentCreated,
        },
        google::r#type::Money,
        notifications::{
            GetNotificationRequest, ListNotificationsRequest, Notification, notification::Kind,
            notification_service_client::NotificationServiceClient,
        },
    },
    testing::{self, Backend, Broker, TestServer, Turn, setups},
};
use tonic::{Code, Request, transport::Channel};

/// Every wait in these tests ends by this.
const WAIT: Duration = Duration::from_secs(20);

struct Running {
    server: TestServer<meshmart::Error>,
    client: NotificationServiceClient<Channel>,
    bus: meshmart::events::Bus,
    _turn: Option<Turn>,
    _dir: tempfile::TempDir,
}

async fn start(broker: &Broker, backend: Backend, test: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (events, turn) = testing::events(broker, dir.path()).await;
    let mut consumer = ConsumerConfig::with_defaults("notifications", &notifications::SUBJECTS);
    // Redelivered at once, and never given up on within a test.
    consumer.backoff = vec![Duration::from_millis(50)];
    consumer.max_attempts = 1000;
    let config = notifications::Config {
        flow: meshmart::config::FlowConfig {
            server: testing::server_config(notifications::SERVICE),
            database: testing::database(backend, dir.path(), test).await,
            events: events.clone(),
            consumer,
        },
    };
    let server = TestServer::spawn(&config.flow.server.clone(), |listeners, shutdown| {
        notifications::serve(config, listeners, shutdown)
    })
    .await;
    let client = NotificationServiceClient::connect(server.endpoint())
        .await
        .unwrap();
    let bus = meshmart::events::connect(&events).await.unwrap();
    Running {
        server,
        client,
        bus,
        _turn: turn,
        _dir: dir,
    }
}

fn metadata(order_id: &str) -> EventMetadata {
    meshmart::events::metadata::first(order_id, "test", "test")
}

fn euros(units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".to_owned(),
        units,
        nanos: 0,
    })
}

fn created(order_id: &str, customer: &str) -> Outgoing {
    let metadata = metadata(order_id);
    let event = OrderCreated {
        metadata: Some(metadata.clone()),
        customer_id: customer.to_owned(),
        lines: Vec::new(),
        total: euros(30),
    };
    outgoing(subjects::ORDER_CREATED, &metadata, &event)
}

/// One event of each kind after OrderCreated, for `order_id`.
fn the_rest(order_id: &str) -> Vec<Outgoing> {
    let m = || {
        let metadata = metadata(order_id);
        (metadata.clone(), Some(metadata))
    };
    let (d, declined) = m();
    let (s, shipped) = m();
    let (c, completed) = m();
    let (f, failed) = m();
    let (r, refunded) = m();
    vec![
        outgoing(
            subjects::PAYMENT_DECLINED,
            &d,
            &PaymentDeclined {
                metadata: declined,
                reason: "insufficient funds".to_owned(),
            },
        ),
        outgoing(
            subjects::SHIPMENT_CREATED,
            &s,
            &ShipmentCreated {
                metadata: shipped,
                shipment_id: "s-1".to_owned(),
                tracking_number: "TRACK-123".to_owned(),
            },
        ),
        outgoing(
            subjects::ORDER_COMPLETED,
            &c,
            &OrderCompleted {
                metadata: completed,
            },
        ),
        outgoing(
            subjects::ORDER_FAILED,
            &f,
            &OrderFailed {
                metadata: failed,
                reason: "the carrier does not serve the address".to_owned(),
            },
        ),
        outgoing(
            subjects::PAYMENT_REFUNDED,
            &r,
            &PaymentRefunded {
                metadata: refunded,
                charge_id: "c-1".to_owned(),
                refund_id: "r-1".to_owned(),
                amount: euros(30),
            },
        ),
    ]
}

/// The same event again, under another broker message id: what the broker's de-duplication
/// does not catch (a producer that restarted past its window, a replayed dead letter).
fn again(event: &Outgoing) -> Outgoing {
    Outgoing {
        message_id: format!("{}-again", event.message_id),
        ..event.clone()
    }
}

fn as_customer<T>(customer: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-meshmart-customer-id", customer.parse().unwrap());
    request
}

async fn list(
    client: &mut NotificationServiceClient<Channel>,
    customer: &str,
    order_id: &str,
) -> Vec<Notification> {
    client
        .list_notifications(as_customer(
            customer,
            ListNotificationsRequest {
                page_size: 100,
                page_token: String::new(),
                order_id: order_id.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications
}

/// Polls until `customer` has at least `count` notifications of `order_id`, or fails.
async fn wait_for(
    client: &mut NotificationServiceClient<Channel>,
    customer: &str,
    order_id: &str,
    count: usize,
) -> Vec<Notification> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = list(client, customer, order_id).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{order_id}: {} of {count} notifications after {WAIT:?}: {found:?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kinds(notifications: &[Notification]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = notifications.iter().map(Notification::kind).collect();
    kinds.sort_by_key(|k| *k as i32);
    kinds
}

async fn each_kind_once_per_order_under_repeated_delivery(broker: &Broker, backend: Backend) {
    let mut running = start(broker, backend, "repeated_delivery").await;
    let order = "order-repeated";
    let first = created(order, "alice");
    running.bus.publish(first.clone()).await.unwrap();
    let rest = the_rest(order);
    for event in &rest {
        running.bus.publish(event.clone()).await.unwrap();
    }
    // Every event again, and a second ShipmentCreated of its own (another event id).
    running.bus.publish(again(&first)).await.unwrap();
    for event in &rest {
        running.bus.publish(again(event)).await.unwrap();
    }
    let second_shipment = the_rest(order).swap_remove(1);
    running.bus.publish(second_shipment).await.unwrap();
    // The group takes events oldest first, one at a time: once a later order's message is
    // written, every event above has been applied.
    running
        .bus
        .publish(created("order-marker", "alice"))
        .await
        .unwrap();
    wait_for(&mut running.client, "alice", "order-marker", 1).await;

    let found = list(&mut running.client, "alice", order).await;
    assert_eq!(
        kinds(&found),
        vec![
            Kind::OrderPlaced,
            Kind::PaymentDeclined,
            Kind::OrderShipped,
            Kind::OrderCompleted,
            Kind::OrderFailed,
            Kind::RefundIssued
        ],
        "{backend:?}: {found:#?}"
    );
    for notification in &found {
        assert_eq!(notification.customer_id, "alice");
        assert_eq!(notification.order_id, order);
        assert_eq!(
            notification.name,
            format!("notifications/{}", notification.notification_id)
        );
        assert!(!notification.subject.is_empty() && !notification.body.is_empty());
    }
    let text = |kind| {
        found
            .iter()
            .find(|n| n.kind() == kind)
            .map(|n| n.body.clone())
            .unwrap()
    };
    assert!(text(Kind::OrderShipped).contains("TRACK-123"));
    assert!(text(Kind::OrderFailed).contains("does not serve the address"));
    assert!(text(Kind::PaymentDeclined).contains("insufficient funds"));
    assert!(text(Kind::RefundIssued).contains("30.00 EUR"));
    running.server.stop().await.unwrap();
}

async fn an_event_before_its_order_is_written_once_the_order_arrives(
    broker: &Broker,
    backend: Backend,
) {
    let mut running = start(broker, backend, "out_of_order").await;
    let order = "order-early-shipment";
    let shipment = the_rest(order).swap_remove(1);
    running.bus.publish(shipment).await.unwrap();
    // Nothing can be written for an order nobody has claimed yet...
    running
        .bus
        .publish(created("order-marker", "bob"))
        .await
        .unwrap();
    wait_for(&mut running.client, "bob", "order-marker", 1).await;
    assert!(list(&mut running.client, "carol", order).await.is_empty());
    // ...and once its OrderCreated comes, the early event is redelivered and written.
    running.bus.publish(created(order, "carol")).await.unwrap();
    let found = wait_for(&mut running.client, "carol", order, 2).await;
    assert_eq!(
        kinds(&found),
        vec![Kind::OrderPlaced, Kind::OrderShipped],
        "{backend:?}"
    );
    running.server.stop().await.unwrap();
}

async fn a_customer_sees_only_their_own(broker: &Broker, backend: Backend) {
    let mut running = start(broker, backend, "scoping").await;
    running
        .bus
        .publish(created("order-a", "alice"))
        .await
        .unwrap();
    for event in the_rest("order-a") {
        running.bus.publish(event).await.unwrap();
    }
    running
        .bus
        .publish(created("order-b", "bob"))
        .await
        .unwrap();
    let alices = wait_for(&mut running.client, "alice", "order-a", 6).await;
    wait_for(&mut running.client, "bob", "order-b", 1).await;
    let client = &mut running.client;

    let name = alices[0].name.clone();
    let own = client
        .get_notification(as_customer(
            "alice",
            GetNotificationRequest { name: name.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .notification
        .unwrap();
    assert_eq!(own, alices[0]);
    let status = client
        .get_notification(as_customer(
            "bob",
            GetNotificationRequest { name: name.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = client
        .get_notification(Request::new(GetNotificationRequest { name }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(list(client, "bob", "order-a").await.is_empty());
    let bobs = list(client, "bob", "").await;
    assert_eq!(kinds(&bobs), vec![Kind::OrderPlaced], "{backend:?}");

    // Pages of two, newest first, each notification once.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_notifications(as_customer(
                "alice",
                ListNotificationsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    order_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.notifications.len() <= 2);
        pages.extend(page.notifications);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, alices, "{backend:?}");
    let times: Vec<_> = pages
        .iter()
        .map(|n| {
            let t = n.create_time.unwrap();
            (t.seconds, t.nanos, n.notification_id.clone())
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    let status = client
        .list_notifications(as_customer(
            "alice",
            ListNotificationsRequest {
                page_size: -1,
                page_token: "nonsense!".to_owned(),
                order_id: String::new(),
            },
        ))
        .await;
    assert_eq!(
        testing::violated_fields(status),
        ["page_size", "page_token"]
    );
    running.server.stop().await.unwrap();
}

#[tokio::test]
async fn each_kind_once_per_order_under_repeated_delivery_on_every_setup() {
    for (broker, backend) in setups() {
        each_kind_once_per_order_under_repeated_delivery(&broker, backend).await;
    }
}

#[tokio::test]
async fn an_event_before_its_order_is_written_once_the_order_arrives_on_every_setup() {
    for (broker, backend) in setups() {
        an_event_before_its_order_is_written_once_the_order_arrives(&broker, backend).await;
    }
}

#[tokio::test]
async fn a_customer_sees_only_their_own_on_every_setup() {
    for (broker, backend) in setups() {
        a_customer_sees_only_their_own(&broker, backend).await;
    }
}
