//! The store on every backend: SQLite always, PostgreSQL when the test command provides one.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshmart::status::Failure;
use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use inventory::{
    Error, Store,
    store::{Applied, ReservationState},
};
use meshmart::testing::{self, Backend, backends};

async fn store(backend: Backend, dir: &std::path::Path, test: &str) -> Store {
    let mut config = testing::database(backend, dir, test).await;
    config.seed_demo_data = false;
    Store::connect(&config).await.unwrap()
}

#[tokio::test]
async fn stock_levels_adjustments_and_reservations() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(backend, dir.path(), "store_flow").await;

        // Unknown products read as zero, in the order asked.
        store.set_stock("set-b", "b-product", 10).await.unwrap();
        let levels = store
            .stock_levels(vec!["zz-unknown".to_owned(), "b-product".to_owned()])
            .await
            .unwrap();
        assert_eq!(levels[0].available, 0, "{backend:?}");
        assert_eq!(levels[0].update_time_ms, None);
        assert_eq!(levels[1].available, 10);

        // An adjustment applies once per request_id.
        let (level, applied) = store.adjust_stock("adj-1", "b-product", 5).await.unwrap();
        assert_eq!((level.available, applied), (15, Applied::Now));
        let (level, applied) = store.adjust_stock("adj-1", "b-product", 5).await.unwrap();
        assert_eq!((level.available, applied), (15, Applied::Earlier));
        assert!(matches!(
            store.adjust_stock("adj-1", "b-product", 6).await,
            Err(Error::Failure(Failure::KeyReused { .. }))
        ));
        assert!(matches!(
            store.adjust_stock("adj-2", "b-product", -16).await,
            Err(Error::InsufficientStock { available: 15, .. })
        ));

        // Reserve, replay, release, commit.
        store.set_stock("set-a", "a-product", 3).await.unwrap();
        let wanted = vec![("b-product".to_owned(), 4), ("a-product".to_owned(), 3)];
        let (reservation, applied) = store.reserve("res-1", &wanted).await.unwrap();
        assert_eq!(applied, Applied::Now);
        assert_eq!(
            reservation.items[0].0, "a-product",
            "items sorted by product id"
        );
        let (_, applied) = store.reserve("res-1", &wanted).await.unwrap();
        assert_eq!(applied, Applied::Earlier);
        let levels = store
            .stock_levels(vec!["a-product".to_owned(), "b-product".to_owned()])
            .await
            .unwrap();
        assert_eq!((levels[0].available, levels[0].reserved), (0, 3));
        assert_eq!((levels[1].available, levels[1].reserved), (11, 4));

        assert!(matches!(
            store.reserve("res-2", &[("a-product".to_owned(), 1)]).await,
            Err(Error::InsufficientStock { available: 0, .. })
        ));
        let (released, applied) = store.release("res-1").await.unwrap();
        assert_eq!(
            (released.state, applied),
            (ReservationState::Released, Applied::Now)
        );
        let levels = store
            .stock_levels(vec!["a-product".to_owned()])
            .await
            .unwrap();
        assert_eq!((levels[0].available, levels[0].reserved), (3, 0));

        let (_, _) = store
            .reserve("res-3", &[("a-product".to_owned(), 2)])
            .await
            .unwrap();
        let (committed, _) = store.commit("res-3").await.unwrap();
        assert_eq!(committed.state, ReservationState::Committed);
        let levels = store
            .stock_levels(vec!["a-product".to_owned()])
            .await
            .unwrap();
        assert_eq!((levels[0].available, levels[0].reserved), (1, 0));
        assert!(matches!(
            store.release("res-3").await,
            Err(Error::ReservationClosed { .. })
        ));
        assert!(matches!(
            store.reservation("nope").await,
            Err(Error::ReservationNotFound(_))
        ));
    }
}

#[tokio::test]
async fn demo_stock_is_seeded_once() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let config = testing::database(backend, dir.path(), "seed").await;
        let store = Store::connect(&config).await.unwrap();
        store.set_stock("set-cup", "espresso-cup", 1).await.unwrap();
        // A restart must not put the demo stock back over what changed since.
        let store = Store::connect(&config).await.unwrap();
        let levels = store
            .stock_levels(vec!["espresso-cup".to_owned(), "burr-grinder".to_owned()])
            .await
            .unwrap();
        assert_eq!(levels[0].available, 1, "{backend:?}");
        assert_eq!(levels[1].available, 8);
    }
}

