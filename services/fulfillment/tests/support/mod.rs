//! Fulfillment in-process, on a real event bus: the embedded log always, JetStream when
//! `MESHMART_TEST_NATS_URL` names a server. A test publishes what orders, payments and the
//! orchestrator would, and reads what fulfillment publishes through a group of its own.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use meshmart::{
    events::{
        Bus, EventBus, Outgoing,
        metadata::{caused_by, first, outgoing, subjects},
    },
    proto::{
        events::{
            EventMetadata, OrderFailed, OrderLine, PaymentSucceeded, ShipmentRequested,
            ShippingAddress,
        },
        fulfillment::{
            ListShipmentsRequest, Shipment, fulfillment_service_client::FulfillmentServiceClient,
        },
    },
    testing::{self, Backend, TestServer, Turn},
};
use tokio::{sync::mpsc, time::timeout};
use tonic::transport::Channel;

/// How long any one wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

pub use meshmart::testing::{Broker, setups};

/// One event fulfillment published.
pub type Published = testing::Observed;

pub struct Fulfillment {
    pub server: TestServer<meshmart::Error>,
    pub client: FulfillmentServiceClient<Channel>,
    pub bus: Bus,
    published: mpsc::UnboundedReceiver<Published>,
    _turn: Option<Turn>,
    _dir: tempfile::TempDir,
}

pub async fn start(broker: &Broker, backend: Backend, test: &str) -> Fulfillment {
    let dir = tempfile::tempdir().unwrap();
    let (events, turn) = testing::events(broker, dir.path()).await;
    let config = fulfillment::Config {
        flow: meshmart::config::FlowConfig {
            server: testing::server_config(fulfillment::SERVICE),
            database: testing::database(backend, dir.path(), &format!("{test}_fulfillment")).await,
            events: events.clone(),
            consumer: meshmart::events::ConsumerConfig::with(
                "fulfillment",
                &fulfillment::SUBJECTS,
                fulfillment::consumer_defaults(),
            ),
        },
    };
    let bus = meshmart::events::connect(&events).await.unwrap();
    let published = observe(&bus).await;
    let server = TestServer::spawn(&config.flow.server.clone(), |listeners, shutdown| {
        fulfillment::serve(config, listeners, shutdown)
    })
    .await;
    let client = FulfillmentServiceClient::connect(server.endpoint())
        .await
        .unwrap();
    Fulfillment {
        server,
        client,
        bus,
        published,
        _turn: turn,
        _dir: dir,
    }
}

async fn observe(bus: &Bus) -> mpsc::UnboundedReceiver<Published> {
    let subjects = [subjects::SHIPMENT_CREATED, subjects::SHIPMENT_FAILED];
    testing::observe(bus, "fulfillment-test-observer", &subjects).await
}

/// The address used everywhere, so a test can look for any part of it in what comes back.
pub fn address(postal_code: &str) -> ShippingAddress {
    ShippingAddress {
        recipient: "Ada Lovelace".to_owned(),
        address_lines: vec!["12 Secret Street".to_owned(), "Flat 3".to_owned()],
        locality: "Hiddenville".to_owned(),
        postal_code: postal_code.to_owned(),
        region_code: "DE".to_owned(),
    }
}

/// An order's first events' metadata, and its ShipmentRequested as orders publishes it.
pub fn shipment_requested(order_id: &str, postal_code: &str) -> (EventMetadata, Outgoing) {
    let metadata = first(order_id, &format!("request-{order_id}"), "orders");
    let line = |product_id: &str, quantity| OrderLine {
        product_id: product_id.to_owned(),
        quantity,
        unit_price: None,
    };
    let event = ShipmentRequested {
        metadata: Some(metadata.clone()),
        lines: vec![line("travel-mug", 1), line("espresso-cup", 2)],
        address: Some(address(postal_code)),
    };
    (
        metadata.clone(),
        outgoing(subjects::SHIPMENT_REQUESTED, &metadata, &event),
    )
}

pub fn payment_succeeded(cause: &EventMetadata) -> Outgoing {
    let metadata = caused_by(cause, "payments");
    let event = PaymentSucceeded {
        metadata: Some(metadata.clone()),
        charge_id: "charge-1".to_owned(),
        amount: None,
    };
    outgoing(subjects::PAYMENT_SUCCEEDED, &metadata, &event)
}

pub fn order_failed(cause: &EventMetadata) -> Outgoing {
    let metadata = caused_by(cause, "orchestrator");
    let event = OrderFailed {
        metadata: Some(metadata.clone()),
        reason: "card declined".to_owned(),
    };
    outgoing(subjects::ORDER_FAILED, &metadata, &event)
}

/// A unique order id for one test case.
pub fn order_id(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

impl Fulfillment {
    pub async fn publish(&self, event: Outgoing) {
        self.bus.publish(event).await.unwrap();
    }

    /// The next event fulfillment published, within [`WAIT`].
    pub async fn next_published(&mut self) -> Published {
        timeout(WAIT, self.published.recv())
            .await
            .expect("fulfillment published nothing in time")
            .expect("the observer stopped")
    }

    /// The order's shipments, as the API lists them.
    pub async fn shipments_of(&mut self, order_id: &str) -> Vec<Shipment> {
        self.client
            .list_shipments(ListShipmentsRequest {
                order_id: order_id.to_owned(),
                ..ListShipmentsRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .shipments
    }

    /// Waits, polling within [`WAIT`], until the order has a shipment.
    pub async fn shipment_of(&mut self, order_id: &str) -> Shipment {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(shipment) = self.shipments_of(order_id).await.pop() {
                return shipment;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no shipment for {order_id} in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

/// The order an event fulfillment published is about (field 1 of every event is its
/// metadata, so any of them decodes as the smallest one).
pub fn order_of(published: &Published) -> String {
    use prost::Message;
    meshmart::proto::events::OrderCompleted::decode(published.payload.clone())
        .unwrap()
        .metadata
        .unwrap()
        .order_id
}
