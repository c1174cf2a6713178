//! The behaviour suite both brokers are held to: one function per promise of
//! [`crate::events`], generic over the broker, and [`event_bus_suite!`](crate::event_bus_suite)
//! to make one test of each for a broker (`tests/event_bus.rs`).
//!
//! Every function names its subjects and groups uniquely, so one broker may serve all of
//! them at once; waits for what should happen are bounded by [`WAIT`], and what should not
//! happen is given [`QUIET`] (or a multiple of the group's `ack_wait`) to show itself.

// Test support: a failure here is a test failure, so panicking with a message is right.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use tokio::time::{Instant, timeout};

use super::{Consumer, ConsumerConfig, Delivery, EventBus, Headers, Outgoing, Published};

mod dead_letters;

pub use dead_letters::{
    dead_letters_are_listed_found_and_replayed,
    failing_events_are_dead_lettered_after_max_attempts, shutdown_finishes_the_delivery_in_hand,
    undecodable_events_are_dead_lettered_at_once, unfinished_deliveries_are_given_up_on,
};

/// A broker under test.
pub trait Broker: Send + Sync {
    type Bus: EventBus;

    /// A new connection to the broker; every one reaches the same storage, as the replicas
    /// of a service and a restarted process do.
    fn connect(&self) -> impl Future<Output = crate::Result<Self::Bus>> + Send;

    /// The first token of every subject the suite publishes on: a JetStream stream under
    /// test must take `<root>.>`.
    fn subject_root(&self) -> &str {
        "test"
    }
}

/// The longest anything expected may take to arrive.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long something that should not arrive is given to show up.
pub const QUIET: Duration = Duration::from_millis(500);

/// Subjects, groups and message ids no other test (or earlier run) uses.
struct Names {
    root: String,
}

impl Names {
    fn new<K: Broker>(broker: &K) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let unique = format!(
            "t{}x{}x{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            root: format!("{}.{unique}", broker.subject_root()),
        }
    }

    fn unique(&self) -> &str {
        self.root.rsplit('.').next().unwrap()
    }

    fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.root)
    }

    fn group(&self, name: &str) -> String {
        format!("{name}_{}", self.unique())
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.unique())
    }
}

/// A group with a long `ack_wait`, so nothing comes back unasked during a test.
fn group(name: &str, subjects: &[&str]) -> ConsumerConfig {
    ConsumerConfig {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        ack_wait: Duration::from_secs(30),
        max_attempts: 3,
        backoff: vec![Duration::from_millis(50)],
    }
}

/// An event whose payload names it, with a trace header.
fn event(subject: &str, message_id: &str) -> Outgoing {
    let mut headers = Headers::new();
    headers.insert(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    );
    Outgoing {
        subject: subject.to_owned(),
        message_id: message_id.to_owned(),
        headers,
        payload: Bytes::from(format!("payload of {message_id}")),
    }
}

async fn publish<B: EventBus>(bus: &B, event: Outgoing) {
    let id = event.message_id.clone();
    assert_eq!(
        bus.publish(event).await.unwrap(),
        Published::Stored,
        "publish {id}"
    );
}

/// The next delivery, which must come within [`WAIT`].
async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    timeout(WAIT, consumer.next())
        .await
        .expect("a delivery within the wait")
        .unwrap()
}

/// Asserts that nothing is delivered for `quiet`.
async fn assert_quiet<C: Consumer>(consumer: &mut C, quiet: Duration, why: &str) {
    if let Ok(delivery) = timeout(quiet, consumer.next()).await {
        panic!("{why}: unexpected {:?}", delivery.unwrap());
    }
}

/// `n` deliveries, each acked; their message ids.
async fn take_and_ack<C: Consumer>(consumer: &mut C, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let delivery = next(consumer).await;
        assert_eq!(delivery.attempt, 1, "{delivery:?}");
        assert!(
            ids.insert(delivery.message_id.clone()),
            "delivered twice: {delivery:?}"
        );
        delivery.ack().await.unwrap();
    }
    ids
}

fn ids(names: &Names, of: &[&str]) -> BTreeSet<String> {
    of.iter().map(|n| names.id(n)).collect()
}

/// A publish that returned is there for a connection opened afterwards, intact: subject,
/// message id, headers, payload.
pub async fn publish_is_durable<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.created");
    let sent = event(&subject, &names.id("e1"));
    let first = broker.connect().await.unwrap();
    publish(&first, sent.clone()).await;
    drop(first);

    let bus = broker.connect().await.unwrap();
    let mut consumer = bus
        .consumer(&group(&names.group("durable"), &[&subject]))
        .await
        .unwrap();
    let delivery = next(&mut consumer).await;
    assert_eq!(
        (
            &delivery.subject,
            &delivery.message_id,
            &delivery.headers,
            &delivery.payload,
            delivery.attempt
        ),
        (
            &sent.subject,
            &sent.message_id,
            &sent.headers,
            &sent.payload,
            1
        )
    );
    delivery.ack().await.unwrap();
}

