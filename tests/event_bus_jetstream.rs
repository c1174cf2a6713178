//! The event bus's promises (src/events.rs, module doc) held against a real NATS JetStream:
//! the server of scripts/with-nats.sh, whose URL is in `MESHMART_TEST_NATS_URL`. Without it
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
    url: String,
    options: JetStreamOptions,
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
    let bus = JetStreamBus::connect(&url, options.clone()).await.unwrap();
    Some(Shop {
        bus,
        url,
        options,
        prefix,
    })
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

#[tokio::test]
async fn a_published_event_is_stored_and_arrives_whole() {
    let Some(shop) = shop().await else { return };
    let event = shop.event("orders.created", "e1");
    publish_stored(&shop.bus, event.clone()).await;

    // Stored by the broker, not held by this connection: a second one reads it.
    let other = JetStreamBus::connect(&shop.url, shop.options.clone())
        .await
        .unwrap();
    let mut consumer = other
        .consumer(&shop.config("reader", &["orders.>"]))
        .await
        .unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.subject, event.subject);
    assert_eq!(delivery.message_id, event.message_id);
    assert_eq!(delivery.headers, event.headers);
    assert_eq!(delivery.payload, event.payload);
    assert_eq!(delivery.attempt, 1);
    delivery.ack().await.unwrap();
}

#[tokio::test]
async fn the_same_message_id_is_stored_once() {
    let Some(shop) = shop().await else { return };
    let event = shop.event("orders.created", "same");
    publish_stored(&shop.bus, event.clone()).await;
    let mut changed = event.clone();
    changed.payload = Bytes::from_static(b"another payload, same id");
    assert_eq!(
        shop.bus.publish(changed).await.unwrap(),
        Published::Duplicate
    );
    publish_stored(&shop.bus, shop.event("orders.created", "other")).await;

    let mut consumer = shop
        .bus
        .consumer(&shop.config("dedup", &["orders.>"]))
        .await
        .unwrap();
    let mut ids = take_acked(&mut consumer, 2).await;
    ids.sort();
    let mut expected = vec![event.message_id, shop.event("", "other").message_id];
    expected.sort();
    assert_eq!(ids, expected);
    quiet(&mut consumer).await;
}

#[tokio::test]
async fn every_group_receives_every_event() {
    let Some(shop) = shop().await else { return };
    let mut billing = shop
        .bus
        .consumer(&shop.config("billing", &["orders.>"]))
        .await
        .unwrap();
    let mut shipping = shop
        .bus
        .consumer(&shop.config("shipping", &["orders.>"]))
        .await
        .unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "fan")).await;
    let id = shop.event("", "fan").message_id;
    assert_eq!(take_acked(&mut billing, 1).await, vec![id.clone()]);
    assert_eq!(take_acked(&mut shipping, 1).await, vec![id]);
    quiet(&mut billing).await;
}

#[tokio::test]
async fn the_members_of_a_group_share_the_work() {
    let Some(shop) = shop().await else { return };
    let config = shop.config("workers", &["orders.>"]);
    let first = shop.bus.consumer(&config).await.unwrap();
    let second = shop.bus.consumer(&config).await.unwrap();
    const EVENTS: usize = 20;
    for i in 0..EVENTS {
        publish_stored(&shop.bus, shop.event("orders.created", &format!("w{i}"))).await;
    }

    // Both members pull until the group has had every event once; each takes a moment per
    // event, as real work would, so the other is asked for the next ones meanwhile.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut members = Vec::new();
    for (member, mut consumer) in [(0_usize, first), (1, second)] {
        let tx = tx.clone();
        members.push(tokio::spawn(async move {
            while let Ok(Ok(delivery)) = tokio::time::timeout(QUIET, consumer.next()).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send((member, delivery.message_id.clone())).unwrap();
                delivery.ack().await.unwrap();
            }
        }));
    }
    drop(tx);
    let mut seen = BTreeMap::<String, usize>::new();
    let mut per_member = [0_usize; 2];
    let collected = tokio::time::timeout(WAIT * 2, async {
        while let Some((member, id)) = rx.recv().await {
            per_member[member] += 1;
            *seen.entry(id).or_default() += 1;
        }
    })
    .await;
    assert!(collected.is_ok(), "members still receiving after the wait");
    for member in members {
        member.await.unwrap();
    }
    assert_eq!(seen.len(), EVENTS, "{seen:?}");
    assert!(
        seen.values().all(|&n| n == 1),
        "an event went twice: {seen:?}"
    );
    assert!(
        per_member.iter().all(|&n| n > 0),
        "one member did all the work: {per_member:?}"
    );
}

#[tokio::test]
async fn an_acked_event_is_not_delivered_again() {
    let Some(shop) = shop().await else { return };
    let mut config = shop.config("acker", &["orders.>"]);
    // Short, so that an ack the server had not recorded would show within QUIET.
    config.ack_wait = Duration::from_millis(500);
    let mut consumer = shop.bus.consumer(&config).await.unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "acked")).await;
    take_acked(&mut consumer, 1).await;
    quiet(&mut consumer).await;
}

#[tokio::test]
async fn a_nak_redelivers_after_its_delay_as_the_next_attempt() {
    let Some(shop) = shop().await else { return };
    let mut consumer = shop
        .bus
        .consumer(&shop.config("naker", &["orders.>"]))
        .await
        .unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "nak")).await;
    let first = next(&mut consumer).await;
    assert_eq!(first.attempt, 1);
    let id = first.message_id.clone();
    let delay = Duration::from_millis(700);
    let naked = tokio::time::Instant::now();
    first.nak(delay).await.unwrap();
    let second = next(&mut consumer).await;
    assert!(
        naked.elapsed() >= delay - Duration::from_millis(100),
        "redelivered after {:?}",
        naked.elapsed()
    );
    assert_eq!(
        (second.message_id.as_str(), second.attempt),
        (id.as_str(), 2)
    );
    second.ack().await.unwrap();
}

