//! Payments in-process, on a real event bus: the embedded log always, JetStream when
//! `MESHMART_TEST_NATS_URL` names a server. A test publishes what orders and the
//! orchestrator would, and reads what payments publishes through a consumer group of its own.

#![allow(dead_code, unreachable_pub)]
// The log buffer is written from tracing's synchronous writer and never held across an
// await: a blocking mutex is the right lock for it.
#![allow(clippy::disallowed_types)]

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use meshmart::{
    events::{
        Bus, EventBus, Outgoing,
        metadata::{first, outgoing, subjects},
    },
    proto::{
        events::{EventMetadata, PaymentRequested, RefundRequested},
        google::r#type::Money,
        payments::payment_service_client::PaymentServiceClient,
    },
    testing::{self, Backend, TestServer, Turn},
};
use sqlx::AnyPool;
use tokio::{sync::mpsc, time::timeout};
use tonic::transport::Channel;

/// How long any one wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// The provider's time limit in these tests.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_millis(200);
pub const MAX_ATTEMPTS: u32 = 4;

pub use meshmart::testing::{Broker, setups};

/// Everything this process logs, to check that no card token is ever in it.
pub fn captured_logs() -> String {
    let logs = logs();
    String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
}

fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        // Everything, but async-nats's TRACE, which prints every message it reads, payload
        // and all: below the services' default (info), and a shared-runtime concern.
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("trace,async_nats=debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One event payments published.
pub type Published = testing::Observed;

pub struct Payments {
    pub server: TestServer<meshmart::Error>,
    pub client: PaymentServiceClient<Channel>,
    pub bus: Bus,
    pub db: AnyPool,
    published: mpsc::UnboundedReceiver<Published>,
    _turn: Option<Turn>,
    _dir: tempfile::TempDir,
}

pub async fn start(broker: &Broker, backend: Backend, test: &str) -> Payments {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let (events, turn) = testing::events(broker, dir.path()).await;
    let url = testing::database_url(backend, dir.path(), &format!("{test}_payments")).await;
    let mut flow = meshmart::config::FlowConfig {
        server: testing::server_config(payments::SERVICE),
        database: meshmart::config::DatabaseConfig::with_url(url.clone()),
        events: events.clone(),
        consumer: meshmart::events::ConsumerConfig::with(
            "payments",
            &payments::SUBJECTS,
            payments::consumer_defaults(PROVIDER_TIMEOUT),
        ),
    };
    flow.consumer.max_attempts = MAX_ATTEMPTS;
    flow.consumer.backoff = vec![Duration::from_millis(50)];
    let config = payments::Config {
        flow,
        provider_timeout: PROVIDER_TIMEOUT,
    };
    let bus = meshmart::events::connect(&events).await.unwrap();
    let published = observe(&bus).await;
    let server = TestServer::spawn(&config.flow.server.clone(), |listeners, shutdown| {
        payments::serve(config, listeners, shutdown)
    })
    .await;
    // Serving once its database is open and migrated, so the test can read it too.
    meshmart::probe::wait_until_serving(&server.endpoint(), "", WAIT)
        .await
        .unwrap();
    let client = PaymentServiceClient::connect(server.endpoint())
        .await
        .unwrap();
    sqlx::any::install_default_drivers();
    let db = AnyPool::connect(&url).await.unwrap();
    Payments {
        server,
        client,
        bus,
        db,
        published,
        _turn: turn,
        _dir: dir,
    }
}

/// A consumer group of the test's own on everything payments publishes.
async fn observe(bus: &Bus) -> mpsc::UnboundedReceiver<Published> {
    let subjects = [
        subjects::PAYMENT_SUCCEEDED,
        subjects::PAYMENT_DECLINED,
        subjects::PAYMENT_FAILED,
        subjects::PAYMENT_REFUNDED,
    ];
    testing::observe(bus, "payments-test-observer", &subjects).await
}

pub fn euros(units: i64) -> Money {
    Money {
        currency_code: "EUR".to_owned(),
        units,
        nanos: 0,
    }
}

/// The PaymentRequested orders would publish for a new order.
pub fn payment_requested(order_id: &str, token: &str) -> (EventMetadata, Outgoing) {
    let metadata = first(order_id, &format!("request-{order_id}"), "orders");
    let event = PaymentRequested {
        metadata: Some(metadata.clone()),
        amount: Some(euros(42)),
        payment_token: token.to_owned(),
    };
    let message = outgoing(subjects::PAYMENT_REQUESTED, &metadata, &event);
    (metadata, message)
}

/// The RefundRequested the orchestrator would publish for a charge.
pub fn refund_requested(order_id: &str, charge_id: &str) -> Outgoing {
    let metadata = first(order_id, "orchestrator-test", "orchestrator");
    let event = RefundRequested {
        metadata: Some(metadata.clone()),
        charge_id: charge_id.to_owned(),
        reason: "the carrier does not deliver to this address".to_owned(),
    };
    outgoing(subjects::REFUND_REQUESTED, &metadata, &event)
}

impl Payments {
    pub async fn publish(&self, event: Outgoing) {
        self.bus.publish(event).await.unwrap();
    }

    /// The next event payments published, within [`WAIT`].
    pub async fn next_published(&mut self) -> Published {
        let published = timeout(WAIT, self.published.recv())
            .await
            .expect("payments published nothing in time")
            .expect("the observer stopped");
        assert!(
            !published.payload.windows(4).any(|w| w == b"tok_"),
            "a card token in an event payments published: {published:?}"
        );
        published
    }

    /// Events payments published until one on `subject` about `order_id`, all returned.
    pub async fn published_until(&mut self, subject: &str, order_id: &str) -> Vec<Published> {
        let mut seen = Vec::new();
        loop {
            let published = self.next_published().await;
            let done = published.subject == subject && order_of(&published) == order_id;
            seen.push(published);
            if done {
                return seen;
            }
        }
    }

    /// How often the provider was called for a charge under `key`, and its outcome.
    pub async fn provider_charge(&self, key: &str) -> Option<(i64, Option<String>)> {
        sqlx::query_as("SELECT calls, outcome FROM provider_charges WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&self.db)
            .await
            .unwrap()
    }

    /// How often the provider was asked to refund the charge `key`.
    pub async fn provider_refund_calls(&self, key: &str) -> i64 {
        let calls: Option<(i64,)> =
            sqlx::query_as("SELECT calls FROM provider_refunds WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&self.db)
                .await
                .unwrap();
        calls.map_or(0, |(calls,)| calls)
    }

    pub async fn stop(self) {
        self.db.close().await;
        self.server.stop().await.unwrap();
    }
}

/// The order an event payments published is about (field 1 of every event is its
/// metadata, so any of them decodes as the smallest one).
pub fn order_of(published: &Published) -> String {
    use prost::Message;
    meshmart::proto::events::OrderCompleted::decode(published.payload.clone())
        .unwrap()
        .metadata
        .unwrap()
        .order_id
}

/// A unique order id for one test case.
pub fn order_id(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}
