//! An OTLP/gRPC trace collector on the harness's bridge ([`HOST_IP`]:[`OTLP_PORT`]), where
//! the services (their `OTEL_EXPORTER_OTLP_ENDPOINT`, from the chart's
//! `tracing.otlpEndpoint`) and the proxies (the mesh config's `otel` tracing provider)
//! send their spans: the test's own receiving end of the protocol, keeping each span's
//! trace id, its resource's `service.name` and its name.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::Mutex;

use super::HOST_IP;
use crate::{Error, io};

/// The collector's port (OTLP/gRPC's).
pub const OTLP_PORT: u16 = 4317;

/// One span as the collector received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The trace id, in lowercase hex (as `traceparent` writes it).
    pub trace_id: String,
    /// Its resource's `service.name`: a service's own name, or a proxy's
    /// `<app>.<namespace>`.
    pub service: String,
    pub name: String,
}

/// The spans received so far; the server stops with the runtime.
#[derive(Debug, Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    /// Binds [`HOST_IP`]:[`OTLP_PORT`] (the bridge must be up) and serves there.
    pub async fn start() -> Result<Collector, Error> {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind((HOST_IP, OTLP_PORT))
            .await
            .map_err(io(format!("bind {HOST_IP}:{OTLP_PORT}")))?;
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(async move {
            if let Err(e) = server.await {
                eprintln!("mesh: the trace collector stopped: {e}");
            }
        });
        Ok(collector)
    }

    /// Every span received so far.
    pub async fn spans(&self) -> Vec<Span> {
        self.spans.lock().await.clone()
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Span {
                        trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        service: service.clone(),
                        name: span.name,
                    });
                }
            }
        }
        self.spans.lock().await.extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
