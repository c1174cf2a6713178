//! The context of a call, carried from the request a service is serving to every call it
//! makes downstream: the caller's deadline, and the trace headers.
//!
//! The mesh owns retries and timeouts; what it cannot do is know that an outgoing call
//! belongs to an incoming one. So every server extracts the context ([`ServerContextLayer`])
//! and every client injects it ([`ClientContextLayer`]):
//! - `grpc-timeout` becomes a deadline; downstream calls get the time that is left, so a
//!   caller that gave up is not served by work that continues below it;
//!   a call whose deadline passes is answered DEADLINE_EXCEEDED (never CANCELLED, which
//!   a route might retry), and a downstream call whose deadline has already passed fails
//!   at once instead of being sent;
//! - the trace headers are forwarded as they came (W3C `traceparent`/`tracestate`, and the
//!   `x-request-id` and B3 headers Istio's Envoy joins spans by), which is all the mesh
//!   needs to stitch its sidecars' spans into one trace, at no cost per call;
//! - when this service exports its own spans (OpenTelemetry is on), the trace headers are
//!   written from the current span instead, W3C and B3 alike, so the service's spans sit
//!   between the caller's and the callee's and both header families name the same parent.

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
/// of applications so that Envoy's spans join one trace. When the service exports its own
/// spans, only the first (`x-request-id`) is forwarded: the trace headers after it are
/// written from the current span instead.
const FORWARDED_HEADERS: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
];

/// How many of [`FORWARDED_HEADERS`] are forwarded even when spans are exported.
const FORWARDED_WHEN_EXPORTING: usize = 1;

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
    fn from_headers(headers: &HeaderMap, exporting: bool) -> Self {
        let deadline = headers
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|timeout| Instant::now() + timeout);
        let forward = if exporting {
            &FORWARDED_HEADERS[..FORWARDED_WHEN_EXPORTING]
        } else {
            FORWARDED_HEADERS
        };
        let forwarded = forward
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

    /// Writes the context into an outgoing call's headers; fails when the deadline has
    /// already passed, since the callee could do nothing useful with no time at all.
    fn inject(&self, headers: &mut HeaderMap) -> Result<(), DeadlinePassed> {
        for (name, value) in &self.forwarded {
            headers.entry(name.clone()).or_insert_with(|| value.clone());
        }
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DeadlinePassed);
            }
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
        Ok(())
    }
}

/// The deadline of the call being served passed before a downstream call was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeadlinePassed;

/// Parses a `grpc-timeout` value: at most 8 ASCII digits and a unit (`H M S m u n`).
/// Anything else, whatever its bytes, is `None`.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (&unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: cannot overflow, even in hours.
    let amount = digits
        .iter()
        .fold(0u64, |amount, digit| amount * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
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

/// The trace headers an event should travel with, as a downstream call made here would get
/// them: those of the call being served, or the current span's when spans are exported.
/// They go into the broker message's headers, so every consumer joins the same trace.
pub fn event_headers() -> crate::events::Headers {
    let mut headers = HeaderMap::new();
    if let Some(context) = CallContext::current() {
        for (name, value) in &context.forwarded {
            headers.insert(name.clone(), value.clone());
        }
    }
    if crate::telemetry::exporting() {
        let trace = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&trace, &mut HeaderInjector(&mut headers));
        });
    }
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// Runs `handle` as the handling of one event, with the trace context the event carried:
/// in a span parented by the producer's when spans are exported, and with the headers in
/// scope to be forwarded by every call it makes, as a gRPC server's handler would. An event
/// has no deadline: a delivery's limit is its consumer's `ack_wait`.
pub async fn within_event<F: Future>(
    headers: &crate::events::Headers,
    span: tracing::Span,
    handle: F,
) -> F::Output {
    let map: HeaderMap = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect();
    let exporting = crate::telemetry::exporting();
    if exporting {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(&map))
        });
        // Only fails when no OpenTelemetry layer is installed, and then there is nothing to join.
        let _ = span.set_parent(parent);
    }
    let mut context = CallContext::from_headers(&map, exporting);
    context.deadline = None;
    CURRENT.scope(context, handle).instrument(span).await
}

