//! Channels to other services.
//!
//! A channel carries the call context (deadline, trace) and nothing else: no retries, no
//! timeouts, no load balancing and no TLS, because in the cluster the sidecar does all of
//! that for every call, configured by the VirtualServices and DestinationRules.

use tonic::transport::{Channel, Endpoint};

use crate::context::{ClientContext, ClientContextLayer};

/// A channel to another service, propagating the context of the call being served.
pub type MeshChannel = ClientContext<Channel>;

/// A channel that connects on first use, so that a service starts (and reports SERVING for
/// what it can do) without waiting for its dependencies to be up.
pub fn connect_lazy(endpoint: &str) -> Result<MeshChannel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?.connect_lazy();
    Ok(tower_layer::Layer::layer(&ClientContextLayer, channel))
}
