//! `inventory_reservations_active` counts the reservations holding stock, from the
//! database: up after a reservation, down after its commit or release.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use meshmart::{
    proto::inventory::{
        CommitReservationRequest, ReleaseReservationRequest, ReservationItem, ReserveStockRequest,
    },
    testing::{self, Backend, backends},
};

/// The gauge is sampled every 5 s: two samples and some.
const WAIT: Duration = Duration::from_secs(15);

async fn reserve(running: &mut support::Running, id: &str) {
    running
        .client
        .reserve_stock(ReserveStockRequest {
            reservation_id: id.into(),
            items: vec![ReservationItem {
                product_id: "french-press".into(),
                quantity: 1,
            }],
        })
        .await
        .unwrap();
}

async fn up_after_a_reservation_down_after_commit_and_release(backend: Backend) {
    let mut running = support::start(backend, "active_gauge").await;
    let metrics = running.server.metrics_addr;
    let active = |count: u32| format!("inventory_reservations_active {count}");
    testing::metric_until(metrics, &active(0), WAIT).await;

    reserve(&mut running, "to-commit").await;
    reserve(&mut running, "to-release").await;
    testing::metric_until(metrics, &active(2), WAIT).await;

    running
        .client
        .commit_reservation(CommitReservationRequest {
            reservation_id: "to-commit".into(),
        })
        .await
        .unwrap();
    testing::metric_until(metrics, &active(1), WAIT).await;

    running
        .client
        .release_reservation(ReleaseReservationRequest {
            reservation_id: "to-release".into(),
        })
        .await
        .unwrap();
    testing::metric_until(metrics, &active(0), WAIT).await;
    running.server.stop().await.unwrap();
}

#[tokio::test]
async fn up_after_a_reservation_down_after_commit_and_release_on_every_backend() {
    for backend in backends() {
        up_after_a_reservation_down_after_commit_and_release(backend).await;
    }
}
