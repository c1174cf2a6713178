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

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{grpcurl::Grpcurl, shop::Shop};

#[test]
fn the_shop_answers_grpcurl_and_stops_cleanly_on_sigterm() {
    let grpcurl = Grpcurl::find();
    // On free ports (a random offset tried first), with its data in a temporary folder: a
    // shop the developer is running, and tests running side by side, are left alone.
    let mut shop = Shop::start(&[]);
    let (catalog_addr, inventory_addr) = (shop.grpc_addr("catalog"), shop.grpc_addr("inventory"));
    let (catalog_at, inventory_at) = (catalog_addr.as_str(), inventory_addr.as_str());

    // Reflection: list and describe.
    let services = grpcurl.ok(&[catalog_at, "list"]);
    for service in [
        "meshmart.catalog.v1.CatalogService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(service), "{services}");
    }
    let described = grpcurl.ok(&[catalog_at, "describe", "meshmart.catalog.v1.CatalogService"]);
    assert!(described.contains("rpc GetProduct"), "{described}");
    let described = grpcurl.ok(&[
        inventory_at,
        "describe",
        "meshmart.inventory.v1.Reservation",
    ]);
    assert!(described.contains("reservation_id"), "{described}");

    // Health of each service, overall and by name.
    for (addr, name) in [
        (catalog_at, "meshmart.catalog.v1.CatalogService"),
        (inventory_at, "meshmart.inventory.v1.InventoryService"),
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
        catalog_at,
        &format!("{catalog}/GetProduct"),
    ]);
    assert!(reply.contains(r#""availableQuantity": "60""#), "{reply}");
    assert!(reply.contains("x-meshmart-version: v1"), "{reply}");
    let reply = grpcurl.call(
        catalog_at,
        &format!("{catalog}/ListProducts"),
        r#"{"page_size": 3}"#,
    );
    assert!(reply.contains("nextPageToken"), "{reply}");
    let reply = grpcurl.call(
        catalog_at,
        &format!("{catalog}/CreateProduct"),
        r#"{"product_id": "moka-pot", "request_id": "e2e-1", "product": {"display_name": "Moka pot", "price": {"currency_code": "EUR", "units": 35}}}"#,
    );
    assert!(reply.contains("products/moka-pot"), "{reply}");
    let reply = grpcurl.call(
        catalog_at,
        &format!("{catalog}/UpdateProduct"),
        r#"{"product": {"name": "products/moka-pot", "description": "Stovetop, 6 cups"}, "update_mask": {"paths": ["description"]}}"#,
    );
    assert!(reply.contains("Stovetop, 6 cups"), "{reply}");

    // A validation error: INVALID_ARGUMENT with a BadRequest that grpcurl can decode.
    let (success, reply) = grpcurl.run(&[
        "-d",
        r#"{"name": "espresso-cup"}"#,
        catalog_at,
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
        inventory_at,
        &format!("{inventory}/SetStock"),
        r#"{"product_id": "moka-pot", "available_quantity": 10, "request_id": "stock-moka-1"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "10""#), "{reply}");
    let reply = grpcurl.call(
        inventory_at,
        &format!("{inventory}/AdjustStock"),
        r#"{"product_id": "moka-pot", "delta": 5, "request_id": "restock-1"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "15""#), "{reply}");
    let reply = grpcurl.call(
        inventory_at,
        &format!("{inventory}/GetStock"),
        r#"{"product_id": "moka-pot"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "15""#), "{reply}");
    for id in ["e2e-release", "e2e-commit"] {
        let body = format!(
            r#"{{"reservation_id": "{id}", "items": [{{"product_id": "moka-pot", "quantity": 2}}]}}"#
        );
        let reply = grpcurl.call(inventory_at, &format!("{inventory}/ReserveStock"), &body);
        assert!(reply.contains("RESERVATION_STATE_ACTIVE"), "{reply}");
    }
    let reply = grpcurl.call(
        inventory_at,
        &format!("{inventory}/GetReservation"),
        r#"{"reservation_id": "e2e-release"}"#,
    );
    assert!(reply.contains("RESERVATION_STATE_ACTIVE"), "{reply}");
    let reply = grpcurl.call(
        inventory_at,
        &format!("{inventory}/ReleaseReservation"),
        r#"{"reservation_id": "e2e-release"}"#,
    );
    assert!(reply.contains("RESERVATION_STATE_RELEASED"), "{reply}");
    let reply = grpcurl.call(
        inventory_at,
        &format!("{inventory}/CommitReservation"),
        r#"{"reservation_id": "e2e-commit"}"#,
    );
    assert!(reply.contains("RESERVATION_STATE_COMMITTED"), "{reply}");
    let reply = grpcurl.call(
        inventory_at,
        &format!("{inventory}/BatchGetStock"),
        r#"{"product_ids": ["moka-pot", "espresso-cup"]}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "13""#), "{reply}");

    // The catalog sees the same stock.
    let reply = grpcurl.call(
        catalog_at,
        &format!("{catalog}/GetProduct"),
        r#"{"name": "products/moka-pot"}"#,
    );
    assert!(reply.contains(r#""availableQuantity": "13""#), "{reply}");

    // SIGTERM: every service drains and exits 0, and so does meshctl.
    shop.signal(Signal::SIGTERM);
    let status = shop.wait_exit(Duration::from_secs(30));
    let output = shop.output();
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
    for addr in [catalog_at, inventory_at] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
}
