//! Every invalid request gets INVALID_ARGUMENT naming each bad field.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::inventory::{
        AdjustStockRequest, BatchGetStockRequest, GetReservationRequest, GetStockRequest,
        ReservationItem, ReserveStockRequest, SetStockRequest,
    },
    testing::Backend,
    testing::violated_fields,
};

#[tokio::test]
async fn each_bad_field_is_named() {
    let running = support::start(Backend::Sqlite, "validation").await;
    let mut client = running.client.clone();

    assert_eq!(
        violated_fields(
            client
                .get_stock(GetStockRequest {
                    product_id: "Not An Id".into()
                })
                .await
        ),
        ["product_id"]
    );
    assert_eq!(
        violated_fields(
            client
                .batch_get_stock(BatchGetStockRequest {
                    product_ids: vec![]
                })
                .await
        ),
        ["product_ids"]
    );
    assert_eq!(
        violated_fields(
            client
                .batch_get_stock(BatchGetStockRequest {
                    product_ids: vec!["a".into(), "a".into(), "B".into()]
                })
                .await
        ),
        ["product_ids[1]", "product_ids[2]"]
    );
    assert_eq!(
        violated_fields(
            client
                .set_stock(SetStockRequest {
                    product_id: "a".into(),
                    available_quantity: -1,
                    request_id: String::new(),
                })
                .await
        ),
        ["available_quantity", "request_id"]
    );
    assert_eq!(
        violated_fields(
            client
                .adjust_stock(AdjustStockRequest {
                    product_id: "a".into(),
                    delta: 0,
                    request_id: String::new()
                })
                .await
        ),
        ["delta", "request_id"]
    );
    assert_eq!(
        violated_fields(
            client
                .reserve_stock(ReserveStockRequest {
                    reservation_id: "has space".into(),
                    items: vec![
                        ReservationItem {
                            product_id: "a".into(),
                            quantity: 0
                        },
                        ReservationItem {
                            product_id: "a".into(),
                            quantity: 1
                        },
                    ],
                })
                .await
        ),
        ["reservation_id", "items[0].quantity", "items[1].product_id"]
    );
    assert_eq!(
        violated_fields(
            client
                .reserve_stock(ReserveStockRequest {
                    reservation_id: "ok".into(),
                    items: vec![]
                })
                .await
        ),
        ["items"]
    );
    assert_eq!(
        violated_fields(
            client
                .get_reservation(GetReservationRequest {
                    reservation_id: String::new()
                })
                .await
        ),
        ["reservation_id"]
    );
    running.server.stop().await.unwrap();
}
