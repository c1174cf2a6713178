//! The orchestrator in-process in front of a real inventory, on a real event bus (the
//! embedded log always, JetStream when `MESHMART_TEST_NATS_URL` names a server), with a
//! test consumer group that sees what the orchestrator publishes.

#![allow(dead_code, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use meshmart::{
    events::{
        ConsumerConfig, EventBus, EventsConfig, Outgoing,
        metadata::{outgoing, subjects},
    },
    proto::{
        events::{
            EventMetadata, OrderCompleted, OrderCreated, OrderFailed, PaymentDeclined,
            PaymentFailed, PaymentSucceeded, RefundRequested, ShipmentCreated, ShipmentFailed,
        },
        inventory::{
            GetReservationRequest, ReservationItem, ReservationState, ReserveStockRequest,
            SetStockRequest, inventory_service_client::InventoryServiceClient,
        },
        orchestrator::{
            GetSagaRequest, Saga, dead_letter_service_client::DeadLetterServiceClient,
            orchestrator_service_client::OrchestratorServiceClient,
        },
    },
    testing::{self, Backend, Broker, TestServer, Turn},
};
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// Every wait in these tests ends by this.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long nothing more must arrive for "published once" to hold.
pub const QUIET: Duration = Duration::from_millis(500);

pub struct Shop {
    pub orchestrator: TestServer<meshmart::Error>,
    pub inventory: Option<TestServer<meshmart::Error>>,
    pub inventory_config: inventory::Config,
    pub sagas: OrchestratorServiceClient<Channel>,
    pub dead_letters: DeadLetterServiceClient<Channel>,
    pub stock: InventoryServiceClient<Channel>,
    pub bus: meshmart::events::Bus,
    /// What the orchestrator published, as the test group received it.
    pub published: mpsc::UnboundedReceiver<Published>,
    pub events: EventsConfig,
    _turn: Option<Turn>,
    _dir: tempfile::TempDir,
}

/// One event the orchestrator published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub subject: String,
    pub order_id: String,
    /// RefundRequested's charge, OrderFailed's reason; empty otherwise.
    pub detail: String,
}

pub async fn start(broker: &Broker, backend: Backend, test: &str, max_attempts: u32) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let (events, turn) = testing::events(broker, dir.path()).await;
    let inventory_config = inventory::Config {
        server: testing::server_config(inventory::SERVICE),
        database: testing::database(backend, dir.path(), &format!("{test}_inventory")).await,
        reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
    };
    let inventory = serve_inventory(&inventory_config).await;
    let stock = InventoryServiceClient::connect(inventory.endpoint())
        .await
        .unwrap();
    let bus = meshmart::events::connect(&events).await.unwrap();
    let published = observe(bus.clone()).await;
    let mut consumer = ConsumerConfig::with_defaults("orchestrator", &orchestrator::SUBJECTS);
    consumer.backoff = vec![Duration::from_millis(50)];
    consumer.max_attempts = max_attempts;
    let config = orchestrator::Config {
        flow: meshmart::config::FlowConfig {
            server: testing::server_config(orchestrator::SERVICE),
            database: testing::database(backend, dir.path(), &format!("{test}_orchestrator")).await,
            events: events.clone(),
            consumer,
        },
        inventory_addr: inventory.endpoint(),
    };
    let orchestrator = TestServer::spawn(&config.flow.server.clone(), |listeners, shutdown| {
        orchestrator::serve(config, listeners, shutdown)
    })
    .await;
    let channel = Channel::from_shared(orchestrator.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The next start of inventory takes the same port, so the orchestrator finds it again.
    let mut inventory_config = inventory_config;
    inventory_config.server.grpc_addr = inventory.addr;
    Shop {
        orchestrator,
        inventory: Some(inventory),
        inventory_config,
        sagas: OrchestratorServiceClient::new(channel.clone()),
        dead_letters: DeadLetterServiceClient::new(channel),
        stock,
        bus,
        published,
        events,
        _turn: turn,
        _dir: dir,
    }
}

async fn serve_inventory(config: &inventory::Config) -> TestServer<meshmart::Error> {
    let config = config.clone();
    TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        inventory::serve(config, listeners, shutdown)
    })
    .await
}

/// A consumer group of the test's own on what the orchestrator publishes.
async fn observe(bus: meshmart::events::Bus) -> mpsc::UnboundedReceiver<Published> {
    let subjects = [
        subjects::ORDER_COMPLETED,
        subjects::ORDER_FAILED,
        subjects::REFUND_REQUESTED,
    ];
    let mut observed = testing::observe(&bus, "test-observer", &subjects).await;
    let (send, receive) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = observed.recv().await {
            let (metadata, detail) = match event.subject.as_str() {
                subjects::ORDER_COMPLETED => (
                    OrderCompleted::decode(event.payload).unwrap().metadata,
                    String::new(),
                ),
                subjects::ORDER_FAILED => {
                    let e = OrderFailed::decode(event.payload).unwrap();
                    (e.metadata, e.reason)
                }
                _ => {
                    let e = RefundRequested::decode(event.payload).unwrap();
                    (e.metadata, e.charge_id)
                }
            };
            let published = Published {
                subject: event.subject,
                order_id: metadata.unwrap().order_id,
                detail,
            };
            if send.send(published).is_err() {
                return;
            }
        }
    });
    receive
}