/// Server side: opens a span for the call, parented by the caller's trace context when
/// spans are exported, serves the call with its [`CallContext`] in scope, and answers
/// DEADLINE_EXCEEDED (dropping the handler) once the caller's deadline has passed.
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

impl<S, B, ResBody> Service<http::Request<B>> for ServerContext<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let exporting = crate::telemetry::exporting();
        let headers = request.headers();
        let context = CallContext::from_headers(headers, exporting);
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
        if exporting {
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(headers))
            });
            // Only fails when no OpenTelemetry layer is installed, and then there is nothing to join.
            let _ = span.set_parent(parent);
        }
        let deadline = context.deadline;
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            // Gone before it started: the handler would work for nobody.
            return Box::pin(std::future::ready(Ok(deadline_exceeded())));
        }
        let call = CURRENT.scope(context, self.inner.call(request));
        let Some(deadline) = deadline else {
            return Box::pin(call.instrument(span));
        };
        Box::pin(
            async move {
                match tokio::time::timeout_at(deadline, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::debug!("deadline passed; the call is abandoned");
                        Ok(deadline_exceeded())
                    }
                }
            }
            .instrument(span),
        )
    }
}

fn deadline_exceeded<B: Default>() -> http::Response<B> {
    tonic::Status::deadline_exceeded("the deadline passed before the call was done").into_http()
}

/// Client side: injects the [`CallContext`] of the call being served, and the trace
/// context of the current span when spans are exported, into an outgoing call. Adds nothing
/// else: no retries, no timeouts of its own. A call whose deadline has already passed is
/// not sent: it fails at once with DEADLINE_EXCEEDED.
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
    S::Error: Into<tonic::codegen::StdError>,
{
    type Response = S::Response;
    type Error = tonic::codegen::StdError;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(context) = CallContext::current()
            && context.inject(request.headers_mut()).is_err()
        {
            return ClientFuture::Expired {
                status: Some(tonic::Status::deadline_exceeded(
                    "the deadline passed before this downstream call could be made",
                )),
            };
        }
        if crate::telemetry::exporting() {
            let trace = tracing::Span::current().context();
            opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&trace, &mut HeaderInjector(request.headers_mut()));
            });
        }
        ClientFuture::Sent {
            future: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The outcome of [`ClientContext::call`]: the call sent, or refused before sending.
    #[project = ClientFutureProjection]
    pub enum ClientFuture<F> {
        Sent { #[pin] future: F },
        Expired { status: Option<tonic::Status> },
    }
}

/// tonic's channel enforces the propagated `grpc-timeout` itself, and reports its expiry
/// as an error that becomes CANCELLED; it is the deadline passing, so say so.
fn deadline_if_timed_out(error: tonic::codegen::StdError) -> tonic::codegen::StdError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(current) = cause {
        if current.is::<tonic::TimeoutExpired>() {
            return Box::new(tonic::Status::deadline_exceeded(
                "the deadline passed while waiting for a downstream answer",
            ));
        }
        cause = current.source();
    }
    error
}