#[tokio::test]
async fn an_unanswered_event_comes_back_after_ack_wait() {
    let Some(shop) = shop().await else { return };
    let mut config = shop.config("forgetful", &["orders.>"]);
    config.ack_wait = Duration::from_secs(1);
    let mut consumer = shop.bus.consumer(&config).await.unwrap();
    publish_stored(&shop.bus, shop.event("orders.created", "lost")).await;
    let first = next(&mut consumer).await;
    let delivered = tokio::time::Instant::now();
    let id = first.message_id.clone();
    drop(first); // neither acked nor nakked: the handler died, as far as the broker knows
    let again = next(&mut consumer).await;
    assert!(
        delivered.elapsed() >= Duration::from_millis(900),
        "redelivered after {:?}",
        delivered.elapsed()
    );
    assert_eq!((again.message_id.as_str(), again.attempt), (id.as_str(), 2));
    again.ack().await.unwrap();
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
async fn dead_letters_are_listed_found_and_replayed_to_their_group_only() {
    let Some(shop) = shop().await else { return };
    let bus = &shop.bus;
    let failing = shop.config("failing", &["orders.>"]);
    let mut group = bus.consumer(&failing).await.unwrap();
    let mut bystander = bus
        .consumer(&shop.config("bystander", &["orders.>"]))
        .await
        .unwrap();
    let event = shop.event("orders.created", "dead");
    publish_stored(bus, event.clone()).await;
    assert_eq!(
        take_acked(&mut bystander, 1).await,
        vec![event.message_id.clone()]
    );

    let delivery = next(&mut group).await;
    let error = "cannot decode: unexpected end\ncaused by: truncated \\ payload";
    bus.dead_letter(&failing.name, delivery, error)
        .await
        .unwrap();
    quiet(&mut group).await; // dead-lettered is answered: not delivered again

    let letters = bus.dead_letters(Some(&failing.name), 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.consumer, failing.name);
    assert_eq!(letter.subject, event.subject);
    assert_eq!(letter.message_id, event.message_id);
    assert_eq!(letter.headers, event.headers);
    assert_eq!(letter.payload, event.payload);
    assert_eq!(letter.error, error);
    assert_eq!(letter.attempts, 1);
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        (now_ms - letter.time_ms).abs() < 60_000,
        "{}",
        letter.time_ms
    );
    assert_eq!(bus.dead_letters(None, 10).await.unwrap(), letters);
    assert!(
        bus.dead_letters(Some("nobody"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(bus.dead_letters(None, 0).await.unwrap().is_empty());
    assert_eq!(
        bus.find_dead_letter(letter.id).await.unwrap().as_ref(),
        Some(letter)
    );

    assert!(bus.replay(letter.id).await.unwrap());
    let replayed = next(&mut group).await;
    assert_eq!(replayed.subject, event.subject);
    assert_eq!(replayed.message_id, event.message_id);
    assert_eq!(replayed.headers, event.headers);
    assert_eq!(replayed.payload, event.payload);
    assert_eq!(replayed.attempt, 1);
    quiet(&mut bystander).await; // the group that handled it does not get it again
    assert_eq!(bus.find_dead_letter(letter.id).await.unwrap(), None);
    assert!(!bus.replay(letter.id).await.unwrap());
    assert!(bus.dead_letters(None, 10).await.unwrap().is_empty());

    // Failing again after a replay makes a new dead letter, not a duplicate of the first.
    bus.dead_letter(&failing.name, replayed, "still broken")
        .await
        .unwrap();
    let again = bus.dead_letters(Some(&failing.name), 10).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0].id, letter.id);
    assert_eq!(again[0].error, "still broken");
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
async fn a_group_receives_only_its_subjects() {
    let Some(shop) = shop().await else { return };
    let mut orders = shop
        .bus
        .consumer(&shop.config("orders", &["orders.>"]))
        .await
        .unwrap();
    let mut captures = shop
        .bus
        .consumer(&shop.config("captures", &["payments.captured", "orders.cancelled"]))
        .await
        .unwrap();
    for (subject, id) in [
        ("payments.captured", "p1"),
        ("payments.refunded", "p2"),
        ("orders.created", "o1"),
        ("orders.cancelled", "o2"),
    ] {
        publish_stored(&shop.bus, shop.event(subject, id)).await;
    }
    let ids = |names: &[&str]| {
        let mut ids: Vec<_> = names.iter().map(|n| shop.event("", n).message_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(take_acked(&mut orders, 2).await, ids(&["o1", "o2"]));
    assert_eq!(take_acked(&mut captures, 2).await, ids(&["o2", "p1"]));
    quiet(&mut orders).await;
    quiet(&mut captures).await;
}

#[tokio::test]
async fn a_group_created_later_receives_earlier_events() {
    let Some(shop) = shop().await else { return };
    publish_stored(&shop.bus, shop.event("orders.created", "early")).await;
    let mut late = shop
        .bus
        .consumer(&shop.config("late", &["orders.>"]))
        .await
        .unwrap();
    assert_eq!(
        take_acked(&mut late, 1).await,
        vec![shop.event("", "early").message_id]
    );
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
