//! A stock change acknowledged to its caller is visible to every GetProduct and ListProducts
//! that starts after it, on any replica: the change goes through one inventory replica, the
//! read through the catalog in front of another, with no wait in between, on SQLite (two
//! processes' worth of pools on one file) and on PostgreSQL.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshmart::{
    config::DatabaseConfig,
    proto::{
        catalog::{
            GetProductRequest, ListProductsRequest, catalog_service_client::CatalogServiceClient,
        },
        inventory::{
            AdjustStockRequest, GetStockRequest, ReservationItem, ReserveStockRequest,
            SetStockRequest, inventory_service_client::InventoryServiceClient,
        },
    },
    testing::{self, TestServer},
};
use tonic::transport::Channel;

const PRODUCT: &str = "espresso-cup";

async fn inventory_replica(database: DatabaseConfig) -> TestServer<meshmart::Error> {
    let config = inventory::Config {
        server: testing::server_config(inventory::SERVICE),
        database,
        reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
    };
    TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        inventory::serve(config, listeners, shutdown)
    })
    .await
}

async fn available(catalog: &mut CatalogServiceClient<Channel>) -> (i64, i64) {
    let got = catalog
        .get_product(GetProductRequest {
            name: format!("products/{PRODUCT}"),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .expect("a product")
        .available_quantity;
    let listed = catalog
        .list_products(ListProductsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .find(|product| product.name == format!("products/{PRODUCT}"))
        .expect("the product is listed")
        .available_quantity;
    (got, listed)
}

#[tokio::test]
async fn a_stock_change_on_one_replica_is_read_at_once_through_another() {
    for backend in testing::backends() {
        let dir = tempfile::tempdir().unwrap();
        let inventory_db = testing::database(backend, dir.path(), "fresh_stock_inventory").await;
        let writer = inventory_replica(inventory_db.clone()).await;
        let mut inventory = InventoryServiceClient::connect(writer.endpoint())
            .await
            .unwrap();
        // The first replica has created and seeded the database before the second opens it
        // (two first starts at once race on SQLite's migrations: a known gap of the store).
        inventory
            .get_stock(GetStockRequest {
                product_id: PRODUCT.to_owned(),
            })
            .await
            .unwrap();
        let reader = inventory_replica(inventory_db).await;
        let catalog_config = catalog::Config {
            server: testing::server_config(catalog::SERVICE),
            database: testing::database(backend, dir.path(), "fresh_stock_catalog").await,
            inventory_addr: reader.endpoint(),
        };
        let catalog_server =
            TestServer::spawn(&catalog_config.server.clone(), |listeners, shutdown| {
                catalog::serve(catalog_config, listeners, shutdown)
            })
            .await;
        let mut catalog = CatalogServiceClient::connect(catalog_server.endpoint())
            .await
            .unwrap();

        // Read first, so that anything the read path keeps is warm with the old value.
        available(&mut catalog).await;
        for round in 0..20_i64 {
            let set = 100 + round;
            inventory
                .set_stock(SetStockRequest {
                    product_id: PRODUCT.to_owned(),
                    available_quantity: set,
                    request_id: format!("set-{round}"),
                })
                .await
                .unwrap();
            assert_eq!(available(&mut catalog).await, (set, set), "{backend:?}");
            inventory
                .adjust_stock(AdjustStockRequest {
                    product_id: PRODUCT.to_owned(),
                    delta: -3,
                    request_id: format!("adjust-{round}"),
                })
                .await
                .unwrap();
            assert_eq!(
                available(&mut catalog).await,
                (set - 3, set - 3),
                "{backend:?}"
            );
            inventory
                .reserve_stock(ReserveStockRequest {
                    reservation_id: format!("reservation-{round}"),
                    items: vec![ReservationItem {
                        product_id: PRODUCT.to_owned(),
                        quantity: 2,
                    }],
                })
                .await
                .unwrap();
            assert_eq!(
                available(&mut catalog).await,
                (set - 5, set - 5),
                "{backend:?}: a reservation takes from what is available"
            );
        }

        catalog_server.stop().await.unwrap();
        reader.stop().await.unwrap();
        writer.stop().await.unwrap();
    }
}
