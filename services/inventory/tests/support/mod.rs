//! Starting the inventory service in-process for a test, on a chosen database.

use inventory::Config;
use meshmart::{
    proto::inventory::inventory_service_client::InventoryServiceClient,
    testing::{self, Backend, TestServer},
};
use tonic::transport::Channel;

pub(crate) struct Running {
    pub(crate) server: TestServer<meshmart::Error>,
    pub(crate) client: InventoryServiceClient<Channel>,
    // Held so the SQLite file outlives the server.
    _dir: tempfile::TempDir,
}

pub(crate) async fn start(backend: Backend, test: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        server: testing::server_config(inventory::SERVICE),
        database: testing::database(backend, dir.path(), test).await,
        reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
    };
    let server = TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        inventory::serve(config, listeners, shutdown)
    })
    .await;
    let client = InventoryServiceClient::connect(server.endpoint())
        .await
        .unwrap();
    Running {
        server,
        client,
        _dir: dir,
    }
}
