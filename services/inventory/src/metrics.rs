//! What only the inventory knows: how reservations turn out, and how many units they hold.

use meshmart::metrics::OutcomeCounter;
use prometheus_client::{metrics::counter::Counter, registry::Registry};

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// ReserveStock calls by outcome: `reserved`, `replayed` (a retry of a known id),
    /// `insufficient_stock`.
    pub(crate) reservations: OutcomeCounter,
    /// Units newly held by reservations.
    pub(crate) reserved_units: Counter,
    /// Reservations released because they expired.
    pub(crate) reservations_expired: Counter,
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
        registry.register(
            "inventory_reservations_expired",
            "Reservations whose stock went back because nobody committed or released them",
            metrics.reservations_expired.clone(),
        );
        metrics
    }

    pub(crate) fn reservation(&self, outcome: &'static str) {
        meshmart::metrics::count(&self.reservations, outcome);
    }

    /// Reservations that gave their stock back because nobody committed or released them.
    pub(crate) fn reservations_expired(&self, count: usize) {
        self.reservations_expired
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
}
