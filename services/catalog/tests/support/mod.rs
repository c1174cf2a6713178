//! Starting the catalog in-process for a test, in front of the real inventory service or
//! of a fake one that records what it was asked.

#![allow(dead_code, unreachable_pub)]

pub mod fake_inventory;

use meshmart::{
    config::{DatabaseConfig, ServerConfig},
    proto::{
        catalog::catalog_service_client::CatalogServiceClient,
        inventory::inventory_service_client::InventoryServiceClient,
    },
    testing::{self, Backend, TestServer},
};
use tonic::transport::Channel;

pub struct Shop {
    pub catalog: TestServer<meshmart::Error>,
    pub inventory: Option<TestServer<meshmart::Error>>,
    pub client: CatalogServiceClient<Channel>,
    pub inventory_client: Option<InventoryServiceClient<Channel>>,
    _dir: tempfile::TempDir,
}

/// Catalog and the real inventory, both on SQLite.
pub async fn start(test: &str) -> Shop {
    start_on(Backend::Sqlite, test).await
}

pub async fn start_on(backend: Backend, test: &str) -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let inventory_config = inventory::Config {
        server: testing::server_config(inventory::SERVICE),
        database: testing::database(backend, dir.path(), &format!("{test}_inventory")).await,
        reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
    };
    let inventory = TestServer::spawn(&inventory_config.server.clone(), |listeners, shutdown| {
        inventory::serve(inventory_config, listeners, shutdown)
    })
    .await;
    let inventory_client = InventoryServiceClient::connect(inventory.endpoint())
        .await
        .unwrap();
    let mut shop = start_catalog(
        backend,
        dir,
        test,
        &inventory.endpoint(),
        testing::server_config(catalog::SERVICE),
    )
    .await;
    shop.inventory = Some(inventory);
    shop.inventory_client = Some(inventory_client);
    shop
}

/// Catalog alone, calling the inventory at `inventory_addr`.
pub async fn start_catalog(
    backend: Backend,
    dir: tempfile::TempDir,
    test: &str,
    inventory_addr: &str,
    server: ServerConfig,
) -> Shop {
    let database = testing::database(backend, dir.path(), &format!("{test}_catalog")).await;
    let (catalog, client) = spawn_catalog(database, inventory_addr, server).await;
    Shop {
        catalog,
        inventory: None,
        client,
        inventory_client: None,
        _dir: dir,
    }
}

/// A catalog on `database` (which another replica may share), and a client of it.
pub async fn spawn_catalog(
    database: DatabaseConfig,
    inventory_addr: &str,
    server: ServerConfig,
) -> (TestServer<meshmart::Error>, CatalogServiceClient<Channel>) {
    let config = catalog::Config {
        server,
        database,
        inventory_addr: inventory_addr.to_owned(),
    };
    let catalog = TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        catalog::serve(config, listeners, shutdown)
    })
    .await;
    let client = CatalogServiceClient::connect(catalog.endpoint())
        .await
        .unwrap();
    (catalog, client)
}

impl Shop {
    pub async fn stop(self) {
        self.catalog.stop().await.unwrap();
        if let Some(inventory) = self.inventory {
            inventory.stop().await.unwrap();
        }
    }
}
