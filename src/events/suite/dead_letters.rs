//! The suite's promises about giving up: bounded redelivery through [`run_consumer`], dead
//! letters at once for what cannot succeed, and the operator's list, show and replay.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use prost::Message as _;
use tokio::{
    sync::{Notify, mpsc, oneshot},
    task::JoinHandle,
    time::timeout,
};

use super::{Broker, Names, QUIET, WAIT, assert_quiet, event, group, next, publish, take_and_ack};
use crate::events::{ConsumerConfig, DeadLetter, EventBus, HandlerError, Incoming, run_consumer};

/// [`run_consumer`] in a task, and how to stop it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<crate::Result<()>>,
}

impl Running {
    /// Runs `config`'s group with a handler that reports every call on the channel returned
    /// and answers with `verdict`.
    fn start<B: EventBus>(
        bus: &B,
        config: &ConsumerConfig,
        verdict: impl Fn(&Incoming) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) -> (Self, mpsc::UnboundedReceiver<(String, u32)>) {
        let (calls, called) = mpsc::unbounded_channel();
        let verdict = Arc::new(verdict);
        let handler = move |incoming: Incoming| {
            let calls = calls.clone();
            let verdict = Arc::clone(&verdict);
            async move {
                let _ = calls.send((incoming.message_id.clone(), incoming.attempt));
                verdict(&incoming)
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_consumer(bus.clone(), config.clone(), handler, async {
            let _ = stopped.await;
        }));
        (Self { stop, task }, called)
    }

    /// Stops the loop; it must end promptly, and without an error.
    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(WAIT, self.task)
            .await
            .expect("run_consumer stops when asked")
            .unwrap()
            .unwrap();
    }
}

