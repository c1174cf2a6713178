//! The whole shop in one test process: the seven services over real gRPC on
//! `127.0.0.1:0`, each with its own database, sharing one event broker, in one of the two
//! setups every flow test runs in ([`Setup`]).

// Test support: a failure here is a test failure, so panicking with a message is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use meshmart::{
    config::Env,
    proto::{
        catalog::catalog_service_client::CatalogServiceClient,
        fulfillment::fulfillment_service_client::FulfillmentServiceClient,
        inventory::inventory_service_client::InventoryServiceClient,
        notifications::notification_service_client::NotificationServiceClient,
        orchestrator::{
            dead_letter_service_client::DeadLetterServiceClient,
            orchestrator_service_client::OrchestratorServiceClient,
        },
        orders::{self, order_service_client::OrderServiceClient},
        payments::payment_service_client::PaymentServiceClient,
    },
    testing::{self, Backend, TestServer},
};
use tonic::{Request, transport::Channel};

/// The longest the flow may take to settle an order in a test.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Where the shop keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// SQLite files and the embedded event log, in one folder: `meshctl up`.
    SqliteEmbedded,
    /// A PostgreSQL database per service and NATS JetStream: the cluster.
    PostgresJetStream,
}

impl Setup {
    /// Both setups where their servers are there (scripts/with-postgres.sh and
    /// scripts/with-nats.sh); the second is skipped loudly without them, unless the
    /// `MESHMART_REQUIRE_*` variables make that a failure.
    pub fn available() -> Vec<Self> {
        let mut setups = vec![Self::SqliteEmbedded];
        let postgres = testing::backends().contains(&Backend::Postgres);
        let nats = meshmart::events::suite::nats_test_url().is_some();
        if postgres && nats {
            setups.push(Self::PostgresJetStream);
        }
        setups
    }
}

