//! Graceful shutdown: health turns NOT_SERVING first, new connections are refused, and a
//! call in flight still finishes within the grace period.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::probe::{HealthProbe, ServingStatus};
use meshmart::{
    proto::catalog::GetProductRequest,
    testing::{self, Backend},
};
use support::fake_inventory::FakeInventory;
use tonic::transport::Endpoint;

fn catalog_health(endpoint: &str) -> HealthProbe {
    HealthProbe::new(endpoint, "meshmart.catalog.v1.CatalogService")
}

async fn start(
    drain_delay: Duration,
    grace_period: Duration,
    fake: FakeInventory,
    test: &str,
) -> (support::Shop, testing::TestServer<tonic::transport::Error>) {
    let inventory = fake.spawn().await;
    let mut server = testing::server_config(catalog::SERVICE);
    server.drain_delay = drain_delay;
    server.grace_period = grace_period;
    let shop = support::start_catalog(
        Backend::Sqlite,
        tempfile::tempdir().unwrap(),
        test,
        &inventory.endpoint(),
        server,
    )
    .await;
    (shop, inventory)
}

#[tokio::test]
async fn in_flight_calls_finish_after_health_turns_not_serving() {
    let fake = FakeInventory::gated();
    let (mut shop, inventory) = start(
        Duration::from_millis(300),
        Duration::from_secs(30),
        fake.clone(),
        "drain",
    )
    .await;
    let endpoint = shop.catalog.endpoint();
    assert_eq!(
        catalog_health(&endpoint).check().await.unwrap(),
        ServingStatus::Serving
    );

    // A call that is held inside the catalog, waiting on inventory.
    let mut client = shop.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .get_product(GetProductRequest {
                name: "products/espresso-cup".into(),
            })
            .await
    });
    fake.arrived.notified().await;

    shop.catalog.begin_stop();
    // Health says NOT_SERVING while the listener is still open (the drain delay)...
    catalog_health(&endpoint)
        .wait_for(ServingStatus::NotServing, Duration::from_secs(10))
        .await
        .expect("health never turned NOT_SERVING");
    // ...then new connections are refused.
    let mut refused = false;
    for _ in 0..200 {
        if Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections were still accepted");

    // The drain waits for the call: the server has not stopped while the call is held...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shop.catalog.is_finished(),
        "the server stopped with a call in flight"
    );
    // ...and the call completes normally once inventory answers.
    fake.gate.as_ref().unwrap().add_permits(1);
    let product = in_flight
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(product.available_quantity, 7);
    shop.catalog.stop().await.unwrap();
    inventory.stop().await.unwrap();
}

#[tokio::test]
async fn the_grace_period_bounds_the_drain() {
    let fake = FakeInventory::gated();
    let (shop, inventory) = start(
        Duration::ZERO,
        Duration::from_millis(200),
        fake.clone(),
        "grace",
    )
    .await;
    let mut client = shop.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .get_product(GetProductRequest {
                name: "products/espresso-cup".into(),
            })
            .await
    });
    fake.arrived.notified().await;
    // Inventory does not answer; the server still stops once the grace period is over,
    // says it abandoned the call, and fails (so the process exits non-zero).
    let stopped = shop.catalog.stop().await;
    assert!(
        matches!(stopped, Err(meshmart::Error::Abandoned { calls: 1, .. })),
        "{stopped:?}"
    );
    // The abandoned call's connection is closed: the caller sees an error, not a hang.
    assert!(in_flight.await.unwrap().is_err());
    fake.gate.as_ref().unwrap().close();
    drop(shop.client);
    inventory.stop().await.unwrap();
}
