//! The inbox and outbox in a service's own database: an event applied once per consumer
//! group, its effect and the events it causes committed together or not at all.

#![allow(clippy::unwrap_used)]

use meshmart::{
    db::Pools,
    events::{Outgoing, inbox, outbox::Outbox},
    testing::{self, backends},
};
use sqlx::Row;

async fn database(backend: testing::Backend, dir: &std::path::Path, test: &str) -> Pools {
    let config = testing::database(backend, dir, test).await;
    meshmart::db::connect(&config, sqlx::migrate!("src/db/test-migrations"))
        .await
        .unwrap()
}

fn event(id: &str) -> Outgoing {
    Outgoing {
        subject: "orders.created".to_owned(),
        message_id: id.to_owned(),
        headers: [("traceparent".to_owned(), "00-aa-bb-01".to_owned())].into(),
        payload: bytes::Bytes::from_static(b"payload"),
    }
}

async fn count(db: &Pools, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(db.read()).await.unwrap().get(0)
}

#[tokio::test]
async fn an_event_is_applied_once_per_group_with_the_events_it_causes() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(backend, dir.path(), "inbox_once").await;
        let outbox = Outbox::new(db.clone());

        // Twice for one group, once for another; spawned, as consumers run.
        for (group, expected) in [
            ("payments", true),
            ("payments", false),
            ("fulfillment", true),
        ] {
            let (db, outbox) = (db.clone(), outbox.clone());
            let applied = tokio::spawn(async move {
                inbox::apply_once(&db, &outbox, group, "event-1", async |_tx| {
                    Ok::<_, sqlx::Error>(vec![event(&format!("caused-by-{group}"))])
                })
                .await
            })
            .await
            .unwrap()
            .unwrap();
            assert_eq!(applied, expected, "{backend:?} {group}");
        }
        assert_eq!(count(&db, "SELECT COUNT(*) FROM event_inbox").await, 2);
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM event_outbox WHERE publish_time_ms IS NULL"
            )
            .await,
            2,
            "{backend:?}"
        );
        let headers: String = sqlx::query("SELECT headers FROM event_outbox LIMIT 1")
            .fetch_one(db.read())
            .await
            .unwrap()
            .get(0);
        assert!(headers.contains("traceparent"), "{headers}");
    }
}

#[tokio::test]
async fn a_failed_effect_leaves_no_trace_and_can_be_tried_again() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(backend, dir.path(), "inbox_rollback").await;
        let outbox = Outbox::new(db.clone());

        let failed = inbox::apply_once(&db, &outbox, "payments", "event-2", async |tx| {
            sqlx::query("INSERT INTO probe (id, label) VALUES (1, 'written, then undone')")
                .execute(&mut *tx)
                .await?;
            Err::<Vec<Outgoing>, _>(sqlx::Error::Protocol("the provider is down".into()))
        })
        .await;
        assert!(failed.is_err());
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM probe").await,
            0,
            "{backend:?}"
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM event_inbox").await, 0);

        let applied = inbox::apply_once(&db, &outbox, "payments", "event-2", async |_tx| {
            Ok::<_, sqlx::Error>(vec![event("event-3")])
        })
        .await
        .unwrap();
        assert!(applied, "{backend:?}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM event_outbox").await, 1);
    }
}

mod relay {
    use std::time::Duration;

    use meshmart::events::{
        Consumer, ConsumerConfig, EventBus, Published,
        embedded::{EmbeddedBus, EmbeddedConfig},
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn group(name: &str) -> ConsumerConfig {
        ConsumerConfig {
            name: name.to_owned(),
            subjects: vec!["orders.>".to_owned()],
            ack_wait: Duration::from_secs(30),
            max_attempts: 3,
            backoff: vec![Duration::from_millis(50)],
        }
    }

    /// Events committed while no relay ran (the process died after its commit) go out when
    /// a relay starts (after the restart), once, however many replicas relay, and even when
    /// an earlier relay had published one but died before noting it.
    #[tokio::test]
    async fn committed_events_are_published_once_after_a_restart() {
        for backend in backends() {
            let dir = tempfile::tempdir().unwrap();
            let db = database(backend, dir.path(), "outbox_relay").await;
            let bus = EmbeddedBus::open(&EmbeddedConfig::at(dir.path().join("events.db")))
                .await
                .unwrap();
            let mut consumer = bus.consumer(&group("relay_test")).await.unwrap();

            // Committed, never relayed: the crash between commit and publish.
            let outbox = Outbox::new(db.clone());
            for id in ["e-1", "e-2", "e-3"] {
                inbox::apply_once(&db, &outbox, "test", &format!("cause-{id}"), async |_tx| {
                    Ok::<_, sqlx::Error>(vec![event(id)])
                })
                .await
                .unwrap();
            }
            // One of them reached the broker before the crash, unnoted.
            assert_eq!(bus.publish(event("e-2")).await.unwrap(), Published::Stored);

            // After the restart, two replicas relay.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let stopping =
                |mut rx: tokio::sync::watch::Receiver<bool>| -> meshmart::shutdown::Signal {
                    Box::pin(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                };
            let relays = [
                tokio::spawn(Outbox::new(db.clone()).relay(bus.clone(), stopping(stop_rx.clone()))),
                tokio::spawn(Outbox::new(db.clone()).relay(bus.clone(), stopping(stop_rx))),
            ];

            let mut seen = Vec::new();
            for _ in 0..3 {
                let delivery = tokio::time::timeout(WAIT, consumer.next())
                    .await
                    .expect("an event within the wait")
                    .unwrap();
                assert_eq!(delivery.headers.get("traceparent").unwrap(), "00-aa-bb-01");
                seen.push(delivery.message_id.clone());
                delivery.ack().await.unwrap();
            }
            seen.sort();
            assert_eq!(seen, ["e-1", "e-2", "e-3"], "{backend:?}");
            // Nothing more: each went out once.
            assert!(
                tokio::time::timeout(Duration::from_millis(500), consumer.next())
                    .await
                    .is_err(),
                "{backend:?}: an event was delivered twice"
            );

            // Every row is marked published, and the lag is back to nothing.
            let deadline = tokio::time::Instant::now() + WAIT;
            while count(
                &db,
                "SELECT COUNT(*) FROM event_outbox WHERE publish_time_ms IS NULL",
            )
            .await
                > 0
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "rows left unpublished"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(outbox.lag_ms().await.unwrap(), 0);

            stop_tx.send(true).unwrap();
            for relay in relays {
                tokio::time::timeout(WAIT, relay).await.unwrap().unwrap();
            }
        }
    }
}
