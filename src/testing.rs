//! Helpers for in-process tests: serve a service on `127.0.0.1:0` over real gRPC, and stop it.

// Test support: a failure here is a test failure, so panicking with a message is right.
#![allow(clippy::expect_used)]

use std::{net::SocketAddr, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};

use crate::{
    config::{ServerConfig, ServiceInfo},
    server::Listeners,
};

/// A server configuration on loopback with ephemeral ports and no drain delay.
pub fn server_config(service: ServiceInfo) -> ServerConfig {
    ServerConfig {
        service,
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        version: "v1".to_owned(),
        drain_delay: Duration::ZERO,
        grace_period: Duration::from_secs(5),
        max_message_bytes: crate::config::MAX_MESSAGE_BYTES,
    }
}

/// A service running in this process.
#[derive(Debug)]
pub struct TestServer<E> {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: Send + 'static> TestServer<E> {
    /// Binds `config`'s addresses and runs `serve` on them until [`TestServer::stop`].
    pub async fn spawn<F, Fut>(config: &ServerConfig, serve: F) -> Self
    where
        F: FnOnce(Listeners, crate::shutdown::Signal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let listeners = Listeners::bind(config).await.expect("bind test listeners");
        let addr = listeners.grpc_addr().expect("grpc address");
        let metrics_addr = listeners.metrics_addr().expect("metrics address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listeners,
            Box::pin(async {
                let _ = stopped.await;
            }),
        ));
        Self {
            addr,
            metrics_addr,
            stop: Some(stop),
            task,
        }
    }

    /// `http://127.0.0.1:port`, for clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the server has stopped (its `serve` returned).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Starts the shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits for the server to finish draining.
    pub async fn stop(mut self) -> Result<(), E> {
        self.begin_stop();
        self.task.await.expect("server task panicked")
    }
}

/// The fields named by the BadRequest of an INVALID_ARGUMENT reply; fails the test for any
/// other outcome.
pub fn violated_fields<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Vec<String> {
    let status = result.expect_err("the request should have been rejected");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    crate::validation::field_violations(&status)
        .into_iter()
        .map(|(field, _)| field)
        .collect()
}

/// A database configuration for one test on `backend`, seeded with the demo data.
pub async fn database(
    backend: Backend,
    dir: &std::path::Path,
    test: &str,
) -> crate::config::DatabaseConfig {
    crate::config::DatabaseConfig::with_url(database_url(backend, dir, test).await)
}

/// A fresh database URL for one test: a SQLite file in `dir`, or a new PostgreSQL database
/// on the server at `MESHMART_TEST_POSTGRES_URL` (created here, named after `test`).
pub async fn database_url(backend: Backend, dir: &std::path::Path, test: &str) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join(format!("{test}.db")).display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let admin = postgres_admin_url().expect("MESHMART_TEST_POSTGRES_URL");
            let name = format!(
                "t_{}_{}",
                test.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect::<String>(),
                std::process::id()
            )
            .to_ascii_lowercase();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to test postgres");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop old test database");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(base, _)| base);
            format!("{base}/{name}")
        }
    }
}

/// The database engines every store test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The admin URL of the throwaway PostgreSQL server that `scripts/with-postgres.sh` starts.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("MESHMART_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The backends to test on. PostgreSQL is skipped, loudly, when no server was given, unless
/// `MESHMART_REQUIRE_POSTGRES` is set (as the project's test command does), in which case a
/// missing server is an error rather than a silent pass.
pub fn backends() -> Vec<Backend> {
    if postgres_admin_url().is_some() {
        return vec![Backend::Sqlite, Backend::Postgres];
    }
    assert!(
        std::env::var_os("MESHMART_REQUIRE_POSTGRES").is_none(),
        "MESHMART_REQUIRE_POSTGRES is set but MESHMART_TEST_POSTGRES_URL is not: run the tests through scripts/with-postgres.sh"
    );
    eprintln!("warning: MESHMART_TEST_POSTGRES_URL is not set; testing on SQLite only");
    vec![Backend::Sqlite]
}

/// The services that server reflection (v1) lists on `channel`.
pub async fn reflected_services(
    channel: tonic::transport::Channel,
) -> std::collections::BTreeSet<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("reflection reply")
        .expect("a reflection message");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection reply: {other:?}"),
    }
}

