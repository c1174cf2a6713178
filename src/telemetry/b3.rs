//! Zipkin's B3 headers, written and read beside W3C `traceparent`.
//!
//! Istio's sidecars join spans by B3 (Zipkin) as well as W3C headers. A service that
//! exports its own spans must not forward the caller's B3 headers unchanged, or they
//! would name the caller's span as the parent while `traceparent` names this service's:
//! this propagator writes them from the same span as `traceparent`, in both the
//! single-header (`b3`) and the multi-header (`x-b3-*`) forms. Written here because the
//! only published one (opentelemetry-zipkin) brings a whole exporter with it.

use std::sync::LazyLock;

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator, text_map_propagator::FieldIter},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
};

const SINGLE: &str = "b3";
const TRACE_ID: &str = "x-b3-traceid";
const SPAN_ID: &str = "x-b3-spanid";
const PARENT_SPAN_ID: &str = "x-b3-parentspanid";
const SAMPLED: &str = "x-b3-sampled";
const FLAGS: &str = "x-b3-flags";

static FIELDS: LazyLock<[String; 6]> = LazyLock::new(|| {
    [SINGLE, TRACE_ID, SPAN_ID, PARENT_SPAN_ID, SAMPLED, FLAGS].map(str::to_owned)
});

/// The B3 propagator; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct B3Propagator;

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let context = span.span_context();
        if !context.is_valid() {
            return;
        }
        let trace_id = context.trace_id().to_string();
        let span_id = context.span_id().to_string();
        let sampled = if context.is_sampled() { "1" } else { "0" };
        injector.set(SINGLE, format!("{trace_id}-{span_id}-{sampled}"));
        injector.set(TRACE_ID, trace_id);
        injector.set(SPAN_ID, span_id);
        injector.set(SAMPLED, sampled.to_owned());
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extract_single(extractor).or_else(|| extract_multi(extractor)) {
            Some(remote) => cx.with_remote_span_context(remote),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(FIELDS.as_slice())
    }
}

/// `b3: {trace id}-{span id}[-{sampling}[-{parent span id}]]`.
fn extract_single(extractor: &dyn Extractor) -> Option<SpanContext> {
    let mut parts = extractor.get(SINGLE)?.split('-');
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let sampled = match parts.next() {
        None => None,
        Some("1" | "d") => Some(true),
        Some("0") => Some(false),
        Some(_) => return None,
    };
    span_context(trace_id, span_id, sampled)
}

fn extract_multi(extractor: &dyn Extractor) -> Option<SpanContext> {
    let debug = extractor.get(FLAGS) == Some("1");
    let sampled = match extractor.get(SAMPLED) {
        _ if debug => Some(true),
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(_) => return None,
    };
    span_context(extractor.get(TRACE_ID)?, extractor.get(SPAN_ID)?, sampled)
}

fn span_context(trace_id: &str, span_id: &str, sampled: Option<bool>) -> Option<SpanContext> {
    // B3 allows 64-bit trace ids; W3C wants 128 bits, left-padded with zeros.
    let valid_hex = |id: &str, lengths: &[usize]| {
        lengths.contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if !valid_hex(trace_id, &[16, 32]) || !valid_hex(span_id, &[16]) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    // No sampling decision: defer to this service's sampler by treating it as sampled,
    // as the W3C propagator does for its flags' default.
    let flags = if sampled.unwrap_or(true) {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    context.is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn writes_both_forms_from_one_span_and_reads_them_back() {
        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(remote.clone());
        let mut headers = HashMap::new();
        B3Propagator.inject_context(&cx, &mut headers);
        assert_eq!(
            headers[SINGLE],
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"
        );
        assert_eq!(headers[TRACE_ID], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(headers[SPAN_ID], "00f067aa0ba902b7");

        let read = B3Propagator.extract_with_context(&Context::new(), &headers);
        assert_eq!(read.span().span_context(), &remote);
        headers.remove(SINGLE);
        let read = B3Propagator.extract_with_context(&Context::new(), &headers);
        assert_eq!(read.span().span_context(), &remote);
    }

    #[test]
    fn rejects_what_is_not_b3() {
        for single in ["", "x", "abc-def", "4bf92f3577b34da6-00f067aa0ba902b7-2"] {
            let headers = HashMap::from([(SINGLE.to_owned(), single.to_owned())]);
            let read = B3Propagator.extract_with_context(&Context::new(), &headers);
            assert!(!read.span().span_context().is_valid(), "{single}");
        }
        let short = HashMap::from([(
            SINGLE.to_owned(),
            "4bf92f3577b34da6-00f067aa0ba902b7".to_owned(),
        )]);
        let read = B3Propagator.extract_with_context(&Context::new(), &short);
        assert!(read.span().span_context().is_valid());
    }
}
