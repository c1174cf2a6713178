//! Product details come from each replica's cache, and every change made through any
//! replica is read at once through every other: the change goes through one catalog
//! replica, the read through another on the same database, with no wait in between, on
//! SQLite (two processes' worth of pools on one file) and on PostgreSQL. A change made
//! beside the service (another release, or by hand) reaches the caches too.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::{
    config::DatabaseConfig,
    proto::{
        catalog::{
            CreateProductRequest, GetProductRequest, Product, UpdateProductRequest,
            catalog_service_client::CatalogServiceClient,
        },
        google::r#type::Money,
    },
    testing::{self, TestServer},
};
use prost_types::FieldMask;
use sqlx::any::AnyPoolOptions;
use tonic::transport::Channel;

const PRODUCT: &str = "espresso-cup";

struct Replica {
    server: TestServer<meshmart::Error>,
    client: CatalogServiceClient<Channel>,
}

async fn replica(database: DatabaseConfig, inventory_addr: &str) -> Replica {
    let (server, client) = support::spawn_catalog(
        database,
        inventory_addr,
        testing::server_config(catalog::SERVICE),
    )
    .await;
    Replica { server, client }
}

impl Replica {
    async fn product(&mut self, product_id: &str) -> Product {
        self.client
            .get_product(GetProductRequest {
                name: format!("products/{product_id}"),
            })
            .await
            .unwrap()
            .into_inner()
            .product
            .expect("a product")
    }

    /// Reads `product_id` until one read is answered from the cache (a few polls at most).
    async fn warm(&mut self, product_id: &str, backend: testing::Backend) {
        let before = self.lookups("hit").await;
        for _ in 0..100 {
            self.product(product_id).await;
            if self.lookups("hit").await > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{backend:?}: the cache never answered");
    }

    /// The `catalog_product_cache_lookups` counter for `outcome`.
    async fn lookups(&self, outcome: &str) -> u64 {
        let metrics = testing::scrape(self.server.metrics_addr).await;
        let prefix = format!("catalog_product_cache_lookups_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |count| count.trim().parse().unwrap())
    }
}

fn renamed(product_id: &str, display_name: &str) -> UpdateProductRequest {
    UpdateProductRequest {
        product: Some(Product {
            name: format!("products/{product_id}"),
            display_name: display_name.to_owned(),
            ..Product::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["display_name".to_owned()],
        }),
    }
}

#[tokio::test]
async fn a_product_changed_on_one_replica_is_read_at_once_through_another() {
    for backend in testing::backends() {
        let dir = tempfile::tempdir().unwrap();
        let inventory_config = inventory::Config {
            server: testing::server_config(inventory::SERVICE),
            database: testing::database(backend, dir.path(), "product_cache_inventory").await,
            reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
        };
        let inventory =
            TestServer::spawn(&inventory_config.server.clone(), |listeners, shutdown| {
                inventory::serve(inventory_config, listeners, shutdown)
            })
            .await;
        let database = testing::database(backend, dir.path(), "product_cache_catalog").await;
        let mut writer = replica(database.clone(), &inventory.endpoint()).await;
        // The first replica has created and seeded the database before the second opens it
        // (two first starts at once race on SQLite's migrations: a known gap of the store).
        writer.product(PRODUCT).await;
        let mut reader = replica(database.clone(), &inventory.endpoint()).await;

        // Read until the reader answers from its cache, so that what it holds is the old name.
        reader.warm(PRODUCT, backend).await;

        for round in 0..10 {
            let name = format!("Espresso cup, round {round}");
            writer
                .client
                .update_product(renamed(PRODUCT, &name))
                .await
                .unwrap();
            assert_eq!(
                reader.product(PRODUCT).await.display_name,
                name,
                "{backend:?}"
            );
            assert_eq!(
                writer.product(PRODUCT).await.display_name,
                name,
                "{backend:?}"
            );
        }

        // A product created on one replica is found on the other at once.
        writer
            .client
            .create_product(CreateProductRequest {
                product_id: "moka-pot".to_owned(),
                product: Some(Product {
                    display_name: "Moka pot".to_owned(),
                    description: "Stovetop".to_owned(),
                    price: Some(Money {
                        currency_code: "EUR".to_owned(),
                        units: 35,
                        nanos: 0,
                    }),
                    ..Product::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(reader.product("moka-pot").await.display_name, "Moka pot");

        // A change beside the service (the previous release during a canary, or an operator
        // by hand) raises the version through the database's triggers, so it reaches every
        // cache too; it has no commit wait of its own, so the read waits (bounded) for it.
        let beside = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&database.url)
            .await
            .unwrap();
        sqlx::query("UPDATE products SET display_name = $1 WHERE product_id = $2")
            .bind("Renamed by hand")
            .bind(PRODUCT)
            .execute(&beside)
            .await
            .unwrap();
        beside.close().await;
        let mut seen = String::new();
        for _ in 0..100 {
            seen = reader.product(PRODUCT).await.display_name;
            if seen == "Renamed by hand" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen, "Renamed by hand", "{backend:?}");
        reader.warm(PRODUCT, backend).await;

        reader.server.stop().await.unwrap();
        writer.server.stop().await.unwrap();
        inventory.stop().await.unwrap();
    }
}