/// What reflection should list on a service's port: its own services, health and reflection.
pub fn served_services(own: &[&str]) -> std::collections::BTreeSet<String> {
    own.iter()
        .chain(&[
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ])
        .map(|name| (*name).to_owned())
        .collect()
}

/// The shop's subjects and consumer groups are fixed, so the services of two tests on one
/// JetStream server would share streams and groups and take each other's events: such
/// tests take turns, each on fresh streams. Hold the guard for as long as the test runs.
pub async fn jetstream_turn(url: &str) -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = TURN.lock().await;
    let client = async_nats::connect(url).await.expect("connect to nats");
    let jetstream = async_nats::jetstream::new(client);
    let options = crate::events::jetstream::JetStreamOptions::default();
    for stream in [options.stream, options.dead_letter_stream] {
        // Absent on the first test: nothing to delete then.
        let _ = jetstream.delete_stream(stream).await;
    }
    turn
}

/// The event brokers a service test runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// The embedded log, in a file of the test's own folder.
    Embedded,
    /// The JetStream server at this URL (`MESHMART_TEST_NATS_URL`).
    JetStream(String),
}

/// The embedded log always, and JetStream when `MESHMART_TEST_NATS_URL` names a server
/// (skipped loudly otherwise, and a failure if `MESHMART_REQUIRE_NATS` is set).
pub fn brokers() -> Vec<Broker> {
    let mut brokers = vec![Broker::Embedded];
    if let Some(url) = crate::events::suite::nats_test_url() {
        brokers.push(Broker::JetStream(url));
    }
    brokers
}

/// Every (broker, database backend) pair a service test runs on.
pub fn setups() -> Vec<(Broker, Backend)> {
    let backends = backends();
    brokers()
        .into_iter()
        .flat_map(|broker| {
            backends
                .iter()
                .map(move |backend| (broker.clone(), *backend))
        })
        .collect()
}

/// A JetStream turn ([`jetstream_turn`]), held for as long as a test runs.
pub type Turn = tokio::sync::MutexGuard<'static, ()>;

/// The broker configuration for one test on `broker`: the embedded log in `dir`, or the
/// JetStream server, on fresh streams, with the test's turn on it.
pub async fn events(
    broker: &Broker,
    dir: &std::path::Path,
) -> (crate::events::EventsConfig, Option<Turn>) {
    use crate::events::{EventsConfig, embedded::EmbeddedConfig};
    match broker {
        Broker::Embedded => (
            EventsConfig::Embedded(EmbeddedConfig::at(dir.join("events.db"))),
            None,
        ),
        // The services' subjects and groups are the shop's: tests take turns.
        Broker::JetStream(url) => (
            EventsConfig::JetStream { url: url.clone() },
            Some(jetstream_turn(url).await),
        ),
    }
}

/// One event a test's own consumer group received.
#[derive(Debug, Clone)]
pub struct Observed {
    pub subject: String,
    pub message_id: String,
    pub payload: bytes::Bytes,
}

/// A consumer group `name` of the test's own on `subjects` of `bus`: every event, acked
/// and handed on, so a test sees what a service published.
pub async fn observe<B: crate::events::EventBus>(
    bus: &B,
    name: &str,
    subjects: &[&str],
) -> tokio::sync::mpsc::UnboundedReceiver<Observed> {
    use crate::events::Consumer;
    let config = crate::events::ConsumerConfig {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        ack_wait: Duration::from_secs(30),
        max_attempts: 1,
        backoff: Vec::new(),
    };
    let mut consumer = bus.consumer(&config).await.expect("join the test's group");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(delivery) = consumer.next().await {
            let observed = Observed {
                subject: delivery.subject.clone(),
                message_id: delivery.message_id.clone(),
                payload: delivery.payload.clone(),
            };
            delivery.ack().await.expect("ack what the test observed");
            if sender.send(observed).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The body of `GET /metrics` on a service's metrics port.
pub async fn scrape(metrics_addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .expect("connect to the metrics port");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {metrics_addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the scrape");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read the scrape");
    response
}

/// Scrapes until a line of the metrics is exactly `line`, or fails the test after `wait`:
/// for a gauge sampled beside the service, which shows a change only at its next sample.
pub async fn metric_until(metrics_addr: SocketAddr, line: &str, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let metrics = scrape(metrics_addr).await;
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} after {wait:?} in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