/// A message id seen before stores nothing, whatever the payload, and says so; the group
/// gets the first event once.
pub async fn publish_deduplicates_on_message_id<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("payments.captured");
    let bus = broker.connect().await.unwrap();
    let mut consumer = bus
        .consumer(&group(&names.group("dedup"), &[&subject]))
        .await
        .unwrap();
    let first = event(&subject, &names.id("e1"));
    publish(&bus, first.clone()).await;
    let again = Outgoing {
        payload: Bytes::from_static(b"a retry with other bytes"),
        ..first.clone()
    };
    assert_eq!(bus.publish(again).await.unwrap(), Published::Duplicate);
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.payload, first.payload);
    delivery.ack().await.unwrap();
    assert_quiet(&mut consumer, QUIET, "a duplicate was delivered").await;
}

/// Each group receives every event on its subjects.
pub async fn groups_fan_out<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.placed");
    let bus = broker.connect().await.unwrap();
    let mut a = bus
        .consumer(&group(&names.group("a"), &[&subject]))
        .await
        .unwrap();
    let mut b = bus
        .consumer(&group(&names.group("b"), &[&subject]))
        .await
        .unwrap();
    for n in ["e1", "e2", "e3"] {
        publish(&bus, event(&subject, &names.id(n))).await;
    }
    let all = ids(&names, &["e1", "e2", "e3"]);
    assert_eq!(take_and_ack(&mut a, 3).await, all);
    assert_eq!(take_and_ack(&mut b, 3).await, all);
    assert_quiet(&mut a, QUIET, "group a").await;
    assert_quiet(&mut b, QUIET, "group b").await;
}

/// Two members of one group, on two connections: while one holds a delivery the other gets
/// the next event, and over many events each is handled by exactly one of them.
pub async fn members_share_the_work<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("stock.reserved");
    let config = group(&names.group("shared"), &[&subject]);
    let (one, two) = (
        broker.connect().await.unwrap(),
        broker.connect().await.unwrap(),
    );
    let mut first = one.consumer(&config).await.unwrap();
    let mut second = two.consumer(&config).await.unwrap();
    publish(&one, event(&subject, &names.id("x"))).await;
    publish(&one, event(&subject, &names.id("y"))).await;
    let held = next(&mut first).await;
    let other = next(&mut second).await;
    assert_ne!(
        held.message_id, other.message_id,
        "both members hold one event"
    );
    held.ack().await.unwrap();
    other.ack().await.unwrap();

    let sent: BTreeSet<String> = (0..20).map(|n| names.id(&format!("n{n}"))).collect();
    for id in &sent {
        publish(&one, event(&subject, id)).await;
    }
    // Each member takes what it can until all are taken and the group has been quiet for
    // a while (a stall under load before then is waited out).
    let taken = Arc::new(AtomicUsize::new(0));
    let total = sent.len();
    let drain = |mut member: <K::Bus as EventBus>::Consumer| {
        let taken = Arc::clone(&taken);
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match timeout(QUIET, member.next()).await {
                    Ok(delivery) => {
                        let delivery = delivery.unwrap();
                        got.push(delivery.message_id.clone());
                        delivery.ack().await.unwrap();
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) if taken.load(Ordering::Relaxed) >= total => return got,
                    Err(_) => {}
                }
            }
        })
    };
    let (a, b) = (drain(first), drain(second));
    let (a, b) = timeout(WAIT, async { (a.await.unwrap(), b.await.unwrap()) })
        .await
        .expect("the members finish");
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    all.sort();
    assert_eq!(all, sent.into_iter().collect::<Vec<_>>(), "each event once");
}

/// An acked delivery never comes back, not even after `ack_wait`.
pub async fn acked_never_returns<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.paid");
    let bus = broker.connect().await.unwrap();
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(300),
        ..group(&names.group("acked"), &[&subject])
    };
    let mut consumer = bus.consumer(&config).await.unwrap();
    publish(&bus, event(&subject, &names.id("e1"))).await;
    next(&mut consumer).await.ack().await.unwrap();
    assert_quiet(
        &mut consumer,
        config.ack_wait * 3,
        "acked, yet delivered again",
    )
    .await;
}

/// A nak redelivers after its delay, as attempt 2.
pub async fn nak_redelivers_after_its_delay<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.shipped");
    let bus = broker.connect().await.unwrap();
    let mut consumer = bus
        .consumer(&group(&names.group("nak"), &[&subject]))
        .await
        .unwrap();
    publish(&bus, event(&subject, &names.id("e1"))).await;
    let first = next(&mut consumer).await;
    assert_eq!(first.attempt, 1);
    let delay = Duration::from_millis(400);
    let nakked = Instant::now();
    first.nak(delay).await.unwrap();
    let again = next(&mut consumer).await;
    // Half the delay: clocks and timers round, but no broker should redeliver at once.
    assert!(
        nakked.elapsed() >= delay / 2,
        "redelivered after {:?}",
        nakked.elapsed()
    );
    assert_eq!(
        (again.message_id.as_str(), again.attempt),
        (names.id("e1").as_str(), 2)
    );
    again.ack().await.unwrap();
}

