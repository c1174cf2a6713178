//! A rolling restart loses no call: two catalog replicas serve a steady stream of calls
//! from a real client; one gets SIGTERM with a drain delay. The client drops it when its
//! health watch says NOT_SERVING (as a load balancer drops an endpoint that turned unready),
//! the replica finishes what it was given and exits 0, and not one call fails.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use meshmart::proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use nix::sys::signal::Signal;
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

mod support;

const CALLERS: usize = 8;

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[derive(Default)]
struct Tally {
    by_a: AtomicUsize,
    by_b: AtomicUsize,
    failed: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_drain_delay_fails_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let (_inventory, inventory) =
        support::serve("inventory", &dir.path().join("inventory"), &[], false).await;
    let (mut a, a_addr) = support::serve(
        "catalog",
        &dir.path().join("a"),
        &[
            ("INVENTORY_ADDR", &inventory),
            ("SERVICE_VERSION", "a"),
            ("SHUTDOWN_DRAIN_DELAY_SECS", "2"),
        ],
        false,
    )
    .await;
    let (_b, b_addr) = support::serve(
        "catalog",
        &dir.path().join("b"),
        &[("INVENTORY_ADDR", &inventory), ("SERVICE_VERSION", "b")],
        false,
    )
    .await;
    let replicas = [
        CatalogServiceClient::new(channel(&a_addr).await),
        CatalogServiceClient::new(channel(&b_addr).await),
    ];

    // The "load balancer": drops replica a once its health watch says NOT_SERVING.
    let a_dropped = Arc::new(AtomicBool::new(false));
    let mut watch = HealthClient::new(channel(&a_addr).await)
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let watcher = {
        let a_dropped = a_dropped.clone();
        tokio::spawn(async move {
            while let Ok(Some(update)) = watch.message().await {
                if update.status() != ServingStatus::Serving {
                    a_dropped.store(true, Ordering::SeqCst);
                    return;
                }
            }
            // The watch ended without NOT_SERVING: stop sending there anyway.
            a_dropped.store(true, Ordering::SeqCst);
        })
    };

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (replicas, a_dropped, tally, stop) = (
                replicas.clone(),
                a_dropped.clone(),
                tally.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                // Bounded: at most this many calls per caller, whatever happens.
                for call in 0..100_000usize {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let target = if a_dropped.load(Ordering::SeqCst) {
                        1
                    } else {
                        (caller + call) % 2
                    };
                    let mut client = replicas[target].clone();
                    let mut request = tonic::Request::new(GetProductRequest {
                        name: "products/espresso-cup".into(),
                    });
                    request.set_timeout(Duration::from_secs(10));
                    match client.get_product(request).await {
                        Ok(reply) => {
                            let by = reply.metadata().get("x-meshmart-version").cloned();
                            match by.as_ref().and_then(|v| v.to_str().ok()) {
                                Some("a") => tally.by_a.fetch_add(1, Ordering::SeqCst),
                                _ => tally.by_b.fetch_add(1, Ordering::SeqCst),
                            };
                        }
                        Err(status) => {
                            eprintln!("call failed on replica {target}: {status:?}");
                            tally.failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    // Let the load settle on both replicas, then stop replica a as a kubelet would.
    for _ in 0..200 {
        if tally.by_a.load(Ordering::SeqCst) > 50 && tally.by_b.load(Ordering::SeqCst) > 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    support::send(&a, Signal::SIGTERM);
    let exited = tokio::time::timeout(Duration::from_secs(60), a.wait())
        .await
        .expect("replica a did not stop")
        .unwrap();
    // Calls keep flowing to b for a moment after a is gone.
    let after = tally.by_b.load(Ordering::SeqCst);
    for _ in 0..100 {
        if tally.by_b.load(Ordering::SeqCst) > after + 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    watcher.await.unwrap();

    assert!(exited.success(), "replica a: {exited}");
    assert_eq!(tally.failed.load(Ordering::SeqCst), 0, "failed calls");
    assert!(tally.by_a.load(Ordering::SeqCst) > 0);
    assert!(tally.by_b.load(Ordering::SeqCst) > after);
}
