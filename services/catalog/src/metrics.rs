//! What only the catalog knows: products created, and how stock lookups went.

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
    /// Products created (retries of a known request_id are not counted).
    pub(crate) products_created: Counter,
    /// Batched stock lookups against inventory, by outcome: `ok` or `error`.
    pub(crate) stock_lookups: Family<OutcomeLabels, Counter>,
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
        self.stock_lookups
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