/// A delivery nobody answers comes back after `ack_wait`, to any member, as the next
/// attempt.
pub async fn unanswered_returns_after_ack_wait<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.cancelled");
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(500),
        ..group(&names.group("lease"), &[&subject])
    };
    let (one, two) = (
        broker.connect().await.unwrap(),
        broker.connect().await.unwrap(),
    );
    let mut first = one.consumer(&config).await.unwrap();
    let mut second = two.consumer(&config).await.unwrap();
    publish(&one, event(&subject, &names.id("e1"))).await;
    let abandoned = next(&mut first).await;
    let claimed = Instant::now();
    drop(abandoned);
    let again = next(&mut second).await;
    assert!(
        claimed.elapsed() >= config.ack_wait / 2,
        "redelivered after {:?}",
        claimed.elapsed()
    );
    assert_eq!(
        (again.message_id.as_str(), again.attempt),
        (names.id("e1").as_str(), 2)
    );
    again.ack().await.unwrap();
}

/// A group takes exact subjects and everything under a `>` filter, and nothing else.
pub async fn subject_filters_select<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let exact = names.subject("a.exact");
    let below = names.subject("b.>");
    let bus = broker.connect().await.unwrap();
    let mut consumer = bus
        .consumer(&group(&names.group("filters"), &[&exact, &below]))
        .await
        .unwrap();
    let cases = [
        ("a.exact", true),
        ("a.exactly", false),
        ("a.exact.more", false),
        ("a", false),
        ("b", false),
        ("b.x", true),
        ("b.x.y", true),
        ("c.x", false),
    ];
    for (i, (subject, _)) in cases.iter().enumerate() {
        publish(
            &bus,
            event(&names.subject(subject), &names.id(&format!("s{i}"))),
        )
        .await;
    }
    let wanted: BTreeSet<String> = cases
        .iter()
        .enumerate()
        .filter(|(_, (_, taken))| *taken)
        .map(|(i, _)| names.id(&format!("s{i}")))
        .collect();
    assert_eq!(take_and_ack(&mut consumer, wanted.len()).await, wanted);
    assert_quiet(&mut consumer, QUIET, "a subject outside the filters").await;
}

/// A group created after events were published receives them all, from the first; a
/// member that joins the group later (a replica, a restart) does not receive them again.
pub async fn late_groups_see_earlier_events<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.created");
    let bus = broker.connect().await.unwrap();
    for n in ["e1", "e2", "e3"] {
        publish(&bus, event(&subject, &names.id(n))).await;
    }
    let config = group(&names.group("late"), &[&subject]);
    let mut consumer = bus.consumer(&config).await.unwrap();
    assert_eq!(
        take_and_ack(&mut consumer, 3).await,
        ids(&names, &["e1", "e2", "e3"])
    );
    drop(consumer);
    let mut rejoined = broker
        .connect()
        .await
        .unwrap()
        .consumer(&config)
        .await
        .unwrap();
    assert_quiet(&mut rejoined, QUIET, "a rejoining member got old events").await;
}

/// The NATS server the JetStream tests run against, from `MESHMART_TEST_NATS_URL`; `None`
/// (with a warning) when it is unset, which skips them, unless `MESHMART_REQUIRE_NATS=1`
/// says they must run.
pub fn nats_test_url() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let url = var("MESHMART_TEST_NATS_URL");
    if url.is_none() {
        assert!(
            var("MESHMART_REQUIRE_NATS").is_none_or(|v| v == "0"),
            "MESHMART_REQUIRE_NATS is set but MESHMART_TEST_NATS_URL is not"
        );
        eprintln!("warning: MESHMART_TEST_NATS_URL is not set; skipping the JetStream tests");
    }
    url
}

/// Makes one `#[tokio::test]` per promise of the suite, for the broker `$broker` gives: an
/// expression, evaluated in each test, whose `.await` is `Option<impl Broker>` (`None`
/// skips the test, for a broker that is not there).
#[macro_export]
macro_rules! event_bus_suite {
    ($broker:expr) => {
        $crate::event_bus_suite!(@each $broker;
            publish_is_durable,
            publish_deduplicates_on_message_id,
            groups_fan_out,
            members_share_the_work,
            acked_never_returns,
            nak_redelivers_after_its_delay,
            unanswered_returns_after_ack_wait,
            failing_events_are_dead_lettered_after_max_attempts,
            undecodable_events_are_dead_lettered_at_once,
            unfinished_deliveries_are_given_up_on,
            dead_letters_are_listed_found_and_replayed,
            shutdown_finishes_the_delivery_in_hand,
            subject_filters_select,
            late_groups_see_earlier_events,
        );
    };
    (@each $broker:expr; $($promise:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $promise() {
                if let Some(broker) = $broker.await {
                    $crate::events::suite::$promise(&broker).await;
                }
            }
        )*
    };
}
