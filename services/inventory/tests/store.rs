//! The store on every backend: SQLite always, PostgreSQL when the test command provides one.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        store.set_stock("b-product", 10).await.unwrap();
        let levels = store
            .stock_levels(&["zz-unknown".to_owned(), "b-product".to_owned()])
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
            Err(Error::KeyReused { .. })
        ));
        assert!(matches!(
            store.adjust_stock("adj-2", "b-product", -16).await,
            Err(Error::InsufficientStock { available: 15, .. })
        ));

        // Reserve, replay, release, commit.
        store.set_stock("a-product", 3).await.unwrap();
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
            .stock_levels(&["a-product".to_owned(), "b-product".to_owned()])
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
        let levels = store.stock_levels(&["a-product".to_owned()]).await.unwrap();
        assert_eq!((levels[0].available, levels[0].reserved), (3, 0));

        let (_, _) = store
            .reserve("res-3", &[("a-product".to_owned(), 2)])
            .await
            .unwrap();
        let (committed, _) = store.commit("res-3").await.unwrap();
        assert_eq!(committed.state, ReservationState::Committed);
        let levels = store.stock_levels(&["a-product".to_owned()]).await.unwrap();
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
        store.set_stock("espresso-cup", 1).await.unwrap();
        // A restart must not put the demo stock back over what changed since.
        let store = Store::connect(&config).await.unwrap();
        let levels = store
            .stock_levels(&["espresso-cup".to_owned(), "burr-grinder".to_owned()])
            .await
            .unwrap();
        assert_eq!(levels[0].available, 1, "{backend:?}");
        assert_eq!(levels[1].available, 8);
    }
}