#[tokio::test]
async fn a_retried_stock_change_answers_as_the_first_time_and_leaves_no_phantom_units() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(backend, dir.path(), "replays").await;

        // SetStock, its reply lost; a reservation takes 2; the SetStock is retried.
        let (first, applied) = store.set_stock("set-1", "kettle", 10).await.unwrap();
        assert_eq!(
            (first.available, applied),
            (10, Applied::Now),
            "{backend:?}"
        );
        store
            .reserve("order-1", &[("kettle".to_owned(), 2)])
            .await
            .unwrap();
        let (again, applied) = store.set_stock("set-1", "kettle", 10).await.unwrap();
        assert_eq!((again.clone(), applied), (first, Applied::Earlier));
        let now = store.stock_levels(vec!["kettle".to_owned()]).await.unwrap();
        assert_eq!(
            (now[0].available, now[0].reserved),
            (8, 2),
            "no phantom units"
        );

        // AdjustStock's replay is the original answer too, not today's stock.
        let (adjusted, _) = store.adjust_stock("adj-1", "kettle", 5).await.unwrap();
        assert_eq!(adjusted.available, 13);
        store
            .reserve("order-2", &[("kettle".to_owned(), 1)])
            .await
            .unwrap();
        let (replayed, applied) = store.adjust_stock("adj-1", "kettle", 5).await.unwrap();
        assert_eq!((replayed, applied), (adjusted, Applied::Earlier));

        // A key reused for something else, even of the other kind, is refused.
        for reused in [
            store.set_stock("set-1", "kettle", 11).await,
            store.set_stock("set-1", "teapot", 10).await,
            store.set_stock("adj-1", "kettle", 5).await,
            store.adjust_stock("set-1", "kettle", 10).await,
        ] {
            assert!(
                matches!(reused, Err(Error::Failure(Failure::KeyReused { .. }))),
                "{reused:?}"
            );
        }
    }
}

#[tokio::test]
async fn reservations_nobody_closes_give_their_stock_back() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(1_700_000_000_000));
        let clock = now.clone();
        let store = store(backend, dir.path(), "expiry")
            .await
            .with_reservation_ttl(Duration::from_secs(15 * 60))
            .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
        store.set_stock("set", "kettle", 10).await.unwrap();
        for id in ["forgotten", "committed", "late"] {
            store
                .reserve(id, &[("kettle".to_owned(), 2)])
                .await
                .unwrap();
        }
        store.commit("committed").await.unwrap();

        // Fourteen minutes on: nothing is due yet.
        now.fetch_add(14 * 60_000, Ordering::SeqCst);
        assert_eq!(store.expire_reservations().await.unwrap(), 0, "{backend:?}");

        // Past fifteen: the forgotten one gives its stock back; the committed one stays.
        now.fetch_add(2 * 60_000, Ordering::SeqCst);
        let late_commit = store.commit("late").await;
        assert!(
            matches!(
                late_commit,
                Err(Error::ReservationClosed {
                    state: "EXPIRED",
                    ..
                })
            ),
            "an expired reservation is not committed, even before a sweep: {late_commit:?}"
        );
        assert_eq!(store.expire_reservations().await.unwrap(), 1);
        assert_eq!(store.expire_reservations().await.unwrap(), 0, "once only");
        let forgotten = store.reservation("forgotten").await.unwrap();
        assert_eq!(forgotten.state, ReservationState::Released);
        assert!(forgotten.expired);
        assert!(!store.reservation("committed").await.unwrap().expired);
        let level = store.stock_levels(vec!["kettle".to_owned()]).await.unwrap();
        assert_eq!((level[0].available, level[0].reserved), (8, 0));
        // Releasing an expired reservation (an order's compensation) is a no-op success.
        let (_, applied) = store.release("forgotten").await.unwrap();
        assert_eq!(applied, Applied::Earlier);
    }
}
