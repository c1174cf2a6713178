//! The shop a test places orders in: inventory, the catalog in front of it, and orders in
//! front of both, each served in-process over real gRPC on one database backend, with the
//! real event bus (the embedded log in the test's folder, or the JetStream server of
//! `scripts/with-nats.sh`). A test reads what orders publishes through a consumer group of
//! its own, and publishes the flow's events as the other services would.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use meshmart::{
    config::{Env, FlowConfig},
    customer::CUSTOMER_HEADER,
    events::{
        Bus, BusConsumer, Consumer, ConsumerConfig, EventBus, EventsConfig, Headers,
        metadata::{self, subjects},
    },
    proto::{
        events::{EventMetadata, OrderCompleted},
        inventory::inventory_service_client::InventoryServiceClient,
        orders::{
            CreateOrderRequest, OrderLine, ShippingAddress,
            order_service_client::OrderServiceClient,
        },
    },
    testing::{self, Backend, TestServer},
};
use tokio::time::{Instant, timeout_at};
use tonic::{Request, transport::Channel};

/// How long anything a test waits for may take.
pub const WAIT: Duration = Duration::from_secs(15);
/// How long something that should not happen is given to show up.
pub const QUIET: Duration = Duration::from_millis(700);

/// The brokers to test on: the embedded log always, JetStream when a server was given.
#[derive(Debug, Clone)]
pub enum Broker {
    Embedded,
    JetStream(String),
}

/// Every backend with every broker.
pub fn cases() -> Vec<(Backend, Broker)> {
    let mut brokers = vec![Broker::Embedded];
    if let Some(url) = meshmart::events::suite::nats_test_url() {
        brokers.push(Broker::JetStream(url));
    }
    testing::backends()
        .into_iter()
        .flat_map(|backend| brokers.iter().map(move |broker| (backend, broker.clone())))
        .collect()
}

/// A name no other test of this run, nor an earlier run on the same server, uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{:x}{}n{}",
        nanos % (1 << 40),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Shop {
    pub orders: Option<TestServer<meshmart::Error>>,
    pub catalog: TestServer<meshmart::Error>,
    pub inventory: TestServer<meshmart::Error>,
    pub client: OrderServiceClient<Channel>,
    pub inventory_client: InventoryServiceClient<Channel>,
    /// The same broker orders uses, for the test's own publishing and consuming.
    pub bus: Bus,
    pub config: orders::Config,
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

pub async fn start(backend: Backend, broker: &Broker, test: &str) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let inventory_config = inventory::Config {
        server: testing::server_config(inventory::SERVICE),
        database: testing::database(backend, dir.path(), &format!("{test}_inventory")).await,
        reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
    };
    let inventory = TestServer::spawn(&inventory_config.server.clone(), |listeners, shutdown| {
        inventory::serve(inventory_config, listeners, shutdown)
    })
    .await;
    let catalog_config = catalog::Config {
        server: testing::server_config(catalog::SERVICE),
        database: testing::database(backend, dir.path(), &format!("{test}_catalog")).await,
        inventory_addr: inventory.endpoint(),
    };
    let catalog = TestServer::spawn(&catalog_config.server.clone(), |listeners, shutdown| {
        catalog::serve(catalog_config, listeners, shutdown)
    })
    .await;

    let env = match broker {
        Broker::Embedded => Env::from_pairs([("DATA_DIR", dir.path().to_str().unwrap())]),
        Broker::JetStream(url) => Env::from_pairs([("NATS_URL", url.as_str())]),
    };
    let events = EventsConfig::from_env(&env).unwrap();
    let mut consumer = ConsumerConfig::with(
        orders::SERVICE.name,
        &orders::SUBJECTS,
        orders::consumer_defaults(),
    );
    // Quick retries; and on a JetStream server shared by every test, a group of its own.
    consumer.backoff = vec![Duration::from_millis(100)];
    if let Broker::JetStream(_) = broker {
        consumer.name = unique("orders_");
    }
    let config = orders::Config {
        flow: FlowConfig {
            server: testing::server_config(orders::SERVICE),
            database: testing::database(backend, dir.path(), &format!("{test}_orders")).await,
            events: events.clone(),
            consumer,
        },
        catalog_addr: catalog.endpoint(),
        inventory_addr: inventory.endpoint(),
    };
    let bus = meshmart::events::connect(&events).await.unwrap();
    let inventory_client = InventoryServiceClient::connect(inventory.endpoint())
        .await
        .unwrap();
    let (orders, client) = spawn_orders(&config).await;
    Shop {
        orders: Some(orders),
        catalog,
        inventory,
        client,
        inventory_client,
        bus,
        config,
        broker: broker.clone(),
        dir,
    }
}

async fn spawn_orders(
    config: &orders::Config,
) -> (TestServer<meshmart::Error>, OrderServiceClient<Channel>) {
    let config = config.clone();
    let orders = TestServer::spawn(&config.flow.server.clone(), |listeners, shutdown| {
        orders::serve(config, listeners, shutdown)
    })
    .await;
    let client = OrderServiceClient::connect(orders.endpoint())
        .await
        .unwrap();
    (orders, client)
}

