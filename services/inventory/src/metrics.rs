//! What only the inventory knows: how reservations turn out, how many units they hold, and
//! how many hold stock now (sampled from the database, so every replica tells the same).

use std::time::Duration;

use meshmart::metrics::OutcomeCounter;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::store::Store;

/// How often the active reservations are counted: the outbox lag's period, a cheap count
/// on an indexed state, and dashboards scrape every 15 to 30 s.
pub(crate) const ACTIVE_SAMPLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// ReserveStock calls by outcome: `reserved`, `replayed` (a retry of a known id),
    /// `insufficient_stock`.
    pub(crate) reservations: OutcomeCounter,
    /// Units newly held by reservations.
    pub(crate) reserved_units: Counter,
    /// Reservations released because they expired.
    pub(crate) reservations_expired: Counter,
    /// Reservations holding stock: neither committed, released nor expired.
    pub(crate) reservations_active: Gauge,
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
        registry.register(
            "inventory_reservations_active",
            "Reservations holding stock: neither committed, released nor expired",
            metrics.reservations_active.clone(),
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

    /// Counts the active reservations every [`ACTIVE_SAMPLE`] until `stopping`. A scrape
    /// cannot wait for the database, so the gauge holds the last count.
    pub(crate) async fn sample_active(self, store: Store, stopping: meshmart::shutdown::Signal) {
        let mut samples = meshmart::shutdown::Periodic::new(ACTIVE_SAMPLE, stopping);
        while samples.next().await {
            match store.count_active_reservations().await {
                Ok(active) => {
                    self.reservations_active.set(active);
                }
                Err(error) => tracing::warn!(%error, "cannot count active reservations"),
            }
        }
    }
}
