//! A service process stops the way a supervisor expects: SIGTERM starts the drain; a
//! second SIGTERM ends the process at once, with the exit code of a process killed by it;
//! and calls still running when the grace period ends are abandoned, said so in the log,
//! and make the exit fail.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::{
    probe::{HealthProbe, ServingStatus},
    proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient},
};
use nix::sys::signal::Signal;

#[tokio::test]
async fn a_second_sigterm_ends_the_drain_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A drain delay far longer than the test: only the second signal can end it in time.
    let (mut child, endpoint) = support::serve(
        "inventory",
        dir.path(),
        &[("SHUTDOWN_DRAIN_DELAY_SECS", "600")],
        false,
    )
    .await;

    support::send(&child, Signal::SIGTERM);
    // The drain has started (health says so) and the process is still there.
    HealthProbe::new(&endpoint, "")
        .wait_for(ServingStatus::NotServing, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(child.try_wait().unwrap().is_none());

    support::send(&child, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the second SIGTERM did not end the process")
        .unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
}

#[tokio::test]
async fn calls_still_running_when_the_grace_period_ends_make_the_exit_fail() {
    // An "inventory" that accepts connections and never answers: the catalog's stock
    // lookup, and so the GetProduct call, stays in flight.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let inventory = format!("http://{}", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (child, endpoint) = support::serve(
        "catalog",
        dir.path(),
        &[
            ("INVENTORY_ADDR", &inventory),
            ("SHUTDOWN_GRACE_PERIOD_SECS", "1"),
        ],
        true,
    )
    .await;

    let mut client = CatalogServiceClient::connect(endpoint).await.unwrap();
    let held = tokio::spawn(async move {
        client
            .get_product(GetProductRequest {
                name: "products/espresso-cup".into(),
            })
            .await
    });
    // The call has reached the catalog once it has connected to the silent inventory.
    let (_held_connection, _) = tokio::task::spawn_blocking(move || silent.accept())
        .await
        .unwrap()
        .unwrap();

    support::send(&child, Signal::SIGTERM);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the grace period did not end the process")
        .unwrap();
    assert!(!output.status.success(), "{}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("abandoning calls in flight"), "{logs}");
    assert!(logs.contains("\"calls_in_flight\":1"), "{logs}");
    assert!(held.await.unwrap().is_err());
}
