//! What only the catalog knows: products created, how stock lookups went, and what the
//! product cache did.

use meshmart::metrics::{OutcomeCounter, OutcomeLabels};
use prometheus_client::{metrics::counter::Counter, registry::Registry};

use crate::cache::Lookups;

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Products created (retries of a known request_id are not counted).
    pub(crate) products_created: Counter,
    /// Batched stock lookups against inventory, by outcome: `ok` or `error`.
    pub(crate) stock_lookups: OutcomeCounter,
    /// Product lookups by what the cache did: `hit`, `miss` or `unsure`.
    pub(crate) product_lookups: OutcomeCounter,
    /// `stock_lookups`' two series, looked up once rather than on every call.
    stock_ok: Counter,
    stock_error: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let mut metrics = Self::default();
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
        registry.register(
            "catalog_product_cache_lookups",
            "Product lookups by what the cache did: hit, miss, or unsure (read from the database because the cache had not heard from it lately)",
            metrics.product_lookups.clone(),
        );
        metrics.stock_ok = series(&metrics.stock_lookups, "ok");
        metrics.stock_error = series(&metrics.stock_lookups, "error");
        metrics
    }

    /// The cache's counters, each looked up once here rather than on every call.
    pub(crate) fn cache_lookups(&self) -> Lookups {
        Lookups {
            hit: series(&self.product_lookups, "hit"),
            miss: series(&self.product_lookups, "miss"),
            unsure: series(&self.product_lookups, "unsure"),
        }
    }

    /// Counts a batched stock lookup: `true` when inventory answered.
    pub(crate) fn stock_lookup(&self, answered: bool) {
        if answered {
            self.stock_ok.inc();
        } else {
            self.stock_error.inc();
        }
    }
}

/// One outcome's counter of `family`, to keep and count on.
fn series(family: &OutcomeCounter, outcome: &'static str) -> Counter {
    family.get_or_create(&OutcomeLabels { outcome }).clone()
}
