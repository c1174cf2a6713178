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
