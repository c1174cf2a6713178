//! A crash between the commit of an order and the publishing of its events loses nothing:
//! the orders binary, whose test build has crash points (`fault-injection`, through the
//! dev-dependency on meshmart), aborts right after the commit (`orders.after_commit`);
//! nothing is on the bus yet; started again, its relay publishes the three events from the
//! outbox, and the caller's retry gets the order the first attempt placed, its stock held
//! once.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    process::{Child, Command, Stdio},
};

use meshmart::proto::{
    inventory::GetReservationRequest,
    orders::{State, order_service_client::OrderServiceClient},
};
use support::{Broker, PUBLISHED, Shop, WAIT, as_customer, cases, order_request, unique};

/// The orders binary as a child process, killed when dropped (a failed test leaves no
/// orphan).
struct Orders {
    child: Child,
    endpoint: String,
}

impl Drop for Orders {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary on `shop`'s database, bus and neighbours, and waits until it serves.
async fn spawn(shop: &Shop, crash_at: Option<&str>) -> Orders {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_orders"));
    command
        .env_clear()
        .env("GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", &shop.config.flow.database.url)
        .env("DATA_DIR", shop.dir.path())
        .env("CATALOG_ADDR", shop.catalog.endpoint())
        .env("INVENTORY_ADDR", shop.inventory.endpoint())
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Broker::JetStream(url) = &shop.broker {
        command.env("NATS_URL", url);
    }
    if let Some(point) = crash_at {
        command.env("MESHMART_CRASH_AT", point);
    }
    let orders = Orders {
        child: command.spawn().unwrap(),
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    meshmart::probe::wait_until_serving(&orders.endpoint, "", WAIT)
        .await
        .unwrap();
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_commit_publishes_on_restart_and_the_retry_gets_the_order() {
    for (backend, broker) in cases() {
        let name = format!("crash_{backend:?}").to_lowercase();
        let mut shop = support::start(backend, &broker, &name).await;
        // The in-process orders migrated the database; the binary takes over from here.
        shop.stop_orders().await;
        let customer = unique("crash-");
        let order_id = orders::order_id(&customer, "r-crash");
        let request = || {
            as_customer(
                &customer,
                order_request("r-crash", &[("travel-mug", 1)], "tok_visa_approved"),
            )
        };
        let mut observer = shop.observe(&PUBLISHED).await;

        let mut crashing = spawn(&shop, Some("orders.after_commit")).await;
        let mut client = OrderServiceClient::connect(crashing.endpoint.clone())
            .await
            .unwrap();
        let lost = client.create_order(request()).await;
        assert!(
            lost.is_err(),
            "{backend:?} {broker:?}: the process died mid-call: {lost:?}"
        );
        let status = crashing.child.wait().unwrap();
        assert_eq!(status.signal(), Some(6), "aborted (SIGABRT): {status:?}");
        let mut stderr = String::new();
        crashing
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            stderr.contains("crash point orders.after_commit"),
            "{stderr}"
        );
        // Committed, not published.
        observer.nothing_more_for(&order_id).await;

        let restarted = spawn(&shop, None).await;
        let events = observer.events_for(&order_id, 3).await;
        let mut subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        subjects.sort_unstable();
        assert_eq!(
            subjects,
            [
                "orders.created",
                "payments.requested",
                "shipments.requested"
            ]
        );
        let mut client = OrderServiceClient::connect(restarted.endpoint.clone())
            .await
            .unwrap();
        let order = client
            .create_order(request())
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap();
        assert_eq!(order.name, format!("orders/{order_id}"));
        assert_eq!(order.state(), State::Pending);
        assert_eq!(
            order.create_time.unwrap().seconds,
            events[0].metadata.event_time.unwrap().seconds,
            "the first attempt's order"
        );
        let reservation = shop
            .inventory_client
            .clone()
            .get_reservation(GetReservationRequest {
                reservation_id: order_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(reservation.items[0].quantity, 1, "held once");
        observer.nothing_more_for(&order_id).await;
        drop(restarted);
        shop.stop().await;
    }
}
