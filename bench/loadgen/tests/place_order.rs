//! A short `place-order` run against the whole shop in-process (tests/flow's `Shop`: the
//! seven services over real gRPC, in every setup whose servers are there): every order the
//! run placed is read back COMPLETED with its history, and took its unit of stock.
//! Counts only: timing is what `scripts/bench.sh` is for, never a test assertion.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flow::{Setup, Shop};
use meshmart::{demo, proto::inventory::BatchGetStockRequest};
use tokio::sync::watch;

/// More than the seeded stock of the scarcest demo product (8), so that the run would run
/// out of it without the restock.
const ORDERS: u64 = 90;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_place_order_run_completes_every_order_it_places() {
    for setup in Setup::available() {
        let shop = Shop::start(setup, "loadgen_place_order").await;
        let options = loadgen::Options::try_parse_from([
            "--target-orders".to_owned(),
            shop.endpoint("orders").unwrap(),
            "--target-inventory".to_owned(),
            shop.endpoint("inventory").unwrap(),
            "--mix=place-order".to_owned(),
            "--concurrency=4".to_owned(),
            format!("--max-requests={ORDERS}"),
            // Bounds in time as well as count, so a hang fails the test instead of stalling it.
            "--duration=60s".to_owned(),
            "--wait-timeout=30s".to_owned(),
            "--settle-timeout=60s".to_owned(),
        ])
        .unwrap();
        // Kept alive for the whole run: a dropped sender is not a stop.
        let (_stop_tx, stop) = watch::channel(false);
        let report = tokio::time::timeout(
            Duration::from_secs(180),
            loadgen::execute(&options, stop, |_| {}),
        )
        .await
        .expect("the run is bounded")
        .expect("the run starts");

        assert!(
            report.total.errors.is_empty(),
            "{setup:?}: {:?}",
            report.total.errors
        );
        assert_eq!(report.total.requests, ORDERS, "{setup:?}");
        let names: Vec<&str> = report.scenarios.iter().map(|s| s.name).collect();
        assert_eq!(names, ["place-order"]);
        let orders = report.orders.as_ref().expect("a flow report");
        assert_eq!(
            (
                orders.placed,
                orders.completed,
                orders.failed,
                orders.unfinished
            ),
            (ORDERS, ORDERS, 0, 0),
            "{setup:?}: {orders:?}"
        );
        assert_eq!(orders.end_to_end.count, ORDERS);
        for hop in &orders.hops {
            assert_eq!(
                hop.count, ORDERS,
                "{setup:?}: every hop is in every history"
            );
        }
        assert!(orders.throughput > 0.0);
        let json = report.json();
        assert_eq!(json["orders"]["completed"], ORDERS);
        assert!(report.text().contains("created to COMPLETED"));

        // Every product was set to the restock level, and each completed order took one unit.
        let mut inventory = shop.inventory.clone();
        let stocks = inventory
            .batch_get_stock(BatchGetStockRequest {
                product_ids: demo::PRODUCTS.iter().map(|p| p.id.to_owned()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .stocks;
        let taken: i64 = stocks
            .iter()
            .map(|s| loadgen::client::RESTOCK_TO - s.available_quantity - s.reserved_quantity)
            .sum();
        assert_eq!(
            taken,
            i64::try_from(ORDERS).unwrap(),
            "{setup:?}: {stocks:?}"
        );
        shop.stop().await;
    }
}