/// Waits for `n` dead letters of `consumer`, polling: the dead-letter stream has no
/// subscription in the interface.
async fn dead_letters<B: EventBus>(bus: &B, consumer: &str, n: usize) -> Vec<DeadLetter> {
    timeout(WAIT, async {
        loop {
            let found = bus.dead_letters(Some(consumer), 100).await.unwrap();
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} dead letters of {consumer} within the wait"))
}

/// Handler calls, by message id, until `done` says enough; then a quiet spell for extras.
async fn calls_until(
    called: &mut mpsc::UnboundedReceiver<(String, u32)>,
    done: impl Fn(&BTreeMap<String, Vec<u32>>) -> bool,
) -> BTreeMap<String, Vec<u32>> {
    let mut calls: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    timeout(WAIT, async {
        while !done(&calls) {
            let (id, attempt) = called.recv().await.unwrap();
            calls.entry(id).or_default().push(attempt);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("handler calls so far: {calls:?}"));
    while let Ok(Some((id, attempt))) = timeout(QUIET, called.recv()).await {
        calls.entry(id).or_default().push(attempt);
    }
    calls
}

/// A handler that keeps failing transiently is retried up to `max_attempts`, then the
/// event is dead-lettered with the error, the attempts and its original subject and
/// content; the events behind it are processed meanwhile.
pub async fn failing_events_are_dead_lettered_after_max_attempts<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("payments.requested");
    let bus = broker.connect().await.unwrap();
    let config = group(&names.group("retries"), &[&subject]);
    let poison = event(&subject, &names.id("poison"));
    publish(&bus, poison.clone()).await;
    publish(&bus, event(&subject, &names.id("g1"))).await;
    publish(&bus, event(&subject, &names.id("g2"))).await;
    let poison_id = poison.message_id.clone();
    let (running, mut called) = Running::start(&bus, &config, move |incoming| {
        if incoming.message_id == poison_id {
            Err(HandlerError::Transient("inventory unreachable".to_owned()))
        } else {
            Ok(())
        }
    });
    dead_letters(&bus, &config.name, 1).await;
    let calls = calls_until(&mut called, |calls| calls.len() == 3).await;
    running.stop().await;
    // Listed again after the quiet spell: a dead letter closes the delivery, so none follows.
    let dead = bus.dead_letters(Some(&config.name), 100).await.unwrap();

    assert_eq!(calls[&poison.message_id], [1, 2, 3], "{calls:?}");
    assert_eq!(calls[&names.id("g1")], [1], "{calls:?}");
    assert_eq!(calls[&names.id("g2")], [1], "{calls:?}");
    let [dead] = dead.as_slice() else {
        panic!("one dead letter expected: {dead:?}");
    };
    assert_eq!(
        (
            dead.consumer.as_str(),
            dead.subject.as_str(),
            dead.message_id.as_str(),
            &dead.headers,
            &dead.payload,
            dead.attempts
        ),
        (
            config.name.as_str(),
            subject.as_str(),
            poison.message_id.as_str(),
            &poison.headers,
            &poison.payload,
            3
        )
    );
    assert!(dead.error.contains("inventory unreachable"), "{dead:?}");
    assert!(dead.time_ms > 0, "{dead:?}");
}

/// An event that does not decode is dead-lettered on its first attempt, and the handler is
/// not called again for it.
pub async fn undecodable_events_are_dead_lettered_at_once<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.created");
    let bus = broker.connect().await.unwrap();
    let config = group(&names.group("decode"), &[&subject]);
    let garbage = crate::events::Outgoing {
        // A field key whose varint never ends: no protobuf message decodes from it.
        payload: bytes::Bytes::from_static(&[0xff, 0xff, 0xff]),
        ..event(&subject, &names.id("garbage"))
    };
    publish(&bus, garbage.clone()).await;
    let good = prost_types::Timestamp {
        seconds: 1,
        nanos: 2,
    };
    publish(
        &bus,
        crate::events::Outgoing {
            payload: good.encode_to_vec().into(),
            ..event(&subject, &names.id("good"))
        },
    )
    .await;
    let (running, mut called) = Running::start(&bus, &config, |incoming| {
        prost_types::Timestamp::decode(incoming.payload.clone())?;
        Ok(())
    });
    dead_letters(&bus, &config.name, 1).await;
    let calls = calls_until(&mut called, |calls| calls.len() == 2).await;
    running.stop().await;
    // Listed again after the quiet spell: a dead letter closes the delivery, so none follows.
    let dead = bus.dead_letters(Some(&config.name), 100).await.unwrap();

    assert_eq!(calls[&garbage.message_id], [1], "{calls:?}");
    assert_eq!(calls[&names.id("good")], [1], "{calls:?}");
    let [dead] = dead.as_slice() else {
        panic!("one dead letter expected: {dead:?}");
    };
    assert_eq!(
        (dead.message_id.as_str(), dead.attempts, &dead.payload),
        (garbage.message_id.as_str(), 1, &garbage.payload)
    );
    assert!(dead.error.contains("undecodable"), "{dead:?}");
}

/// A delivery whose earlier attempts were never answered (the process died mid-work)
/// arrives past `max_attempts`, and is dead-lettered without calling the handler.
pub async fn unfinished_deliveries_are_given_up_on<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("stock.released");
    let bus = broker.connect().await.unwrap();
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(300),
        max_attempts: 2,
        ..group(&names.group("dying"), &[&subject])
    };
    let crash = event(&subject, &names.id("crash"));
    publish(&bus, crash.clone()).await;
    // Two members that take the event and vanish without a word.
    let mut member = bus.consumer(&config).await.unwrap();
    for attempt in 1..=2 {
        let delivery = next(&mut member).await;
        assert_eq!(delivery.attempt, attempt);
        drop(delivery);
    }
    drop(member);
    let (running, mut called) = Running::start(&bus, &config, |_| Ok(()));
    dead_letters(&bus, &config.name, 1).await;
    let calls = calls_until(&mut called, |_| true).await;
    running.stop().await;
    // Listed again after the quiet spell: a dead letter closes the delivery, so none follows.
    let dead = bus.dead_letters(Some(&config.name), 100).await.unwrap();

    assert!(calls.is_empty(), "the handler was called: {calls:?}");
    let [dead] = dead.as_slice() else {
        panic!("one dead letter expected: {dead:?}");
    };
    assert_eq!(
        (
            dead.message_id.as_str(),
            dead.subject.as_str(),
            dead.attempts
        ),
        (crash.message_id.as_str(), subject.as_str(), 3)
    );
    assert!(dead.error.contains("gave up after 2 attempts"), "{dead:?}");
}