impl<F, T, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<tonic::codegen::StdError>,
{
    type Output = Result<T, tonic::codegen::StdError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ClientFutureProjection::Sent { future } => future
                .poll(cx)
                .map_err(|error| deadline_if_timed_out(error.into())),
            ClientFutureProjection::Expired { status } => {
                Poll::Ready(Err(Box::new(status.take().unwrap_or_else(|| {
                    tonic::Status::deadline_exceeded("deadline passed")
                }))))
            }
        }
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
        for bad in [
            "",
            "S",
            "10",
            "123456789S",
            "-1S",
            "1.5S",
            "10x",
            "1é",
            "é",
            "1\u{0}",
        ] {
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
        let context = CallContext::from_headers(&incoming, false);
        tokio::time::advance(Duration::from_secs(4)).await;

        let mut outgoing = HeaderMap::new();
        context.inject(&mut outgoing).unwrap();
        assert_eq!(outgoing.get(GRPC_TIMEOUT).unwrap(), "6000000u");
        assert_eq!(outgoing.get("x-request-id").unwrap(), "abc");
        // Credentials belong to the hop, not to the call chain.
        assert!(outgoing.get("authorization").is_none());

        // A shorter deadline set by the caller of the client wins.
        let mut outgoing = HeaderMap::new();
        outgoing.insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        context.inject(&mut outgoing).unwrap();
        assert_eq!(outgoing.get(GRPC_TIMEOUT).unwrap(), "1000000u");

        // Once the deadline has passed, nothing is sent.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(context.inject(&mut HeaderMap::new()), Err(DeadlinePassed));
    }

    #[test]
    fn exporting_services_forward_only_the_request_id() {
        let mut incoming = HeaderMap::new();
        incoming.insert("x-request-id", HeaderValue::from_static("abc"));
        incoming.insert("x-b3-traceid", HeaderValue::from_static("0af7651916cd43dd"));
        incoming.insert("traceparent", HeaderValue::from_static("00-x-y-01"));
        let mut outgoing = HeaderMap::new();
        CallContext::from_headers(&incoming, true)
            .inject(&mut outgoing)
            .unwrap();
        assert_eq!(outgoing.len(), 1);
        assert_eq!(outgoing.get("x-request-id").unwrap(), "abc");
    }

    /// A downstream service that counts the calls that reach it.
    #[derive(Clone, Default)]
    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Service<http::Request<()>> for Counting {
        type Response = http::Response<()>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Ok(http::Response::new(())))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_downstream_call_after_the_deadline_fails_at_once_unsent() {
        let mut incoming = HeaderMap::new();
        incoming.insert(GRPC_TIMEOUT, HeaderValue::from_static("1S"));
        let context = CallContext::from_headers(&incoming, false);
        let downstream = Counting::default();
        let mut client = ClientContextLayer.layer(downstream.clone());

        let in_time = CURRENT.scope(context.clone(), async {
            client.call(http::Request::new(())).await
        });
        assert!(in_time.await.is_ok());
        tokio::time::advance(Duration::from_secs(2)).await;
        let late = CURRENT.scope(context, async { client.call(http::Request::new(())).await });
        let error = late.await.unwrap_err();
        let status = error.downcast_ref::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(downstream.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn no_deadline_means_none_is_sent() {
        let context = CallContext::from_headers(&HeaderMap::new(), false);
        let mut outgoing = HeaderMap::new();
        context.inject(&mut outgoing).unwrap();
        assert!(outgoing.is_empty());
    }

    #[tokio::test]
    async fn an_event_carries_the_trace_of_the_call_that_made_it_to_its_consumer() {
        const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
        incoming.insert("grpc-timeout", HeaderValue::from_static("5S"));
        let context = CallContext::from_headers(&incoming, false);

        let headers = CURRENT.scope(context, async { event_headers() }).await;
        assert_eq!(
            headers.get("traceparent").map(String::as_str),
            Some(TRACEPARENT)
        );
        assert!(!headers.contains_key("grpc-timeout"), "{headers:?}");

        // The consumer's calls forward it, and have no deadline of the producer's.
        let mut outgoing = HeaderMap::new();
        within_event(&headers, tracing::Span::none(), async {
            CallContext::current()
                .unwrap()
                .inject(&mut outgoing)
                .unwrap();
        })
        .await;
        assert_eq!(outgoing.get("traceparent").unwrap(), TRACEPARENT);
        assert!(outgoing.get("grpc-timeout").is_none());
    }

    #[test]
    fn outside_any_call_an_event_has_no_trace_headers() {
        assert!(event_headers().is_empty());
    }
}
