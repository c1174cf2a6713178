//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported over OTLP/gRPC, with the
//! service's name and version on the resource. A fake collector on 127.0.0.1:0 receives them.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use meshmart::config::{LogFormat, TelemetryConfig};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.received.lock().await.push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn string_attribute(request: &ExportTraceServiceRequest, key: &str) -> Option<String> {
    let resource = request.resource_spans.first()?.resource.as_ref()?;
    resource
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let guard = meshmart::telemetry::init(
        "catalog",
        "v2",
        &TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "warn".into(),
            otlp_endpoint: Some(format!("http://{addr}")),
            otel_service_name: None,
        },
    )
    .unwrap();
    tracing::info_span!("checkout", order_id = "o-1").in_scope(|| {
        tracing::info!("inside the span");
    });
    // Dropping the guard flushes the batch exporter; it blocks, so not on a runtime worker.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    // Bounded wait for the export to land.
    for _ in 0..100 {
        if !collector.received.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = collector.received.lock().await;
    let request = received.first().expect("the collector received no spans");
    assert_eq!(
        string_attribute(request, "service.name").as_deref(),
        Some("catalog")
    );
    assert_eq!(
        string_attribute(request, "service.version").as_deref(),
        Some("v2")
    );
    let names: Vec<&str> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|span| span.name.as_str())
        .collect();
    assert!(names.contains(&"checkout"), "{names:?}");
}
