//! Black-box: how `meshctl up` stops, with real processes. A clean stop copies every
//! service's last log line; a service that cannot exit is killed after its drain delay plus
//! grace period plus a margin; a second signal kills at once. Each test runs its own shop
//! on its own free ports, so they run in parallel with each other and with the others.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A synchronous black-box test: blocking waits and wall-clock deadlines are what it needs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::shop::{SERVICES, Shop, gone, is_zombie};

#[test]
fn a_clean_stop_copies_every_services_last_log_line() {
    let mut shop = Shop::start(&[("SHUTDOWN_DRAIN_DELAY_SECS", "1")]);
    shop.signal(Signal::SIGTERM);
    // Both services got SIGTERM and drain for a second. meshctl is paused meanwhile, so
    // they exit with their last lines unread in the pipes: when meshctl runs again, it
    // learns of the exits and has those lines to copy at the same moment.
    for name in SERVICES {
        shop.wait_for_line(&support::shop::line_prefix(name), "draining");
    }
    shop.signal(Signal::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shop.children.values().all(|pid| is_zombie(*pid)) {
        assert!(Instant::now() < deadline, "the services did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    shop.signal(Signal::SIGCONT);
    let status = shop.wait_exit(Duration::from_secs(30));
    let output = shop.output();
    assert_eq!(status.code(), Some(0), "{status}:\n{output}");

    for name in SERVICES {
        let last = shop.last_line_of(name);
        // Its last line was copied before meshctl said that it had stopped.
        let stdout = shop.stdout();
        let stopped = stdout
            .iter()
            .position(|line| *line == format!("meshctl: {name} stopped cleanly"))
            .unwrap_or_else(|| panic!("{name} did not stop cleanly:\n{output}"));
        assert!(last < stopped, "{output}");
    }
}

#[test]
fn a_service_that_cannot_exit_is_killed_after_its_grace_period() {
    let mut shop = Shop::start(&[
        ("SHUTDOWN_DRAIN_DELAY_SECS", "0"),
        ("SHUTDOWN_GRACE_PERIOD_SECS", "1"),
    ]);
    let catalog = shop.children["catalog"];
    // Stopped, the catalog cannot act on SIGTERM; only SIGKILL ends it.
    shop.signal_child("catalog", Signal::SIGSTOP);
    let sent = Instant::now();
    shop.signal(Signal::SIGTERM);
    let status = shop.wait_exit(Duration::from_secs(30));
    let took = sent.elapsed();
    let output = shop.output();

    assert!(!status.success(), "meshctl exited {status}:\n{output}");
    // Drain delay 0 + grace period 1 s + the 5 s margin.
    assert!(
        output.contains("meshctl: catalog did not exit within 6s of SIGTERM; killed it (SIGKILL)"),
        "{output}"
    );
    assert!(took >= Duration::from_secs(6), "killed after {took:?}");
    assert!(
        output.contains("meshctl: inventory stopped cleanly"),
        "{output}"
    );
    assert!(gone(catalog), "catalog (pid {catalog}) is still there");
    // A service that dies while meshctl stops stays dead.
    assert!(!output.contains("restarting"), "{output}");
}

#[test]
fn a_second_signal_kills_every_service_left_at_once() {
    // The default grace period, 20 s: a kill sooner than that is the second signal's.
    let mut shop = Shop::start(&[]);
    let catalog = shop.children["catalog"];
    shop.signal_child("catalog", Signal::SIGSTOP);
    let sent = Instant::now();
    shop.signal(Signal::SIGTERM);
    // meshctl is stopping: the service that can exit has.
    shop.wait_for_line("meshctl: inventory stopped cleanly", "");
    shop.signal(Signal::SIGINT);
    let status = shop.wait_exit(Duration::from_secs(10));
    let took = sent.elapsed();
    let output = shop.output();

    assert!(!status.success(), "meshctl exited {status}:\n{output}");
    assert!(took < Duration::from_secs(15), "stopped after {took:?}");
    assert!(
        output.contains("meshctl: SIGINT again; killing the services still running (SIGKILL)"),
        "{output}"
    );
    assert!(
        output.contains("meshctl: catalog killed (SIGKILL)"),
        "{output}"
    );
    assert!(gone(catalog), "catalog (pid {catalog}) is still there");
    // A service that dies while meshctl stops stays dead.
    assert!(!output.contains("restarting"), "{output}");
}
