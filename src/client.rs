//! Channels to other services, and the one rule for what a service answers when a call it
//! made to another one failed.
//!
//! A channel carries the call context (deadline, trace) and nothing else: no retries, no
//! timeouts, no load balancing and no TLS, because in the cluster the sidecar does all of
//! that for every call, configured by the VirtualServices and DestinationRules.

use tonic::{
    Code, Status,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::context::{ClientContext, ClientContextLayer};

/// A channel to another service, propagating the context of the call being served.
pub type MeshChannel = ClientContext<Channel>;

/// A channel that connects on first use, so that a service starts (and reports SERVING for
/// what it can do) without waiting for its dependencies to be up.
pub fn connect_lazy(endpoint: &str) -> Result<MeshChannel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?.connect_lazy();
    Ok(tower_layer::Layer::layer(&ClientContextLayer, channel))
}

/// The response header that Envoy's router never retries (its documented meaning is "rate
/// limited upstream: do not retry"). A service sets it on an UNAVAILABLE that it passes on
/// from a downstream call, which that call's own route has already retried.
pub const NO_RETRY_HEADER: &str = "x-envoy-ratelimited";

/// What a service answers for a downstream call to `callee` that failed with `status`,
/// when its own domain has no better answer (a service maps the codes it expects, such as
/// inventory's FAILED_PRECONDITION for missing stock, before it gets here).
///
/// Retries happen at one layer, the hop next to the failure (docs/architecture.md):
/// - DEADLINE_EXCEEDED and CANCELLED are passed on as they are: the caller's time is gone,
///   or the caller left, and no route retries either;
/// - UNAVAILABLE and RESOURCE_EXHAUSTED become UNAVAILABLE (the caller may try again
///   later), marked with [`NO_RETRY_HEADER`] so that the caller's route does not retry
///   what the callee's route already did;
/// - anything else means this service asked wrongly or the callee broke: INTERNAL, logged
///   here with the callee's code and message, which stay out of the reply.
pub fn downstream_failure(callee: &str, status: &Status) -> Status {
    match status.code() {
        code @ (Code::DeadlineExceeded | Code::Cancelled) => {
            Status::new(code, format!("{callee}: {}", status.message()))
        }
        Code::Unavailable | Code::ResourceExhausted => {
            let mut reply = Status::unavailable(format!("{callee} is unavailable"));
            reply
                .metadata_mut()
                .insert(NO_RETRY_HEADER, MetadataValue::from_static("true"));
            reply
        }
        code => {
            tracing::error!(
                callee,
                ?code,
                error = status.message(),
                "downstream call failed"
            );
            Status::internal(format!("a call to {callee} failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_downstream_failures() {
        for (code, answered, no_retry) in [
            (Code::DeadlineExceeded, Code::DeadlineExceeded, false),
            (Code::Cancelled, Code::Cancelled, false),
            (Code::Unavailable, Code::Unavailable, true),
            (Code::ResourceExhausted, Code::Unavailable, true),
            (Code::InvalidArgument, Code::Internal, false),
            (Code::NotFound, Code::Internal, false),
            (Code::Internal, Code::Internal, false),
            (Code::Unimplemented, Code::Internal, false),
        ] {
            let reply = downstream_failure("inventory", &Status::new(code, "secret detail"));
            assert_eq!(reply.code(), answered, "{code:?}");
            assert_eq!(
                reply.metadata().get(NO_RETRY_HEADER).is_some(),
                no_retry,
                "{code:?}"
            );
            if answered == Code::Internal {
                assert!(!reply.message().contains("secret"), "{code:?}");
            }
        }
    }
}
