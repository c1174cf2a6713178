//! With trace export on, the catalog's own span sits in the caller's trace: the inventory
//! call carries the caller's trace id and the catalog's span as its parent. (Without
//! export, the headers are forwarded as they came: see fan_out.rs.)

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use meshmart::{
    config::{LogFormat, TelemetryConfig},
    proto::catalog::GetProductRequest,
    testing::{self, Backend},
};
use support::fake_inventory::FakeInventory;
use tonic::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_reaches_inventory_in_the_same_trace() {
    // Telemetry as every service sets it up, exporting to a collector that is not there
    // (export is not the point here: tests/otlp_export.rs in the root package shows it).
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let telemetry = meshmart::telemetry::init(
        "catalog",
        "v1",
        &TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "warn".into(),
            otlp_endpoint: Some(format!("http://{nowhere}")),
            otlp_logs_endpoint: None,
            otel_service_name: None,
        },
    )
    .unwrap();
    let fake = FakeInventory::default();
    let inventory = fake.clone().spawn().await;
    let mut shop = support::start_catalog(
        Backend::Sqlite,
        tempfile::tempdir().unwrap(),
        "trace",
        &inventory.endpoint(),
        testing::server_config(catalog::SERVICE),
    )
    .await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut request = Request::new(GetProductRequest {
        name: "products/espresso-cup".into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    // The caller's B3 headers, as Istio's sidecar would add them.
    request
        .metadata_mut()
        .insert("b3", format!("{trace_id}-{caller_span}-1").parse().unwrap());
    for (name, value) in [
        ("x-b3-traceid", trace_id),
        ("x-b3-spanid", caller_span),
        ("x-b3-parentspanid", "1111111111111111"),
        ("x-b3-sampled", "1"),
    ] {
        request.metadata_mut().insert(name, value.parse().unwrap());
    }
    shop.client.get_product(request).await.unwrap();

    let recorded = fake.recorded.lock().await;
    let traceparent = recorded.metadata[0]
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "same trace: {traceparent}");
    assert_ne!(
        parts[2], caller_span,
        "a new span, the catalog's: {traceparent}"
    );
    assert_eq!(parts[3], "01", "sampled, as the caller decided");
    // The B3 headers name the same trace and the same parent as traceparent.
    let header = |name: &str| {
        recorded.metadata[0]
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(header("x-b3-traceid").as_deref(), Some(trace_id));
    assert_eq!(header("x-b3-spanid").as_deref(), Some(parts[2]));
    assert_eq!(header("x-b3-sampled").as_deref(), Some("1"));
    assert_eq!(header("x-b3-parentspanid"), None, "the caller's, stale");
    assert_eq!(header("b3"), Some(format!("{trace_id}-{}-1", parts[2])));
    drop(recorded);
    shop.stop().await;
    inventory.stop().await.unwrap();
    // Shutting the exporter down blocks; keep it off the runtime's workers.
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();
}
