//! What only the inventory knows: how reservations turn out, and how many units they hold.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// ReserveStock calls by outcome: `reserved`, `replayed` (a retry of a known id),
    /// `insufficient_stock`.
    pub(crate) reservations: Family<OutcomeLabels, Counter>,
    /// Units newly held by reservations.
    pub(crate) reserved_units: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "inventory_reservations",
            "ReserveStock calls by outcome",
            metrics.reservations.clone(),
        );
        registry.register(
            "inventory_reserved_units",
            "Units newly held by reservations",
            metrics.reserved_units.clone(),
        );
        metrics
    }

    pub(crate) fn reservation(&self, outcome: &'static str) {
        self.reservations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
