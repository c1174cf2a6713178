//! Black-box: `meshctl up` runs the shop, the real grpcurl binary drives every RPC through
//! server reflection, and SIGTERM stops every process cleanly.
//!
//! grpcurl comes from the project's tool folder (`scripts/install-tools.sh`), or from
//! `MESHMART_GRPCURL` (`support/grpcurl.rs`).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A synchronous black-box test: blocking waits and wall-clock deadlines are what it needs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use support::grpcurl::Grpcurl;

// Ports shifted away from the defaults, so a shop the developer is running is left alone.
const OFFSET: u16 = 1000;
const CATALOG: &str = "127.0.0.1:51051";
const INVENTORY: &str = "127.0.0.1:51052";

/// Stops the shop if the test fails half-way, so no service outlives the test.
struct Shop(Child);

impl Drop for Shop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = Pid::from_raw(i32::try_from(self.0.id()).unwrap_or_default());
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            for _ in 0..200 {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
        }
    }
}

/// Lines of the shop's stdout, read on a thread so waits can be bounded.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // meshctl closed its output: it has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!(
        "no line containing {needle:?}; output so far:\n{}",
        seen.join("\n")
    );
}

#[test]
fn the_shop_answers_grpcurl_and_stops_cleanly_on_sigterm() {
    let grpcurl = Grpcurl::find();
    let data = tempfile::tempdir().unwrap();
    let mut shop = Shop(
        Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .args(["up", "--port-offset", &OFFSET.to_string(), "--data-dir"])
            .arg(data.path())
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut shop.0);
    let mut seen = Vec::new();
    wait_for_line(&lines, "every service reports SERVING", &mut seen);

    // Reflection: list and describe.
    let services = grpcurl.ok(&[CATALOG, "list"]);
    for service in [
        "meshmart.catalog.v1.CatalogService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(service), "{services}");
    }
    let described = grpcurl.ok(&[CATALOG, "describe", "meshmart.catalog.v1.CatalogService"]);
    assert!(described.contains("rpc GetProduct"), "{described}");
    let described = grpcurl.ok(&[INVENTORY, "describe", "meshmart.inventory.v1.Reservation"]);
    assert!(described.contains("reservation_id"), "{described}");

    // Health of each service, overall and by name.
    for (addr, name) in [
        (CATALOG, "meshmart.catalog.v1.CatalogService"),
        (INVENTORY, "meshmart.inventory.v1.InventoryService"),
    ] {
        for service in ["", name] {
            let body = format!(r#"{{"service": "{service}"}}"#);
            let reply = grpcurl.call(addr, "grpc.health.v1.Health/Check", &body);
            assert!(reply.contains("SERVING"), "{addr} {service}: {reply}");
        }
    }

    // Catalog: one call per RPC; the product shows inventory's stock.
    let catalog = "meshmart.catalog.v1.CatalogService";
    let reply = grpcurl.ok(&[
        "-v",
        "-d",
        r#"{"name": "products/espresso-cup"}"#,
        CATALOG,
        &format!("{catalog}/GetProduct"),
    ]);
    assert!(reply.contains(r#""availableQuantity": "60""#), "{reply}");
    assert!(reply.contains("x-meshmart-version: v1"), "{reply}");
    let reply = grpcurl.call(
        CATALOG,
        &format!("{catalog}/ListProducts"),
        r#"{"page_size": 3}"#,
    );
    assert!(reply.contains("nextPageToken"), "{reply}");
    let reply = grpcurl.call(
        CATALOG,
        &format!("{catalog}/CreateProduct"),
        r#"{"product_id": "moka-pot", "request_id": "e2e-1", "product": {"display_name": "Moka pot", "price": {"currency_code": "EUR", "units": 35}}}"#,
    );
    assert!(reply.contains("products/moka-pot"), "{reply}");
    let reply = grpcurl.call(
        CATALOG,
        &format!("{catalog}/UpdateProduct"),
        r#"{"product": {"name": "products/moka-pot", "description": "Stovetop, 6 cups"}, "update_mask": {"paths": ["description"]}}"#,
    );
    assert!(reply.contains("Stovetop, 6 cups"), "{reply}");

    // A validation error: INVALID_ARGUMENT with a BadRequest that grpcurl can decode.
    let (success, reply) = grpcurl.run(&[
        "-d",
        r#"{"name": "espresso-cup"}"#,
        CATALOG,
        &format!("{catalog}/GetProduct"),
    ]);
    assert!(!success);
    assert!(reply.contains("InvalidArgument"), "{reply}");
    assert!(
        reply.contains("google.rpc.BadRequest") && reply.contains(r#""field":"name""#),
        "{reply}"
    );

    // Inventory: one call per RPC.
    let inventory = "meshmart.inventory.v1.InventoryService";
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/SetStock"),
        r#"{"product_id": "moka-pot", "available_quantity": 10, "request_id": "stock-moka-1"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "10""#), "{reply}");
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/AdjustStock"),
        r#"{"product_id": "moka-pot", "delta": 5, "request_id": "restock-1"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "15""#), "{reply}");
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/GetStock"),
        r#"{"product_id": "moka-pot"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "15""#), "{reply}");
    for id in ["e2e-release", "e2e-commit"] {
        let body = format!(
            r#"{{"reservation_id": "{id}", "items": [{{"product_id": "moka-pot", "quantity": 2}}]}}"#
        );
        let reply = grpcurl.call(INVENTORY, &format!("{inventory}/ReserveStock"), &body);
        assert!(reply.contains("RESERVATION_STATE_ACTIVE"), "{reply}");
    }
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/GetReservation"),
        r#"{"reservation_id": "e2e-release"}"#,
    );
    assert!(reply.contains("RESERVATION_STATE_ACTIVE"), "{reply}");
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/ReleaseReservation"),
        r#"{"reservation_id": "e2e-release"}"#,
    );
    assert!(reply.contains("RESERVATION_STATE_RELEASED"), "{reply}");
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/CommitReservation"),
        r#"{"reservation_id": "e2e-commit"}"#,
    );
    assert!(reply.contains("RESERVATION_STATE_COMMITTED"), "{reply}");
    let reply = grpcurl.call(
        INVENTORY,
        &format!("{inventory}/BatchGetStock"),
        r#"{"product_ids": ["moka-pot", "espresso-cup"]}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "13""#), "{reply}");

    // The catalog sees the same stock.
    let reply = grpcurl.call(
        CATALOG,
        &format!("{catalog}/GetProduct"),
        r#"{"name": "products/moka-pot"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "13""#), "{reply}");

    // SIGTERM: every service drains and exits 0, and so does meshctl.
    let pid = Pid::from_raw(i32::try_from(shop.0.id()).unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = shop.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "meshctl did not stop within 30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    seen.extend(lines.try_iter());
    let output = seen.join("\n");
    assert_eq!(
        status.code(),
        Some(0),
        "meshctl exit status {status}:\n{output}"
    );
    for name in ["catalog", "inventory"] {
        assert!(
            output.contains(&format!("meshctl: {name} stopped cleanly")),
            "{output}"
        );
    }
    for addr in [CATALOG, INVENTORY] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
}