/// The seven services, and a client for each.
#[derive(Debug)]
pub struct Shop {
    pub setup: Setup,
    servers: Vec<(&'static str, TestServer<meshmart::Error>)>,
    pub catalog: CatalogServiceClient<Channel>,
    pub inventory: InventoryServiceClient<Channel>,
    pub orders: OrderServiceClient<Channel>,
    pub payments: PaymentServiceClient<Channel>,
    pub fulfillment: FulfillmentServiceClient<Channel>,
    pub notifications: NotificationServiceClient<Channel>,
    pub orchestrator: OrchestratorServiceClient<Channel>,
    pub dead_letters: DeadLetterServiceClient<Channel>,
    /// The broker the services share, for a test to publish on or look into.
    pub bus: meshmart::events::Bus,
    _dir: tempfile::TempDir,
    _jetstream_turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

/// Starts one service crate's `serve` in this process, configured from `env` as its own
/// binary would be from the process environment. The flow services hold their server's
/// configuration in their shared part (`flow.server`), the others at the top (`server`).
macro_rules! start {
    ($service:ident, $env:expr) => {
        start!($service, $env, flow.server)
    };
    ($service:ident, $env:expr, $($server:ident).+) => {{
        let config =
            ::$service::Config::from_env(&$env, testing::server_config(::$service::SERVICE))
                .expect(concat!("configure ", stringify!($service)));
        let server = config.$($server).+.clone();
        TestServer::spawn(&server, move |listeners, shutdown| {
            ::$service::serve(config, listeners, shutdown)
        })
        .await
    }};
}

impl Shop {
    /// Starts every service for the test `test` in `setup`, with short retry delays and
    /// time limits so that failure paths settle within a test.
    pub async fn start(setup: Setup, test: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base: Vec<(String, String)> = vec![
            ("DATA_DIR".into(), dir.path().display().to_string()),
            // The simulated payment provider's time limit (its timeout card waits past it).
            ("PAYMENT_PROVIDER_TIMEOUT_MS".into(), "200".into()),
        ];
        let nats = match setup {
            Setup::SqliteEmbedded => None,
            Setup::PostgresJetStream => meshmart::events::suite::nats_test_url(),
        };
        let jetstream_turn = match &nats {
            Some(url) => Some(testing::jetstream_turn(url).await),
            None => None,
        };
        let env = async |service: &str, extra: &[(&str, String)]| {
            let mut pairs = base.clone();
            if let Some(url) = &nats {
                pairs.push(("NATS_URL".into(), url.clone()));
            }
            if setup == Setup::PostgresJetStream {
                let url = testing::database_url(
                    Backend::Postgres,
                    dir.path(),
                    &format!("{test}_{service}"),
                )
                .await;
                pairs.push(("DATABASE_URL".into(), url));
            }
            pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            Env::from_pairs(pairs)
        };

        let mut servers = Vec::new();
        let inventory = start!(inventory, env("inventory", &[]).await, server);
        let inventory_addr = inventory.endpoint();
        servers.push(("inventory", inventory));
        let catalog = start!(
            catalog,
            env("catalog", &[("INVENTORY_ADDR", inventory_addr.clone())]).await,
            server
        );
        let catalog_addr = catalog.endpoint();
        servers.push(("catalog", catalog));
        let orders = start!(
            orders,
            env(
                "orders",
                &[
                    ("CATALOG_ADDR", catalog_addr.clone()),
                    ("INVENTORY_ADDR", inventory_addr.clone())
                ]
            )
            .await
        );
        servers.push(("orders", orders));
        servers.push(("payments", start!(payments, env("payments", &[]).await)));
        servers.push((
            "fulfillment",
            start!(fulfillment, env("fulfillment", &[]).await),
        ));
        servers.push((
            "notifications",
            start!(notifications, env("notifications", &[]).await),
        ));
        servers.push((
            "orchestrator",
            start!(
                orchestrator,
                env(
                    "orchestrator",
                    &[("INVENTORY_ADDR", inventory_addr.clone())]
                )
                .await
            ),
        ));

        let endpoint = |name: &str| {
            servers
                .iter()
                .find(|(service, _)| *service == name)
                .map(|(_, server)| server.endpoint())
                .unwrap()
        };
        let channel = |name: &str| Channel::from_shared(endpoint(name)).unwrap().connect_lazy();
        let bus_env = env("bus", &[]).await;
        let bus =
            meshmart::events::connect(&meshmart::events::EventsConfig::from_env(&bus_env).unwrap())
                .await
                .unwrap();
        Self {
            setup,
            catalog: CatalogServiceClient::new(channel("catalog")),
            inventory: InventoryServiceClient::new(channel("inventory")),
            orders: OrderServiceClient::new(channel("orders")),
            payments: PaymentServiceClient::new(channel("payments")),
            fulfillment: FulfillmentServiceClient::new(channel("fulfillment")),
            notifications: NotificationServiceClient::new(channel("notifications")),
            orchestrator: OrchestratorServiceClient::new(channel("orchestrator")),
            dead_letters: DeadLetterServiceClient::new(channel("orchestrator")),
            bus,
            servers,
            _dir: dir,
            _jetstream_turn: jetstream_turn,
        }
    }

    /// `http://127.0.0.1:port` of `service` (`"orders"`, `"inventory"`, ...), for a client
    /// of its own, such as the load generator's.
    pub fn endpoint(&self, service: &str) -> Option<String> {
        self.servers
            .iter()
            .find(|(name, _)| *name == service)
            .map(|(_, server)| server.endpoint())
    }

    /// Stops every service, each draining as on SIGTERM.
    pub async fn stop(self) {
        // The JetStream turn passes on only once every service has stopped.
        for (name, server) in self.servers {
            server
                .stop()
                .await
                .unwrap_or_else(|error| panic!("{name} stopped with {error}"));
        }
    }
}

/// `message` as a call from `customer`, as the gateway would forward it.
pub fn as_customer<T>(customer: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        meshmart::customer::CUSTOMER_HEADER,
        customer.parse().unwrap(),
    );
    request
}

/// An order of `quantity` of `product_id`, paid with `card`, to `postal_code`.
pub fn order_request(
    request_id: &str,
    product_id: &str,
    quantity: i64,
    card: &str,
    postal_code: &str,
) -> orders::CreateOrderRequest {
    orders::CreateOrderRequest {
        request_id: request_id.to_owned(),
        lines: vec![orders::OrderLine {
            product_id: product_id.to_owned(),
            quantity,
            unit_price: None,
        }],
        payment_token: card.to_owned(),
        shipping_address: Some(orders::ShippingAddress {
            recipient: "Ada Lovelace".to_owned(),
            address_lines: vec!["12 St James's Square".to_owned()],
            locality: "London".to_owned(),
            postal_code: postal_code.to_owned(),
            region_code: "GB".to_owned(),
        }),
    }
}

/// Watches `name` (as `customer`) until it reaches COMPLETED or FAILED, and returns it as
/// it ends, with every state the stream showed on the way.
pub async fn settle(
    shop: &Shop,
    customer: &str,
    name: &str,
) -> (orders::Order, Vec<orders::State>) {
    let mut orders = shop.orders.clone();
    let mut request = as_customer(
        customer,
        orders::WatchOrderRequest {
            name: name.to_owned(),
        },
    );
    request.set_timeout(SETTLE);
    let mut stream = orders.watch_order(request).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let mut last = None;
    while let Some(message) = tokio::time::timeout(SETTLE, stream.message())
        .await
        .expect("the order settles in time")
        .unwrap()
    {
        let order = message.order.unwrap();
        seen.push(order.state());
        last = Some(order);
    }
    let order = last.expect("WatchOrder sent the order");
    assert!(
        matches!(
            order.state(),
            orders::State::Completed | orders::State::Failed
        ),
        "WatchOrder ended before a final state: {:?}",
        order.state()
    );
    (order, seen)
}
