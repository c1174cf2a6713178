//! Reservations over real gRPC: idempotency under concurrency, all-or-nothing holds,
//! and the release/commit life cycle.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::inventory::{
        BatchGetStockRequest, CommitReservationRequest, GetReservationRequest,
        ReleaseReservationRequest, ReservationItem, ReservationState, ReserveStockRequest,
        SetStockRequest,
    },
    testing::{Backend, backends},
};
use tonic::Code;
use tonic_types::StatusExt;

fn items(list: &[(&str, i64)]) -> Vec<ReservationItem> {
    list.iter()
        .map(|(product_id, quantity)| ReservationItem {
            product_id: (*product_id).to_owned(),
            quantity: *quantity,
        })
        .collect()
}

async fn stock(client: &mut support::Running, id: &str) -> (i64, i64) {
    let stocks = client
        .client
        .batch_get_stock(BatchGetStockRequest {
            product_ids: vec![id.to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .stocks;
    (stocks[0].available_quantity, stocks[0].reserved_quantity)
}

async fn concurrent_identical_reserves_hold_stock_once(backend: Backend) {
    let mut running = support::start(backend, "concurrent_reserve").await;
    running
        .client
        .set_stock(SetStockRequest {
            product_id: "kettle".into(),
            available_quantity: 50,
            request_id: "stock-kettle".into(),
        })
        .await
        .unwrap();

    let request = ReserveStockRequest {
        reservation_id: "order-42".into(),
        items: items(&[("kettle", 3)]),
    };
    let calls = (0..100).map(|_| {
        let mut client = running.client.clone();
        let request = request.clone();
        tokio::spawn(async move { client.reserve_stock(request).await })
    });
    let mut ids = std::collections::HashSet::new();
    for call in calls.collect::<Vec<_>>() {
        let reservation = call
            .await
            .unwrap()
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(reservation.state(), ReservationState::Active);
        assert_eq!(reservation.items, items(&[("kettle", 3)]));
        ids.insert((reservation.reservation_id, reservation.create_time));
    }
    // Every caller saw the same, single reservation...
    assert_eq!(ids.len(), 1, "{backend:?}");
    // ...and the stock was held once.
    assert_eq!(stock(&mut running, "kettle").await, (47, 3), "{backend:?}");
    running.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_reserves_hold_stock_once_on_every_backend() {
    for backend in backends() {
        concurrent_identical_reserves_hold_stock_once(backend).await;
    }
}

#[tokio::test]
async fn reservation_is_all_or_nothing() {
    let mut running = support::start(Backend::Sqlite, "all_or_nothing").await;
    // Demo stock: espresso-cup 60, milk-frother 0.
    let status = running
        .client
        .reserve_stock(ReserveStockRequest {
            reservation_id: "r1".into(),
            items: items(&[("espresso-cup", 2), ("milk-frother", 1)]),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let failure = status.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].subject, "milk-frother");
    assert_eq!(
        stock(&mut running, "espresso-cup").await,
        (60, 0),
        "nothing held"
    );
    // The id was not used up: the same reservation can succeed once stock arrives.
    running
        .client
        .set_stock(SetStockRequest {
            product_id: "milk-frother".into(),
            available_quantity: 5,
            request_id: "stock-milk-frother".into(),
        })
        .await
        .unwrap();
    let reservation = running
        .client
        .reserve_stock(ReserveStockRequest {
            reservation_id: "r1".into(),
            items: items(&[("milk-frother", 1), ("espresso-cup", 2)]),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    // Items come back ordered by product id, whatever order they were asked in.
    assert_eq!(
        reservation.items,
        items(&[("espresso-cup", 2), ("milk-frother", 1)])
    );
    assert_eq!(stock(&mut running, "espresso-cup").await, (58, 2));
    running.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_reused_reservation_id_with_other_items_is_rejected() {
    let mut running = support::start(Backend::Sqlite, "reused_id").await;
    let reserve = |quantity| ReserveStockRequest {
        reservation_id: "r2".into(),
        items: items(&[("travel-mug", quantity)]),
    };
    running.client.reserve_stock(reserve(1)).await.unwrap();
    let status = running.client.reserve_stock(reserve(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(stock(&mut running, "travel-mug").await, (39, 1));
    running.server.stop().await.unwrap();
}

#[tokio::test]
async fn release_and_commit_are_idempotent_and_final() {
    let mut running = support::start(Backend::Sqlite, "life_cycle").await;
    for id in ["to-release", "to-commit"] {
        running
            .client
            .reserve_stock(ReserveStockRequest {
                reservation_id: id.into(),
                items: items(&[("french-press", 4)]),
            })
            .await
            .unwrap();
    }
    assert_eq!(stock(&mut running, "french-press").await, (12, 8));

    for _ in 0..2 {
        let released = running
            .client
            .release_reservation(ReleaseReservationRequest {
                reservation_id: "to-release".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(released.state(), ReservationState::Released);
    }
    assert_eq!(
        stock(&mut running, "french-press").await,
        (16, 4),
        "released once"
    );

    for _ in 0..2 {
        running
            .client
            .commit_reservation(CommitReservationRequest {
                reservation_id: "to-commit".into(),
            })
            .await
            .unwrap();
    }
    assert_eq!(
        stock(&mut running, "french-press").await,
        (16, 0),
        "committed once"
    );

    let status = running
        .client
        .commit_reservation(CommitReservationRequest {
            reservation_id: "to-release".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = running
        .client
        .release_reservation(ReleaseReservationRequest {
            reservation_id: "to-commit".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let status = running
        .client
        .get_reservation(GetReservationRequest {
            reservation_id: "never-made".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    running.server.stop().await.unwrap();
}
