//! Logs and traces, set up once per process.
//!
//! - Logs: JSON lines when stdout is not a terminal (what a cluster's log pipeline wants),
//!   text on a terminal; `RUST_LOG` filters; `LOG_FORMAT` overrides the choice.
//! - Traces: spans go through OpenTelemetry, always, so that trace context flows from every
//!   incoming call to every outgoing one. They are exported over OTLP/gRPC only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the SDK reads the other standard variables
//!   (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, ...).

use std::io::IsTerminal;

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::{
    Error, Result,
    config::{LogFormat, TelemetryConfig},
};

/// Flushes and stops trace export when dropped, so the last spans are not lost on exit.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            // The subscriber may be gone by now; stderr is what is left.
            eprintln!("trace export did not shut down cleanly: {error}");
        }
    }
}

/// Installs the global subscriber and propagator for `service` at `version`.
pub fn init(service: &str, version: &str, config: &TelemetryConfig) -> Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let mut resource =
        Resource::builder().with_attribute(KeyValue::new("service.version", version.to_owned()));
    resource = resource.with_service_name(
        config
            .otel_service_name
            .clone()
            .unwrap_or_else(|| service.to_owned()),
    );
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| Error::Telemetry(format!("OTLP exporter: {e}")))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer(service.to_owned());

    let terminal = std::io::stdout().is_terminal();
    let json = match config.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_ansi(terminal).boxed()
    };

    // RUST_LOG filters the logs only: spans for traces are kept at INFO whatever the log
    // level, or a quiet service would stop propagating trace context.
    let log_filter =
        EnvFilter::try_new(&config.log_filter).map_err(|e| Error::Telemetry(e.to_string()))?;
    tracing_subscriber::registry()
        .with(logs.with_filter(log_filter))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO),
        )
        .try_init()
        .map_err(|e| Error::Telemetry(e.to_string()))?;

    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over otlp");
    }
    Ok(TelemetryGuard { provider })
}
