//! A smoke run of the load generator against the shop, in-process on 127.0.0.1: a few
//! hundred calls of every scenario, closed and open loop, all of which must succeed.
//! Counts only: timing is what `scripts/bench.sh` is for, never a test assertion.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use meshmart::{
    config::DatabaseConfig,
    testing::{self, Backend, TestServer},
};
use tokio::sync::watch;

struct Shop {
    inventory: TestServer<meshmart::Error>,
    catalog: TestServer<meshmart::Error>,
    echo: TestServer<meshmart::Error>,
    // Held so the SQLite files outlive the servers.
    _dir: tempfile::TempDir,
}

async fn database(dir: &std::path::Path, name: &str) -> DatabaseConfig {
    DatabaseConfig::with_url(testing::database_url(Backend::Sqlite, dir, name).await)
}

async fn start_shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let config = inventory::Config {
        server: testing::server_config(inventory::SERVICE),
        database: database(dir.path(), "inventory").await,
        reservation_ttl: inventory::store::DEFAULT_RESERVATION_TTL,
    };
    let inventory = TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        inventory::serve(config, listeners, shutdown)
    })
    .await;
    let config = catalog::Config {
        server: testing::server_config(catalog::SERVICE),
        database: database(dir.path(), "catalog").await,
        inventory_addr: inventory.endpoint(),
    };
    let catalog = TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        catalog::serve(config, listeners, shutdown)
    })
    .await;
    let config = echo::Config {
        server: testing::server_config(echo::SERVICE),
        next_addr: None,
    };
    let echo = TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
        echo::serve(config, listeners, shutdown)
    })
    .await;
    Shop {
        inventory,
        catalog,
        echo,
        _dir: dir,
    }
}

impl Shop {
    fn options(&self, flags: &[&str]) -> loadgen::Options {
        let mut args = vec![
            "--target-catalog".to_owned(),
            self.catalog.endpoint(),
            "--target-echo".to_owned(),
            self.echo.endpoint(),
            // Bounds in time as well as count, so a hang fails the test instead of stalling it.
            "--duration".to_owned(),
            "60s".to_owned(),
            "--wait-timeout".to_owned(),
            "30s".to_owned(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        loadgen::Options::try_parse_from(&args).unwrap()
    }

    async fn stop(self) {
        self.catalog.stop().await.unwrap();
        self.inventory.stop().await.unwrap();
        self.echo.stop().await.unwrap();
    }
}

async fn run(options: &loadgen::Options) -> loadgen::Report {
    // Kept alive for the whole run: a dropped sender is not a stop.
    let (_stop_tx, stop) = watch::channel(false);
    tokio::time::timeout(
        Duration::from_secs(120),
        loadgen::execute(options, stop, |_| {}),
    )
    .await
    .expect("the run is bounded")
    .expect("the run starts")
}

fn assert_clean(report: &loadgen::Report, requests: u64) {
    assert!(
        report.total.errors.is_empty(),
        "errors: {:?}",
        report.total.errors
    );
    assert_eq!(report.total.requests, requests);
    assert_eq!(report.total.ok, requests);
    let per_scenario: u64 = report.scenarios.iter().map(|s| s.requests).sum();
    assert_eq!(per_scenario, requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_loop_runs_of_the_mix_succeed() {
    let shop = start_shop().await;

    let closed = shop.options(&[
        "--mix",
        "get-product=3,list-products=1,echo=1",
        "--concurrency",
        "8",
        "--max-requests",
        "400",
    ]);
    let report = run(&closed).await;
    assert_clean(&report, 400);
    let names: Vec<&str> = report.scenarios.iter().map(|s| s.name).collect();
    assert_eq!(names, ["get-product", "list-products", "echo"]);
    let json = report.json();
    assert_eq!(json["total"]["requests"], 400);
    assert_eq!(json["load"]["kind"], "closed");

    let open = shop.options(&[
        "--mix",
        "get-product",
        "--rate",
        "2000",
        "--max-requests",
        "200",
    ]);
    assert_clean(&run(&open).await, 200);

    shop.stop().await;
}

#[tokio::test]
async fn a_service_that_never_serves_is_reported_not_hammered() {
    // Nothing listens on port 1; the wait must give up with a clear error.
    let options = loadgen::Options::try_parse_from(
        [
            "--target-echo",
            "http://127.0.0.1:1",
            "--mix",
            "echo",
            "--max-requests",
            "10",
            "--wait-timeout",
            "500ms",
        ]
        .map(str::to_owned),
    )
    .unwrap();
    let (_stop_tx, stop) = watch::channel(false);
    let error = loadgen::execute(&options, stop, |_| {}).await.unwrap_err();
    assert!(
        error.to_string().contains("did not report SERVING"),
        "{error}"
    );
}
