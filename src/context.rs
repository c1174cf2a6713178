//! The context of a call, carried from the request a service is serving to every call it
//! makes downstream: the caller's deadline, and the trace headers.
//!
//! The mesh owns retries and timeouts; what it cannot do is know that an outgoing call
//! belongs to an incoming one. So every server extracts the context ([`ServerContextLayer`])
//! and every client injects it ([`ClientContextLayer`]):
//! - `grpc-timeout` becomes a deadline; downstream calls get the time that is left, so a
//!   caller that gave up is not served by work that continues below it;
//! - the trace headers are forwarded as they came (W3C `traceparent`/`tracestate`, and the
//!   `x-request-id` and B3 headers Istio's Envoy joins spans by), which is all the mesh
//!   needs to stitch its sidecars' spans into one trace;
//! - when this service exports its own spans (OpenTelemetry is on), `traceparent` is
//!   replaced by the current span's, so the service's spans sit between the caller's and
//!   the callee's.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Headers forwarded unchanged from an incoming call to every outgoing one, as Istio asks
/// of applications so that Envoy's spans join one trace.
const FORWARDED_HEADERS: &[&str] = &[
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
];

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// What an incoming call hands on to the calls it makes.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    deadline: Option<Instant>,
    forwarded: Vec<(HeaderName, HeaderValue)>,
}

tokio::task_local! {
    static CURRENT: CallContext;
}

impl CallContext {
    fn from_headers(headers: &HeaderMap) -> Self {
        let deadline = headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout);
        let forwarded = FORWARDED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?;
                Some((HeaderName::from_static(name), value.clone()))
            })
            .collect();
        Self {
            deadline,
            forwarded,
        }
    }

    /// The deadline of the call being served, if its caller set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The context of the call this task is serving, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    fn inject(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.forwarded {
            headers.entry(name.clone()).or_insert_with(|| value.clone());
        }
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            // Keep a deadline the caller set that is even shorter than what is left.
            let own = headers
                .get(GRPC_TIMEOUT)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout);
            let timeout = own.map_or(left, |own| own.min(left));
            if let Ok(value) = HeaderValue::from_str(&format_grpc_timeout(timeout)) {
                headers.insert(GRPC_TIMEOUT, value);
            }
        }
    }
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H M S m u n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats a duration as the most precise `grpc-timeout` value that fits in 8 digits.
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    if nanos <= MAX {
        // Zero would read as "no time at all" to some peers and as invalid to others.
        return format!("{}n", nanos.max(1));
    }
    let micros = timeout.as_micros();
    if micros <= MAX {
        return format!("{micros}u");
    }
    let millis = timeout.as_millis();
    if millis <= MAX {
        return format!("{millis}m");
    }
    let secs = u128::from(timeout.as_secs());
    if secs <= MAX {
        return format!("{secs}S");
    }
    format!("{}H", (secs / 3600).min(MAX))
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Server side: opens a span for the call, parented by the caller's trace context, and
/// serves the call with its [`CallContext`] in scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerContextLayer;

impl<S> Layer<S> for ServerContextLayer {
    type Service = ServerContext<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerContext { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ServerContext<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ServerContext<S>
where
    S: Service<http::Request<B>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let headers = request.headers();
        let context = CallContext::from_headers(headers);
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(headers))
        });
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
        );
        // Only fails when no OpenTelemetry layer is installed, and then there is nothing to join.
        let _ = span.set_parent(parent);
        let call = self.inner.call(request);
        Box::pin(CURRENT.scope(context, call).instrument(span))
    }
}

/// Client side: injects the [`CallContext`] of the call being served, and the trace
/// context of the current span, into an outgoing call. Adds nothing else: no retries,
/// no timeouts of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientContextLayer;

impl<S> Layer<S> for ClientContextLayer {
    type Service = ClientContext<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientContext { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ClientContext<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ClientContext<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(context) = CallContext::current() {
            context.inject(request.headers_mut());
        }
        // Writes nothing unless OpenTelemetry is on and the current span is recorded.
        let trace = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&trace, &mut HeaderInjector(request.headers_mut()));
        });
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_round_trips() {
        for (text, duration) in [
            ("1n", Duration::from_nanos(1)),
            ("250m", Duration::from_millis(250)),
            ("30S", Duration::from_secs(30)),
            ("2M", Duration::from_secs(120)),
            ("1H", Duration::from_secs(3600)),
            ("99999999u", Duration::from_micros(99_999_999)),
        ] {
            assert_eq!(parse_grpc_timeout(text), Some(duration), "{text}");
        }
        for bad in ["", "S", "10", "123456789S", "-1S", "1.5S", "10x"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
        for duration in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(3 * 3600),
            Duration::from_secs(u64::MAX / 4),
        ] {
            let text = format_grpc_timeout(duration);
            let parsed = parse_grpc_timeout(&text).unwrap();
            assert!(text.len() <= 9, "{text}");
            // Never longer than asked, and precise to the unit chosen.
            assert!(parsed <= duration.max(Duration::from_nanos(1)), "{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn outgoing_calls_get_the_time_that_is_left() {
        let mut incoming = HeaderMap::new();
        incoming.insert(GRPC_TIMEOUT, HeaderValue::from_static("10S"));
        incoming.insert("x-request-id", HeaderValue::from_static("abc"));
        incoming.insert("authorization", HeaderValue::from_static("secret"));
        let context = CallContext::from_headers(&incoming);
        tokio::time::advance(Duration::from_secs(4)).await;

        let mut outgoing = HeaderMap::new();
        context.inject(&mut outgoing);
        assert_eq!(outgoing.get(GRPC_TIMEOUT).unwrap(), "6000000u");
        assert_eq!(outgoing.get("x-request-id").unwrap(), "abc");
        // Credentials belong to the hop, not to the call chain.
        assert!(outgoing.get("authorization").is_none());

        // A shorter deadline set by the caller of the client wins.
        let mut outgoing = HeaderMap::new();
        outgoing.insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        context.inject(&mut outgoing);
        assert_eq!(outgoing.get(GRPC_TIMEOUT).unwrap(), "1000000u");
    }

    #[test]
    fn no_deadline_means_none_is_sent() {
        let context = CallContext::from_headers(&HeaderMap::new());
        let mut outgoing = HeaderMap::new();
        context.inject(&mut outgoing);
        assert!(outgoing.is_empty());
    }
}