impl Shop {
    /// Starts orders again, after [`Shop::stop_orders`], on the same database and bus.
    pub async fn start_orders(&mut self) {
        let (orders, client) = spawn_orders(&self.config).await;
        self.client = client;
        self.orders = Some(orders);
    }

    pub async fn stop_orders(&mut self) {
        if let Some(orders) = self.orders.take() {
            orders.stop().await.unwrap();
        }
    }

    pub async fn stop(mut self) {
        self.stop_orders().await;
        self.catalog.stop().await.unwrap();
        self.inventory.stop().await.unwrap();
    }

    /// A consumer group of the test's own on `subjects`, reading from the first event.
    pub async fn observe(&self, subjects: &[&str]) -> Observer {
        let consumer = self
            .bus
            .consumer(&ConsumerConfig {
                name: unique("observer_"),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                ack_wait: Duration::from_secs(30),
                max_attempts: 3,
                backoff: vec![],
            })
            .await
            .unwrap();
        Observer { consumer }
    }

    /// Publishes `event` on `subject` as its producer would.
    pub async fn publish(
        &self,
        subject: &str,
        metadata: &EventMetadata,
        event: &impl prost::Message,
    ) {
        self.bus
            .publish(metadata::outgoing(subject, metadata, event))
            .await
            .unwrap();
    }
}

impl Shop {
    /// The orders service's metrics, as Prometheus scrapes them.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.orders.as_ref().unwrap().metrics_addr;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: orders\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    }

    /// Waits until the consumer has counted `count` events with `outcome`.
    pub async fn events_counted(&self, outcome: &str, count: u64) {
        let line = format!("orders_events_total{{outcome=\"{outcome}\"}} {count}");
        eventually(&line, || async {
            self.metrics().await.lines().any(|l| l == line)
        })
        .await;
    }
}

/// A call as `customer` makes it.
pub fn as_customer<T>(customer: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(CUSTOMER_HEADER, customer.parse().unwrap());
    request
}

/// An order of `lines` (product, quantity) of the demo catalogue, to a German address.
pub fn order_request(request_id: &str, lines: &[(&str, i64)], token: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        request_id: request_id.to_owned(),
        lines: lines
            .iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id: (*product_id).to_owned(),
                quantity: *quantity,
                unit_price: None,
            })
            .collect(),
        payment_token: token.to_owned(),
        shipping_address: Some(ShippingAddress {
            recipient: "Ada Lovelace".to_owned(),
            address_lines: vec!["Unter den Linden 77".to_owned(), "Hinterhaus".to_owned()],
            locality: "Berlin".to_owned(),
            postal_code: "10117".to_owned(),
            region_code: "DE".to_owned(),
        }),
    }
}

/// One event a test consumed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub subject: String,
    pub message_id: String,
    pub headers: Headers,
    pub payload: bytes::Bytes,
    pub metadata: EventMetadata,
}

pub struct Observer {
    consumer: BusConsumer,
}

impl Observer {
    /// The next `count` events about `order_id` (others are skipped: on JetStream every
    /// test's events share the stream), each acked. Fails the test after [`WAIT`].
    pub async fn events_for(&mut self, order_id: &str, count: usize) -> Vec<Seen> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while seen.len() < count {
            let Some(event) = self.next_for(order_id, deadline).await else {
                panic!(
                    "{} of {count} events about {order_id} arrived in time: {seen:?}",
                    seen.len()
                );
            };
            seen.push(event);
        }
        seen
    }

    /// Fails the test if any event about `order_id` arrives within [`QUIET`].
    pub async fn nothing_more_for(&mut self, order_id: &str) {
        if let Some(event) = self.next_for(order_id, Instant::now() + QUIET).await {
            panic!("an unexpected event about {order_id}: {event:?}");
        }
    }

    async fn next_for(&mut self, order_id: &str, deadline: Instant) -> Option<Seen> {
        loop {
            let delivery = timeout_at(deadline, self.consumer.next())
                .await
                .ok()?
                .unwrap();
            // Every event of the flow has its metadata as field 1, as OrderCompleted does.
            let metadata = <OrderCompleted as prost::Message>::decode(delivery.payload.clone())
                .ok()
                .and_then(|event| event.metadata)
                .unwrap_or_default();
            let seen = Seen {
                subject: delivery.subject.clone(),
                message_id: delivery.message_id.clone(),
                headers: delivery.headers.clone(),
                payload: delivery.payload.clone(),
                metadata,
            };
            delivery.ack().await.unwrap();
            if seen.metadata.order_id == order_id {
                return Some(seen);
            }
        }
    }
}

/// The subjects orders publishes on.
pub const PUBLISHED: [&str; 3] = [
    subjects::ORDER_CREATED,
    subjects::PAYMENT_REQUESTED,
    subjects::SHIPMENT_REQUESTED,
];

/// Waits until `check` holds, polling; fails the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
