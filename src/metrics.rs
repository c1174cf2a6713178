//! Business metrics in Prometheus text format, served on their own port.
//!
//! Request rate, errors and latency per method come from the sidecar in the cluster, so
//! they are not counted again here: services register what only they know (stock
//! reserved, products created, ...).

use std::sync::Arc;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, info::Info},
    registry::Registry,
};
use tokio::net::TcpListener;

/// The one label of a counter of outcomes: `reserved`, `replayed`, `ok`, `error`, ...
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// A counter with one series per outcome.
pub type OutcomeCounter = Family<OutcomeLabels, Counter>;

/// Counts one `outcome`.
pub fn count(counter: &OutcomeCounter, outcome: &'static str) {
    counter.get_or_create(&OutcomeLabels { outcome }).inc();
}

/// Creates a registry holding the `meshmart_build` info metric for this service.
pub fn registry(service: &str, version: &str) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "meshmart_build",
        "The service and version serving",
        Info::new(vec![
            ("service".to_owned(), service.to_owned()),
            ("version".to_owned(), version.to_owned()),
            (
                "crate_version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            ),
        ]),
    );
    registry
}

/// Serves `GET /metrics` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(registry));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