impl Shop {
    /// Stocks a product and reserves one for `order_id`, as orders does before publishing.
    pub async fn reserve(&mut self, order_id: &str) {
        self.stock
            .set_stock(SetStockRequest {
                product_id: "kettle".to_owned(),
                available_quantity: 1000,
                request_id: format!("stock-for-{order_id}"),
            })
            .await
            .unwrap();
        self.stock
            .reserve_stock(ReserveStockRequest {
                reservation_id: order_id.to_owned(),
                items: vec![ReservationItem {
                    product_id: "kettle".to_owned(),
                    quantity: 1,
                }],
            })
            .await
            .unwrap();
    }

    pub async fn reservation(&mut self, order_id: &str) -> ReservationState {
        self.stock
            .get_reservation(GetReservationRequest {
                reservation_id: order_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap()
            .state()
    }

    pub async fn publish(&self, event: Outgoing) {
        self.bus.publish(event).await.unwrap();
    }

    /// Polls the saga of `order_id` until `done` holds, or fails the test.
    pub async fn saga_until(&mut self, order_id: &str, done: impl Fn(&Saga) -> bool) -> Saga {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let saga = self
                .sagas
                .get_saga(GetSagaRequest {
                    name: format!("sagas/{order_id}"),
                })
                .await
                .ok()
                .and_then(|reply| reply.into_inner().saga);
            if let Some(saga) = saga.as_ref().filter(|saga| done(saga)) {
                return saga.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "saga {order_id} not there after {WAIT:?}: {saga:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything published about `order_id` until nothing more came for [`QUIET`],
    /// waiting up to [`WAIT`] for at least `at_least`.
    pub async fn published_about(&mut self, order_id: &str, at_least: usize) -> Vec<Published> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut found = Vec::new();
        loop {
            let wait = if found.len() >= at_least {
                QUIET
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            match tokio::time::timeout(wait, self.published.recv()).await {
                Ok(Some(published)) if published.order_id == order_id => found.push(published),
                Ok(Some(_)) => {}
                Ok(None) => panic!("the observer stopped"),
                Err(_) if found.len() >= at_least => return found,
                Err(_) => panic!("{order_id}: {found:?} after {WAIT:?}, wanted {at_least}"),
            }
        }
    }

    pub async fn stop_inventory(&mut self) {
        if let Some(inventory) = self.inventory.take() {
            inventory.stop().await.unwrap();
        }
    }

    /// Serves inventory again, on its old port and database.
    pub async fn restart_inventory(&mut self) {
        self.inventory = Some(serve_inventory(&self.inventory_config).await);
        self.stock = InventoryServiceClient::connect(format!("http://{}", self.inventory_addr()))
            .await
            .unwrap();
    }

    fn inventory_addr(&self) -> SocketAddr {
        self.inventory_config.server.grpc_addr
    }

    pub async fn stop(mut self) {
        self.stop_inventory().await;
        self.orchestrator.stop().await.unwrap();
    }
}

pub fn metadata(order_id: &str) -> EventMetadata {
    meshmart::events::metadata::first(order_id, "test", "test")
}

pub fn created(order_id: &str) -> Outgoing {
    let m = metadata(order_id);
    let event = OrderCreated {
        metadata: Some(m.clone()),
        customer_id: "alice".to_owned(),
        ..OrderCreated::default()
    };
    outgoing(subjects::ORDER_CREATED, &m, &event)
}

pub fn paid(order_id: &str) -> Outgoing {
    let m = metadata(order_id);
    let event = PaymentSucceeded {
        metadata: Some(m.clone()),
        charge_id: format!("charge-{order_id}"),
        amount: None,
    };
    outgoing(subjects::PAYMENT_SUCCEEDED, &m, &event)
}

pub fn declined(order_id: &str) -> Outgoing {
    let m = metadata(order_id);
    let event = PaymentDeclined {
        metadata: Some(m.clone()),
        reason: "card declined".to_owned(),
    };
    outgoing(subjects::PAYMENT_DECLINED, &m, &event)
}

pub fn payment_failed(order_id: &str, will_retry: bool) -> Outgoing {
    let m = metadata(order_id);
    let event = PaymentFailed {
        metadata: Some(m.clone()),
        reason: "provider timed out".to_owned(),
        attempt: 1,
        will_retry,
    };
    outgoing(subjects::PAYMENT_FAILED, &m, &event)
}

pub fn shipped(order_id: &str) -> Outgoing {
    let m = metadata(order_id);
    let event = ShipmentCreated {
        metadata: Some(m.clone()),
        shipment_id: format!("ship-{order_id}"),
        tracking_number: "TRACK-1".to_owned(),
    };
    outgoing(subjects::SHIPMENT_CREATED, &m, &event)
}

pub fn shipment_failed(order_id: &str) -> Outgoing {
    let m = metadata(order_id);
    let event = ShipmentFailed {
        metadata: Some(m.clone()),
        reason: "the carrier does not serve postal code 00000".to_owned(),
    };
    outgoing(subjects::SHIPMENT_FAILED, &m, &event)
}

/// The same event again under another broker message id, past the broker's de-duplication.
pub fn again(event: &Outgoing) -> Outgoing {
    Outgoing {
        message_id: format!("{}-again", event.message_id),
        ..event.clone()
    }
}
