//! What only the JetStream bus has to prove, beyond the behaviour suite both brokers pass
//! (tests/event_bus.rs): the server's delivery limit, the dead letters' order and limit,
//! joining a group again, refused names and headers, and start-up's bounded wait. Against a
//! real NATS JetStream: the server of scripts/with-nats.sh, whose URL is in
//! `MESHMART_TEST_NATS_URL`. Without it
//! each test says so and passes, unless `MESHMART_REQUIRE_NATS` is set (as scripts/test.sh
//! does), which makes a missing server a failure.
//!
//! Every test has a bus of its own: streams and subjects under a unique prefix, so tests run
//! in parallel on one server and a server used before holds nothing they see. The helpers are
//! generic over [`EventBus`], in the shape of the shared behaviour suite. Waits are bounded
//! (`WAIT` for what must come; `QUIET` for what must not, the only way to see an absence).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use meshmart::events::{
    Consumer, ConsumerConfig, Delivery, EventBus, Outgoing, Published,
    jetstream::{JetStreamBus, JetStreamOptions},
};

/// The longest anything that must happen may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long nothing must arrive, where a test checks that something does not.
const QUIET: Duration = Duration::from_millis(1500);

/// A test's own bus, and the names it publishes under.
struct Shop {
    bus: JetStreamBus,
    prefix: String,
}

impl Shop {
    /// A subject within this test's subjects: `<prefix>.orders.created` for `orders.created`.
    fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    fn group(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    fn config(&self, name: &str, subjects: &[&str]) -> ConsumerConfig {
        ConsumerConfig {
            name: self.group(name),
            subjects: subjects.iter().map(|s| self.subject(s)).collect(),
            ack_wait: Duration::from_secs(30),
            max_attempts: 3,
            backoff: vec![Duration::from_millis(100)],
        }
    }

    fn event(&self, subject: &str, id: &str) -> Outgoing {
        Outgoing {
            subject: self.subject(subject),
            message_id: format!("{}-{id}", self.prefix),
            headers: BTreeMap::from([
                (
                    "traceparent".to_owned(),
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
                ),
                ("x-test".to_owned(), id.to_owned()),
            ]),
            payload: Bytes::from(format!("payload of {id}")),
        }
    }
}

/// A bus with streams of its own, or `None` (the test then passes) without a server.
async fn shop() -> Option<Shop> {
    let Some(url) = std::env::var("MESHMART_TEST_NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        assert!(
            std::env::var_os("MESHMART_REQUIRE_NATS").is_none(),
            "MESHMART_REQUIRE_NATS is set but MESHMART_TEST_NATS_URL is not: run the tests through scripts/with-nats.sh"
        );
        eprintln!("warning: MESHMART_TEST_NATS_URL is not set; skipping the JetStream test");
        return None;
    };
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!(
        "t{:x}{}x{}",
        nanos % (1 << 48),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let options = JetStreamOptions {
        stream: format!("{prefix}_EVENTS"),
        subjects: vec![format!("{prefix}.orders.>"), format!("{prefix}.payments.>")],
        replay_prefix: format!("{prefix}_replay"),
        dead_letter_stream: format!("{prefix}_DLQ"),
        dead_letter_prefix: format!("{prefix}_dlq"),
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(3600),
        replicas: 1,
        connect_timeout: WAIT,
        client_name: format!("meshmart-test-{prefix}"),
    };
    let bus = JetStreamBus::connect(&url, options).await.unwrap();
    Some(Shop { bus, prefix })
}

/// The next delivery, which must come within [`WAIT`].
async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("no delivery within the wait")
        .unwrap()
}

/// Fails if anything is delivered within [`QUIET`].
async fn quiet<C: Consumer>(consumer: &mut C) {
    if let Ok(delivery) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!("unexpected delivery: {:?}", delivery.unwrap());
    }
}

/// The message ids of the next `n` deliveries, each acked.
async fn take_acked<C: Consumer>(consumer: &mut C, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let delivery = next(consumer).await;
        ids.push(delivery.message_id.clone());
        delivery.ack().await.unwrap();
    }
    ids.sort();
    ids
}

async fn publish_stored<B: EventBus>(bus: &B, event: Outgoing) {
    assert_eq!(bus.publish(event).await.unwrap(), Published::Stored);
}

