//! The JetStream bus through a restart of its server: what a NATS pod restart in the cluster
//! does. The test starts and kills a nats-server of its own (`MESHMART_TEST_NATS_SERVER`, which
//! scripts/with-nats.sh exports); without one it says so and passes, unless
//! `MESHMART_REQUIRE_NATS` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use meshmart::events::{
    Consumer, ConsumerConfig, EventBus, Outgoing, Published,
    jetstream::{JetStreamBus, JetStreamOptions},
};

const WAIT: Duration = Duration::from_secs(20);

/// A nats-server with JetStream on `port`, storing in `store`; killed when dropped.
struct Server(Child);

impl Server {
    fn start(binary: &str, port: u16, store: &Path) -> Self {
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: the harshest restart, nothing flushed on the way out.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn event(id: &str) -> Outgoing {
    Outgoing {
        subject: format!("orders.{id}"),
        message_id: id.to_owned(),
        headers: BTreeMap::new(),
        payload: Bytes::from(id.to_owned()),
    }
}

#[tokio::test]
async fn publishing_and_consuming_resume_after_the_server_restarts() {
    let Some(binary) = std::env::var("MESHMART_TEST_NATS_SERVER")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        assert!(
            std::env::var_os("MESHMART_REQUIRE_NATS").is_none(),
            "MESHMART_REQUIRE_NATS is set but MESHMART_TEST_NATS_SERVER is not: run the tests through scripts/with-nats.sh"
        );
        eprintln!("warning: MESHMART_TEST_NATS_SERVER is not set; skipping the restart test");
        return;
    };
    let store = tempfile::tempdir().unwrap();
    // A free port, released for the server; the same one again after the restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(&binary, port, store.path());
    // connect() waits for the server to listen and for JetStream to be ready.
    let options = JetStreamOptions {
        connect_timeout: WAIT,
        ..JetStreamOptions::default()
    };
    let bus = JetStreamBus::connect(&format!("nats://127.0.0.1:{port}"), options)
        .await
        .unwrap();
    let config = ConsumerConfig {
        name: "restart".to_owned(),
        subjects: vec!["orders.>".to_owned()],
        ack_wait: Duration::from_secs(30),
        max_attempts: 3,
        backoff: vec![],
    };
    let mut consumer = bus.consumer(&config).await.unwrap();
    assert_eq!(
        bus.publish(event("before")).await.unwrap(),
        Published::Stored
    );
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.message_id, "before");
    delivery.ack().await.unwrap();

    drop(server);
    let _server = Server::start(&binary, port, store.path());

    // The client reconnects by itself; publishes fail until it has, and then succeed.
    let published = tokio::time::timeout(WAIT, async {
        loop {
            match bus.publish(event("after")).await {
                Ok(outcome) => return outcome,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("publishing did not resume within the wait");
    assert_eq!(published, Published::Stored);

    // The same consumer, whose pull died with the old server, picks up the new event. The
    // first one may come again: a killed server can lose an ack it had not yet written,
    // and at-least-once is the promise (consumers check state).
    let resumed = tokio::time::timeout(WAIT, async {
        loop {
            let delivery = consumer.next().await.unwrap();
            let id = delivery.message_id.clone();
            delivery.ack().await.unwrap();
            if id == "after" {
                return;
            }
            assert_eq!(id, "before");
        }
    })
    .await;
    assert!(resumed.is_ok(), "consuming did not resume within the wait");
}
