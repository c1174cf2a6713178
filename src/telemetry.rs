//! Logs and traces, set up once per process.
//!
//! - Logs: JSON lines when stdout is not a terminal (what a cluster's log pipeline wants),
//!   text on a terminal; `RUST_LOG` filters; `LOG_FORMAT` overrides the choice.
//! - Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans go through OpenTelemetry and
//!   are exported over OTLP/gRPC, and each outgoing call carries the current span as its
//!   parent; the SDK reads the other standard variables (`OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_TRACES_SAMPLER`, ...). Without it, trace headers are forwarded as they came
//!   (see `context.rs`), so the mesh's own spans still join into one trace, and no
//!   propagator runs per call.
//! - Logs over OTLP too, when an endpoint is set (`OTEL_LOGS_EXPORTER=none` keeps them on
//!   stdout only): the same lines, with the same `RUST_LOG` filter, each with the trace and
//!   span it was logged in. A cluster's collector receives them like the spans, so no
//!   node agent reading the pods' files (and the hostPath it needs) is required.

mod b3;

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{
    KeyValue, propagation::TextMapCompositePropagator, trace::TracerProvider as _,
};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::{
    Resource, logs::SdkLoggerProvider, propagation::TraceContextPropagator,
    trace::SdkTracerProvider,
};

pub use b3::B3Propagator;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::{FilterExt, LevelFilter},
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::{
    Error, Result,
    config::{LogFormat, TelemetryConfig},
};

/// Flushes and stops trace and log export when dropped, so the last spans and lines are not
/// lost on exit.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // The subscriber may be gone by now; stderr is what is left.
        if let Some(Err(error)) = self.provider.as_ref().map(SdkTracerProvider::shutdown) {
            eprintln!("trace export did not shut down cleanly: {error}");
        }
        if let Some(Err(error)) = self.logger.as_ref().map(SdkLoggerProvider::shutdown) {
            eprintln!("log export did not shut down cleanly: {error}");
        }
    }
}

/// Whether this process exports its own spans: set once, by [`init`].
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported, so trace headers are written from the current span rather
/// than forwarded as they came (see `context.rs`).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Installs the global subscriber and propagator for `service` at `version`.
pub fn init(service: &str, version: &str, config: &TelemetryConfig) -> Result<TelemetryGuard> {
    // W3C last, so that when a call carries both, `traceparent` is the parent that counts.
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(B3Propagator),
        Box::new(TraceContextPropagator::new()),
    ]));

    // Spans go through OpenTelemetry only when they are exported: building them costs
    // about 8% of a call (docs/benchmarks.md), and without an exporter the trace headers
    // are forwarded as they came, which is all the mesh needs.
    let resource = resource(service, version, config);
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(resource.clone(), endpoint)?),
        None => None,
    };
    let logger = match &config.otlp_logs_endpoint {
        Some(endpoint) => Some(logger_provider(resource, endpoint)?),
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers(service, config, provider.as_ref(), logger.as_ref())?)
        .try_init()
        .map_err(|e| Error::Telemetry(e.to_string()))?;

    if let Some(endpoint) = &config.otlp_endpoint {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(%endpoint, "exporting traces over otlp");
    }
    if let Some(endpoint) = &config.otlp_logs_endpoint {
        tracing::info!(%endpoint, "exporting logs over otlp");
    }
    Ok(TelemetryGuard { provider, logger })
}

/// A layer of this process's subscriber.
type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The layers this process uses, and only those. (A `None` option would count as a layer
/// without a filter, one that wants every span and event: every `trace!` of h2 and hyper
/// would then be built and handed round, only for each layer's filter to drop it, and a span
/// no layer records would still become the current one, hiding its parent from the trace
/// headers of the calls made inside it.)
fn layers(
    service: &str,
    config: &TelemetryConfig,
    provider: Option<&SdkTracerProvider>,
    logger: Option<&SdkLoggerProvider>,
) -> Result<Vec<BoxedLayer>> {
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
            // Every span the line was logged in, with its fields: a line about an order
            // carries the order id and correlation id of the event or call it belongs to.
            .with_span_list(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_ansi(terminal).boxed()
    };
    let mut layers = vec![logs.with_filter(log_filter(config)?).boxed()];

    if let Some(provider) = provider {
        // Every INFO span, however quiet RUST_LOG keeps the logs, and every span RUST_LOG
        // turns on besides (the read handlers' DEBUG spans under RUST_LOG=debug): a span
        // that exists is one OpenTelemetry knows, so the current span is always the
        // parent an outgoing call names. Beyond INFO, not the exporter's own crates (their
        // spans wrap connections, never a handler's code, and would export the export).
        let spans = LevelFilter::INFO.or(without_exporter_crates(log_filter(config)?)?);
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service.to_owned()))
                .with_filter(spans)
                .boxed(),
        );
    }

    if let Some(logger) = logger {
        // Not the exporter's own crates: a line they log about an export would be
        // exported in turn. Their lines still reach stdout.
        let filter = without_exporter_crates(log_filter(config)?)?;
        layers.push(
            OpenTelemetryTracingBridge::new(logger)
                .with_filter(filter)
                .boxed(),
        );
    }
    Ok(layers)
}