/// JetStream's own limit is one delivery beyond `max_attempts`, so that the consumer loop
/// still sees the event once more to dead-letter it; after that the server gives up.
#[tokio::test]
async fn the_server_delivers_once_more_than_max_attempts() {
    let Some(shop) = shop().await else { return };
    let mut config = shop.config("limited", &["orders.>"]);
    config.max_attempts = 2;
    let mut consumer = shop.bus.consumer(&config).await.unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "poison")).await;
    for attempt in 1..=3 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.attempt, attempt);
        delivery.nak(Duration::ZERO).await.unwrap();
    }
    quiet(&mut consumer).await;
}

#[tokio::test]
async fn dead_letters_list_oldest_first_up_to_the_limit() {
    let Some(shop) = shop().await else { return };
    let bus = &shop.bus;
    let a = shop.config("a", &["orders.>"]);
    let b = shop.config("b", &["orders.>"]);
    let mut group_a = bus.consumer(&a).await.unwrap();
    let mut group_b = bus.consumer(&b).await.unwrap();
    for i in 0..3 {
        publish_stored(bus, shop.event("orders.created", &format!("d{i}"))).await;
    }
    for _ in 0..3 {
        let delivery = next(&mut group_a).await;
        bus.dead_letter(&a.name, delivery, "a failed")
            .await
            .unwrap();
        let delivery = next(&mut group_b).await;
        bus.dead_letter(&b.name, delivery, "b failed")
            .await
            .unwrap();
    }
    let all = bus.dead_letters(None, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "{all:?}");
    let two = bus.dead_letters(Some(&b.name), 2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert!(two.iter().all(|letter| letter.consumer == b.name));
    let of_b: Vec<_> = all.iter().filter(|l| l.consumer == b.name).collect();
    assert_eq!(two.iter().collect::<Vec<_>>(), of_b[..2]);
}

#[tokio::test]
async fn joining_a_group_again_keeps_its_place() {
    let Some(shop) = shop().await else { return };
    let mut config = shop.config("again", &["orders.>"]);
    let mut first = shop.bus.consumer(&config).await.unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "one")).await;
    take_acked(&mut first, 1).await;
    drop(first);

    // A restart (same settings) and a rollout that changes them both join the same group,
    // which remembers what it has acked.
    let mut same = shop.bus.consumer(&config).await.unwrap();
    config.ack_wait = Duration::from_secs(20);
    config.max_attempts = 5;
    let mut changed = shop.bus.consumer(&config).await.unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "two")).await;
    let id = shop.event("", "two").message_id;
    let got = tokio::select! {
        delivery = same.next() => delivery.unwrap(),
        delivery = changed.next() => delivery.unwrap(),
        () = tokio::time::sleep(WAIT) => panic!("no delivery within the wait"),
    };
    assert_eq!(got.message_id, id);
    got.ack().await.unwrap();
    quiet(&mut same).await;
}

#[tokio::test]
async fn mistakes_are_refused_rather_than_mangled() {
    let Some(shop) = shop().await else { return };
    let mut reserved = shop.event("orders.created", "reserved");
    reserved
        .headers
        .insert("nats-msg-id".to_owned(), "sneaky".to_owned());
    assert!(shop.bus.publish(reserved).await.is_err());
    let mut broken = shop.event("orders.created", "broken");
    broken
        .headers
        .insert("x-multi".to_owned(), "two\nlines".to_owned());
    assert!(shop.bus.publish(broken).await.is_err());
    let unknown = Outgoing {
        subject: "nowhere.at.all".to_owned(),
        ..shop.event("orders.created", "nowhere")
    };
    assert!(shop.bus.publish(unknown).await.is_err());
    let mut dotted = shop.config("x", &["orders.>"]);
    dotted.name = "has.dot".to_owned();
    assert!(shop.bus.consumer(&dotted).await.is_err());
}

/// No server needed: start-up waits for NATS, within its bound, and says why it gave up.
#[tokio::test]
async fn start_up_waits_for_nats_within_its_bound() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = JetStreamOptions {
        connect_timeout: Duration::from_millis(2500),
        ..JetStreamOptions::default()
    };
    let started = tokio::time::Instant::now();
    let error = JetStreamBus::connect(
        &format!("nats://user:secret@127.0.0.1:{port}"),
        options.clone(),
    )
    .await
    .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    match &error {
        meshmart::Error::EventBusUnreachable { attempts, url, .. } => {
            assert!(*attempts >= 2, "{error}");
            assert!(!url.contains("secret"), "{url}");
        }
        other => panic!("expected EventBusUnreachable, got {other:?}"),
    }
    assert!(!error.to_string().contains("secret"), "{error}");

    // What waiting cannot cure ends the wait at once.
    let started = tokio::time::Instant::now();
    let error = JetStreamBus::connect("nats://127.0.0.1:notaport", options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, meshmart::Error::EventBus { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}
