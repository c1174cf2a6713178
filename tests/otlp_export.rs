//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans and log lines are exported over OTLP/gRPC,
//! with the service's name and version on the resource, and each line with the trace and
//! span it was logged in. A fake collector on 127.0.0.1:0 receives them (the observability
//! tests send the whole shop's to a real one).

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use meshmart::config::{LogFormat, TelemetryConfig};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{
            ExportLogsServiceRequest, ExportLogsServiceResponse,
            logs_service_server::{LogsService, LogsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    logs::v1::LogRecord,
    resource::v1::Resource,
    trace::v1::Span,
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.spans.lock().await.push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.logs.lock().await.push(request.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

fn string(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    string(attributes.iter().find(|kv| kv.key == key)?.value.as_ref())
}

fn service(resource: Option<&Resource>) -> (Option<&str>, Option<&str>) {
    let attributes = resource.map_or(&[][..], |r| &r.attributes);
    (
        attribute(attributes, "service.name"),
        attribute(attributes, "service.version"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_logs_reach_an_otlp_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(LogsServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let guard = meshmart::telemetry::init(
        "catalog",
        "v2",
        &TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: "warn".into(),
            otlp_endpoint: Some(format!("http://{addr}")),
            otlp_logs_endpoint: Some(format!("http://{addr}")),
            otel_service_name: None,
        },
    )
    .unwrap();
    tracing::info_span!("checkout", order_id = "o-1").in_scope(|| {
        tracing::warn!(attempt = 2, "payment provider slow");
        // Below RUST_LOG's level: neither on stdout nor exported.
        tracing::info!("inside the span");
    });
    // Dropping the guard flushes the batch exporters; it blocks, so not on a runtime worker.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    // Bounded wait for both exports to land.
    for _ in 0..100 {
        if !collector.spans.lock().await.is_empty() && !collector.logs.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spans = collector.spans.lock().await;
    let request = spans.first().expect("the collector received no spans");
    let resource = request
        .resource_spans
        .first()
        .and_then(|r| r.resource.as_ref());
    assert_eq!(service(resource), (Some("catalog"), Some("v2")));
    let spans: Vec<&Span> = spans
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let checkout = spans
        .iter()
        .find(|span| span.name == "checkout")
        .unwrap_or_else(|| panic!("no checkout span in {spans:?}"));

    let logs = collector.logs.lock().await;
    let resource_logs: Vec<_> = logs.iter().flat_map(|r| &r.resource_logs).collect();
    assert_eq!(
        service(resource_logs.first().and_then(|r| r.resource.as_ref())),
        (Some("catalog"), Some("v2"))
    );
    let records: Vec<&LogRecord> = resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    let [line] = records[..] else {
        panic!("not one line exported: {records:?}");
    };
    assert_eq!(string(line.body.as_ref()), Some("payment provider slow"));
    assert_eq!(line.severity_text, "WARN");
    let attempt = line.attributes.iter().find(|kv| kv.key == "attempt");
    assert_eq!(
        attempt.and_then(|kv| kv.value.as_ref()?.value.clone()),
        Some(Value::IntValue(2))
    );
    // Logged inside the checkout span: the line names its trace and span.
    assert_eq!(line.trace_id, checkout.trace_id);
    assert_eq!(line.span_id, checkout.span_id);
}
