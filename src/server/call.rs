//! What the server does around every call, whichever service it is for: count it while it
//! runs (so a drain knows what it would abandon), refuse request messages above the size
//! limit with RESOURCE_EXHAUSTED, name the method in an UNIMPLEMENTED answer, and say which
//! service and version answered.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http::{HeaderValue, Uri};
use http_body::Frame;
use tonic::{Status, body::Body};
use tower_layer::Layer;
use tower_service::Service;

use super::{SERVICE_HEADER, VERSION_HEADER};
use crate::config::ServerConfig;

/// The number of calls being served.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn enter(&self) -> CallGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        CallGuard(self.0.clone())
    }
}

/// One call in flight, until dropped: with the response body, once it has been sent.
#[derive(Debug)]
struct CallGuard(Arc<AtomicUsize>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct CallLayer {
    version: HeaderValue,
    service: HeaderValue,
    max_message_bytes: usize,
    in_flight: InFlight,
}

impl CallLayer {
    pub fn new(config: &ServerConfig, in_flight: InFlight) -> Self {
        Self {
            version: header_value(&config.version),
            service: header_value(config.service.name),
            max_message_bytes: config.max_message_bytes,
            in_flight,
        }
    }
}

fn header_value(value: &str) -> HeaderValue {
    // Config validation allows only visible ASCII here, so this cannot fail in practice.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallService<S> {
    inner: S,
    layer: CallLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for CallService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = self.layer.in_flight.enter();
        // A cheap clone (reference-counted bytes), kept to name the method if it is unknown.
        let uri = request.uri().clone();
        let limit = self.layer.max_message_bytes;
        let request = request.map(|body| Body::new(LimitedMessages::new(body, limit)));
        let call = self.inner.call(request);
        let (version, service) = (self.layer.version.clone(), self.layer.service.clone());
        Box::pin(async move {
            let mut response = call.await?;
            let headers = response.headers_mut();
            name_unknown_method(headers, &uri);
            headers.insert(VERSION_HEADER, version);
            headers.insert(SERVICE_HEADER, service);
            Ok(response.map(|body| Body::new(Counted { body, guard })))
        })
    }
}

/// tonic answers a method it does not know with UNIMPLEMENTED and no message; say which.
fn name_unknown_method(headers: &mut http::HeaderMap, uri: &Uri) {
    let unimplemented = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"12");
    let has_message = headers
        .get("grpc-message")
        .is_some_and(|message| !message.is_empty());
    if unimplemented && !has_message {
        let message = format!("unknown method {}", percent_encode(uri.path()));
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
    }
}

/// The percent-encoding that `grpc-message` requires: anything outside visible ASCII, and `%`.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pin_project_lite::pin_project! {
    /// A response body that holds its call's [`CallGuard`] until it is sent (or dropped).
    struct Counted<B> {
        #[pin]
        body: B,
        guard: CallGuard,
    }
}

impl<B: http_body::Body> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with RESOURCE_EXHAUSTED as soon as a gRPC message's
    /// length prefix says it is larger than the limit, before the message is buffered.
    /// (tonic's own decoder limit answers OUT_OF_RANGE, which says "the value is wrong"
    /// rather than "it is too large for this server".)
    struct LimitedMessages<B> {
        #[pin]
        body: B,
        limit: usize,
        scanner: FrameScanner,
    }
}

impl<B> LimitedMessages<B> {
    fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            limit,
            scanner: FrameScanner::default(),
        }
    }
}

impl<B> http_body::Body for LimitedMessages<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        match this.body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Some(size) = this.scanner.scan(data.chunk(), *this.limit)
                {
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "request message of {size} bytes is larger than the limit of {} bytes",
                        this.limit
                    )))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(Status::from_error(error.into()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Follows the gRPC framing (a 1-byte flag and a 4-byte big-endian length, then the
/// message) across body chunks, looking only at the prefixes.
#[derive(Debug, Default)]
struct FrameScanner {
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl FrameScanner {
    /// Scans one chunk; returns the size of the first message above `limit`, if any.
    fn scan(&mut self, mut chunk: &[u8], limit: usize) -> Option<usize> {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(chunk.len());
                self.remaining -= skip;
                chunk = &chunk[skip..];
                continue;
            }
            let take = (5 - self.prefix_len).min(chunk.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&chunk[..take]);
            self.prefix_len += take;
            chunk = &chunk[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let size = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
                if size > limit {
                    return Some(size);
                }
                self.remaining = size;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(sizes: &[u32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for size in sizes {
            bytes.push(0);
            bytes.extend_from_slice(&size.to_be_bytes());
            bytes.extend(std::iter::repeat_n(7u8, *size as usize));
        }
        bytes
    }

    #[test]
    fn the_scanner_finds_an_oversized_message_across_any_chunking() {
        let bytes = framed(&[3, 0, 10, 11, 2]);
        for chunk in [1, 2, 3, 5, 7, bytes.len()] {
            let mut scanner = FrameScanner::default();
            let found = bytes
                .chunks(chunk)
                .find_map(|piece| scanner.scan(piece, 10));
            assert_eq!(found, Some(11), "chunks of {chunk}");
        }
        let mut scanner = FrameScanner::default();
        assert_eq!(scanner.scan(&framed(&[10, 10, 0]), 10), None);
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(percent_encode("/a.B/C"), "/a.B/C");
        assert_eq!(percent_encode("50% é"), "50%25 %C3%A9");
    }
}
