//! What only fulfillment knows: how shipments end.

use meshmart::metrics::OutcomeCounter;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Shipments by how they ended: `shipped`, `failed` (the carrier refused),
    /// `cancelled` (the order failed before it was paid).
    pub(crate) shipments: OutcomeCounter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "fulfillment_shipments",
            "Shipments by how they ended",
            metrics.shipments.clone(),
        );
        metrics
    }

    pub(crate) fn shipment(&self, outcome: &'static str) {
        meshmart::metrics::count(&self.shipments, outcome);
    }
}
