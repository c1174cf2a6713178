//! What only the catalog knows: products created, and how stock lookups went.

use meshmart::metrics::OutcomeCounter;
use prometheus_client::{metrics::counter::Counter, registry::Registry};

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Products created (retries of a known request_id are not counted).
    pub(crate) products_created: Counter,
    /// Batched stock lookups against inventory, by outcome: `ok` or `error`.
    pub(crate) stock_lookups: OutcomeCounter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "catalog_products_created",
            "Products created",
            metrics.products_created.clone(),
        );
        registry.register(
            "catalog_stock_lookups",
            "Batched stock lookups against inventory, by outcome",
            metrics.stock_lookups.clone(),
        );
        metrics
    }

    pub(crate) fn stock_lookup(&self, outcome: &'static str) {
        meshmart::metrics::count(&self.stock_lookups, outcome);
    }
}
