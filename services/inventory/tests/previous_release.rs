//! The previous release's statements against a database the new migrations have changed:
//! migrations are additive (expand now, contract later), so during a canary v1 and v2 share
//! one database. The statements are copied from the release before migration 0002
//! (commit e5fe9fa^, `src/store.rs`), and what v1 writes, v2 reads.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use inventory::store::{Applied, ReservationState, Store};
use meshmart::testing::{self, backends};
use sqlx::any::AnyPoolOptions;

#[tokio::test]
async fn the_previous_release_writes_what_this_one_reads() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = testing::database(backend, dir.path(), "previous_release").await;
        config.seed_demo_data = false;
        // This release's migrations, all of them.
        let store = Store::connect(&config).await.unwrap();
        let v1 = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&config.url)
            .await
            .unwrap();

        // v1 stocks a product, records a keyed adjustment, and holds a reservation, with
        // its statements unchanged.
        sqlx::query(
            "INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (product_id) DO UPDATE SET available = excluded.available, update_time_ms = excluded.update_time_ms",
        )
        .bind("kettle")
        .bind(10_i64)
        .bind(1_000_i64)
        .execute(&v1)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO stock_adjustments (request_id, product_id, delta, create_time_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind("v1-adjust")
        .bind("kettle")
        .bind(5_i64)
        .bind(1_000_i64)
        .execute(&v1)
        .await
        .unwrap();
        sqlx::query("UPDATE stock SET available = available + $2, update_time_ms = $3 WHERE product_id = $1")
            .bind("kettle")
            .bind(5_i64)
            .bind(1_000_i64)
            .execute(&v1)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO reservations (reservation_id, state, create_time_ms, update_time_ms) VALUES ($1, 'ACTIVE', $2, $2) \
             ON CONFLICT (reservation_id) DO NOTHING",
        )
        .bind("v1-order")
        .bind(1_000_i64)
        .execute(&v1)
        .await
        .unwrap();
        sqlx::query("INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES ($1, $2, $3)")
            .bind("v1-order")
            .bind("kettle")
            .bind(2_i64)
            .execute(&v1)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE stock SET available = available - $2, reserved = reserved + $2, update_time_ms = $3 WHERE product_id = $1",
        )
        .bind("kettle")
        .bind(2_i64)
        .bind(1_000_i64)
        .execute(&v1)
        .await
        .unwrap();

        // This release reads all of it: v1's adjustment replays instead of applying twice,
        // and v1's reservation (made before expiry existed) never expires and commits.
        let (level, applied) = store.adjust_stock("v1-adjust", "kettle", 5).await.unwrap();
        assert_eq!(applied, Applied::Earlier, "{backend:?}");
        assert_eq!((level.available, level.reserved), (13, 2), "{backend:?}");
        let reservation = store.reservation("v1-order").await.unwrap();
        assert_eq!(reservation.state, ReservationState::Active);
        assert_eq!(reservation.expire_time_ms, None);
        assert_eq!(store.expire_reservations().await.unwrap(), 0, "{backend:?}");
        let (committed, _) = store.commit("v1-order").await.unwrap();
        assert_eq!(committed.state, ReservationState::Committed, "{backend:?}");
    }
}
