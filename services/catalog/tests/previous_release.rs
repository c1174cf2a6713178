//! The previous release's statements against a database the new migrations have changed:
//! migrations are additive (expand now, contract later), so during a canary v1 and v2 share
//! one database. The statements are copied from the release before migration 0002
//! (commit d970a9b^, `src/store.rs`), and what v1 writes, v2 reads.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use catalog::store::{Created, Price, ProductRecord, Store};
use meshmart::testing::{self, backends};
use sqlx::any::AnyPoolOptions;

/// v1's columns, without anything a later migration added.
const V1_COLUMNS: &str = "product_id, display_name, description, currency_code, price_units, price_nanos, create_time_ms, update_time_ms";

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

        // v1's keyed create and its update, unchanged.
        sqlx::query(&format!(
            "INSERT INTO products ({V1_COLUMNS}, create_request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
             ON CONFLICT DO NOTHING"
        ))
        .bind("moka-pot")
        .bind("Moka pot")
        .bind("")
        .bind("EUR")
        .bind(35_i64)
        .bind(0_i64)
        .bind(1_000_i64)
        .bind("v1-request")
        .execute(&v1)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE products SET description = COALESCE($2, description), update_time_ms = $3 WHERE product_id = $1",
        )
        .bind("moka-pot")
        .bind(Some("Stovetop, 6 cups"))
        .bind(2_000_i64)
        .execute(&v1)
        .await
        .unwrap();
        let (read,): (String,) =
            sqlx::query_as("SELECT description FROM products WHERE product_id = $1")
                .bind("moka-pot")
                .fetch_one(&v1)
                .await
                .unwrap();
        assert_eq!(read, "Stovetop, 6 cups", "{backend:?}");

        // This release reads it, and a retry of v1's create here finds v1's product.
        let product = store.get("moka-pot").await.unwrap();
        assert_eq!(product.description, "Stovetop, 6 cups", "{backend:?}");
        let again = ProductRecord {
            product_id: "moka-pot".to_owned(),
            display_name: "Moka pot".to_owned(),
            description: String::new(),
            price: Price {
                currency_code: "EUR".to_owned(),
                units: 35,
                nanos: 0,
            },
            create_time_ms: 0,
            update_time_ms: 0,
        };
        let (_, created) = store.create(Some("v1-request"), &again).await.unwrap();
        assert_eq!(created, Created::Earlier, "{backend:?}");
    }
}
