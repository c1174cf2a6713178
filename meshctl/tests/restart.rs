//! Black-box: `meshctl up` restarts a service that dies, as a kubelet does with
//! `restartPolicy: Always`, with real processes. A service killed with SIGKILL is started
//! again after the backoff, answers on the same port with the same data, and meshctl says
//! so; a service that keeps dying waits twice as long each time; SIGTERM during that wait
//! stops the shop at once and cleanly; a configuration error on the first start still fails
//! `up`. Each test runs its own shop on its own free ports.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A synchronous black-box test: blocking waits and wall-clock deadlines are what it needs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{
    grpcurl::Grpcurl,
    shop::{Shop, gone},
};

const CATALOG: &str = "meshmart.catalog.v1.CatalogService";

/// Waits, within 30 s, for `pid` to be gone: killed and reaped by meshctl.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "pid {pid} is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_service_comes_back_on_its_port_with_its_data() {
    let grpcurl = Grpcurl::find();
    let mut shop = Shop::start(&[]);
    let addr = shop.grpc_addr("catalog");
    let reply = grpcurl.call(
        &addr,
        &format!("{CATALOG}/CreateProduct"),
        r#"{"product_id": "moka-pot", "request_id": "restart-1", "product": {"display_name": "Moka pot", "price": {"currency_code": "EUR", "units": 35}}}"#,
    );
    assert!(reply.contains("products/moka-pot"), "{reply}");
    let inventory = shop.pid_of("inventory");

    let old = shop.pid_of("catalog");
    shop.signal_child("catalog", Signal::SIGKILL);
    shop.wait_for_line(
        "meshctl: catalog exited (signal: 9 (SIGKILL)); restarting it in 1s (attempt 1)",
        "",
    );
    let new = shop.wait_for_restart("catalog", old);
    wait_gone(old);
    shop.wait_for_line("meshctl: catalog is back: serving again", "(attempt 1)");

    // The same port, and the database the first process wrote.
    let reply = grpcurl.call(&addr, "grpc.health.v1.Health/Check", r#"{"service": ""}"#);
    assert!(reply.contains(r#""status": "SERVING""#), "{reply}");
    let reply = grpcurl.call(
        &addr,
        &format!("{CATALOG}/GetProduct"),
        r#"{"name": "products/moka-pot"}"#,
    );
    assert!(reply.contains("Moka pot"), "{reply}");
    assert_eq!(
        shop.pid_of("inventory"),
        inventory,
        "inventory was restarted too"
    );

    // The restarted process stops as the first one would have.
    shop.signal(Signal::SIGTERM);
    let status = shop.wait_exit(Duration::from_secs(30));
    let output = shop.output();
    assert_eq!(status.code(), Some(0), "{status}:\n{output}");
    for name in ["catalog", "inventory"] {
        assert!(
            output.contains(&format!("meshctl: {name} stopped cleanly")),
            "{output}"
        );
    }
    assert!(gone(new), "catalog (pid {new}) is still there");
}

#[test]
fn sigterm_during_the_backoff_wait_stops_at_once_and_cleanly() {
    let mut shop = Shop::start(&[]);
    // Three deaths in a row, none after a healthy minute: 1 s, 2 s, then 4 s to wait.
    for (attempt, delay) in [(1, 1), (2, 2), (3, 4)] {
        let old = shop.pid_of("inventory");
        shop.signal_child("inventory", Signal::SIGKILL);
        shop.wait_for_line(
            &format!(
                "meshctl: inventory exited (signal: 9 (SIGKILL)); restarting it in {delay}s (attempt {attempt})"
            ),
            "",
        );
        if attempt < 3 {
            shop.wait_for_restart("inventory", old);
            shop.wait_for_line(
                "meshctl: inventory is back",
                &format!("(attempt {attempt})"),
            );
        }
    }
    let waiting = shop.pid_of("inventory");
    wait_gone(waiting);

    let sent = Instant::now();
    shop.signal(Signal::SIGTERM);
    let status = shop.wait_exit(Duration::from_secs(30));
    let took = sent.elapsed();
    let output = shop.output();

    // Nothing to stop for the service waiting; the other stopped cleanly by itself.
    assert_eq!(status.code(), Some(0), "{status}:\n{output}");
    assert!(
        output.contains("meshctl: inventory was waiting to restart; nothing to stop"),
        "{output}"
    );
    assert!(
        output.contains("meshctl: catalog stopped cleanly"),
        "{output}"
    );
    // It did not sit out the 4 s, nor start the service again to stop it.
    assert!(
        took < Duration::from_secs(4),
        "stopped after {took:?}:\n{output}"
    );
    assert_eq!(shop.pid_of("inventory"), waiting, "{output}");
}

#[test]
fn a_configuration_error_on_the_first_start_fails_up() {
    // Read by inventory only, so meshctl's own check of the server settings passes it on.
    let mut shop = Shop::spawn(&[("RESERVATION_TTL_SECS", "soon")]);
    let status = shop.wait_exit(Duration::from_secs(30));
    let output = shop.output();
    assert!(!status.success(), "{status}:\n{output}");
    assert!(
        output.contains("meshctl: inventory exited (exit status: 2) during start-up"),
        "{output}"
    );
    assert!(!output.contains("restarting"), "{output}");
}