/// `filter` with the crates an OTLP export runs on turned off, for what is exported.
fn without_exporter_crates(filter: EnvFilter) -> Result<EnvFilter> {
    [
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "tonic",
        "h2",
        "hyper",
        "tower",
    ]
    .into_iter()
    .try_fold(filter, |filter, target| {
        Ok(filter.add_directive(directive(&format!("{target}=off"))?))
    })
}

/// `RUST_LOG`'s filter. async-nats logs every message it reads at TRACE, payload and all:
/// card tokens and addresses. Capped at DEBUG, whatever RUST_LOG asks for.
fn log_filter(config: &TelemetryConfig) -> Result<EnvFilter> {
    let filter =
        EnvFilter::try_new(&config.log_filter).map_err(|e| Error::Telemetry(e.to_string()))?;
    Ok(filter.add_directive(directive("async_nats=debug")?))
}

fn directive(text: &str) -> Result<tracing_subscriber::filter::Directive> {
    text.parse()
        .map_err(|e: tracing_subscriber::filter::ParseError| Error::Telemetry(e.to_string()))
}

/// What every exported span and line says of its origin.
fn resource(service: &str, version: &str, config: &TelemetryConfig) -> Resource {
    Resource::builder()
        .with_attribute(KeyValue::new("service.version", version.to_owned()))
        .with_service_name(
            config
                .otel_service_name
                .clone()
                .unwrap_or_else(|| service.to_owned()),
        )
        .build()
}

fn tracer_provider(resource: Resource, endpoint: &str) -> Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_owned())
        .build()
        .map_err(|e| Error::Telemetry(format!("OTLP exporter: {e}")))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

fn logger_provider(resource: Resource, endpoint: &str) -> Result<SdkLoggerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_owned())
        .build()
        .map_err(|e| Error::Telemetry(format!("OTLP log exporter: {e}")))?;
    Ok(SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::*;

    fn config(log_filter: &str) -> TelemetryConfig {
        TelemetryConfig {
            log_format: LogFormat::Text,
            log_filter: log_filter.into(),
            otlp_endpoint: None,
            otlp_logs_endpoint: None,
            otel_service_name: None,
        }
    }

    fn with_layers<T>(layers: Vec<BoxedLayer>, run: impl FnOnce() -> T) -> T {
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layers), run)
    }

    #[test]
    fn what_no_layer_wants_is_never_built() {
        let layers = layers("test", &config("info"), None, None).unwrap();
        with_layers(layers, || {
            assert!(tracing::debug_span!("handler").is_disabled());
            assert!(!tracing::enabled!(target: "h2::codec", tracing::Level::TRACE));
            assert!(!tracing::info_span!("grpc.server").is_disabled());
        });
    }

    #[test]
    fn every_span_that_exists_is_one_opentelemetry_knows() {
        // No exporter: the spans are still made, with real ids, which is what is checked.
        let provider = SdkTracerProvider::builder().build();
        for log_filter in ["warn", "info", "debug"] {
            let layers = layers("test", &config(log_filter), Some(&provider), None).unwrap();
            with_layers(layers, || {
                let server = tracing::info_span!("grpc.server");
                let _server = server.enter();
                let handler = tracing::debug_span!("handler");
                let _handler = handler.enter();
                let current = tracing::Span::current().context();
                assert!(
                    current.span().span_context().is_valid(),
                    "RUST_LOG={log_filter}: the current span has no trace context"
                );
                assert_eq!(
                    handler.is_disabled(),
                    log_filter != "debug",
                    "RUST_LOG={log_filter}"
                );
            });
        }
    }
}