/// Dead letters are listed oldest first, by group or all, up to a limit; found by id; and
/// replayed to the group that gave up only, as a first attempt on the original subject,
/// which removes them.
pub async fn dead_letters_are_listed_found_and_replayed<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.created");
    let bus = broker.connect().await.unwrap();
    let gives_up = group(&names.group("gives_up"), &[&subject]);
    let keeps = group(&names.group("keeps"), &[&subject]);
    let mut a = bus.consumer(&gives_up).await.unwrap();
    let mut b = bus.consumer(&keeps).await.unwrap();
    for n in ["e1", "e2"] {
        publish(&bus, event(&subject, &names.id(n))).await;
    }
    let mut order = Vec::new();
    for _ in 0..2 {
        let delivery = next(&mut a).await;
        order.push(delivery.message_id.clone());
        let error = format!("cannot handle {}", delivery.message_id);
        bus.dead_letter(&gives_up.name, delivery, &error)
            .await
            .unwrap();
    }
    take_and_ack(&mut b, 2).await;
    assert_quiet(&mut a, QUIET, "a dead letter was delivered").await;

    let listed = bus.dead_letters(Some(&gives_up.name), 100).await.unwrap();
    let listed_ids: Vec<&str> = listed.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(listed_ids, order, "oldest first");
    assert!(listed[0].id < listed[1].id, "{listed:?}");
    for (dead, id) in listed.iter().zip(&order) {
        assert_eq!(
            (
                dead.consumer.as_str(),
                dead.subject.as_str(),
                dead.attempts,
                dead.error.clone()
            ),
            (
                gives_up.name.as_str(),
                subject.as_str(),
                1,
                format!("cannot handle {id}")
            )
        );
    }
    assert_eq!(
        bus.dead_letters(Some(&gives_up.name), 1).await.unwrap(),
        listed[..1]
    );
    assert!(
        bus.dead_letters(Some(&keeps.name), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let everyone = bus.dead_letters(None, 10_000).await.unwrap();
    assert!(listed.iter().all(|d| everyone.contains(d)), "{everyone:?}");
    let first = &listed[0];
    assert_eq!(
        bus.find_dead_letter(first.id).await.unwrap().as_ref(),
        Some(first)
    );
    assert_eq!(bus.find_dead_letter(u64::MAX).await.unwrap(), None);

    assert!(bus.replay(first.id).await.unwrap());
    assert_eq!(bus.find_dead_letter(first.id).await.unwrap(), None);
    assert!(!bus.replay(first.id).await.unwrap(), "replayed twice");
    assert_eq!(
        bus.dead_letters(Some(&gives_up.name), 100).await.unwrap(),
        listed[1..]
    );
    let replayed = next(&mut a).await;
    assert_eq!(
        (
            replayed.message_id.as_str(),
            replayed.subject.as_str(),
            replayed.attempt,
            &replayed.payload
        ),
        (
            first.message_id.as_str(),
            subject.as_str(),
            1,
            &first.payload
        )
    );
    replayed.ack().await.unwrap();
    assert_quiet(&mut b, QUIET, "the replay reached another group").await;
    assert_quiet(&mut a, QUIET, "the other dead letter came back").await;
}

/// A shutdown that comes while the handler runs lets it finish, and the delivery is
/// answered: it does not come back after `ack_wait`.
pub async fn shutdown_finishes_the_delivery_in_hand<K: Broker>(broker: &K) {
    let names = Names::new(broker);
    let subject = names.subject("orders.refunded");
    let bus = broker.connect().await.unwrap();
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(300),
        ..group(&names.group("stopping"), &[&subject])
    };
    publish(&bus, event(&subject, &names.id("e1"))).await;
    let (started, mut handling) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let handler = {
        let release = Arc::clone(&release);
        move |_: Incoming| {
            let (started, release) = (started.clone(), Arc::clone(&release));
            async move {
                let _ = started.send(());
                release.notified().await;
                Ok(())
            }
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_consumer(bus.clone(), config.clone(), handler, async {
        let _ = stopped.await;
    }));
    timeout(WAIT, handling.recv())
        .await
        .expect("the handler is called")
        .unwrap();
    stop.send(()).unwrap();
    // A permit, so the release counts even if the handler is not waiting yet.
    release.notify_one();
    timeout(WAIT, task)
        .await
        .expect("run_consumer stops once the delivery in hand is answered")
        .unwrap()
        .unwrap();
    let mut member = bus.consumer(&config).await.unwrap();
    assert_quiet(
        &mut member,
        config.ack_wait * 3,
        "the delivery in hand was not acked",
    )
    .await;
}
