//! What every service offers probes and tools, seen from outside: health per service,
//! server reflection v1 listing exactly what is served (v1alpha is driven by grpcurl in
//! meshctl's tests), and business metrics in Prometheus text on their own port.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    proto::inventory::{ReservationItem, ReserveStockRequest},
    testing::Backend,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_reflection_and_metrics() {
    let mut running = support::start(Backend::Sqlite, "probes").await;
    let channel = Channel::from_shared(running.server.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();

    for service in ["", "meshmart.inventory.v1.InventoryService"] {
        let reply = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            reply.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Reflection lists exactly what this port serves, not every contract of the shop.
    assert_eq!(
        meshmart::testing::reflected_services(channel).await,
        meshmart::testing::served_services(&["meshmart.inventory.v1.InventoryService"])
    );

    running
        .client
        .reserve_stock(ReserveStockRequest {
            reservation_id: "m-1".into(),
            items: vec![ReservationItem {
                product_id: "travel-mug".into(),
                quantity: 3,
            }],
        })
        .await
        .unwrap();
    let metrics = http_get(running.server.metrics_addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        r#"meshmart_build_info{service="inventory",version="v1""#,
        r#"inventory_reservations_total{outcome="reserved"} 1"#,
        "inventory_reserved_units_total 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    running.server.stop().await.unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
