//! What only payments knows: how charges turn out, and how many refunds it made.

use meshmart::metrics::OutcomeCounter;
use prometheus_client::{metrics::counter::Counter, registry::Registry};

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Charge attempts by outcome: `approved`, `declined`, `failed` (given up after the
    /// last attempt), `transient` (an attempt failed; payments tries again).
    pub(crate) payment_outcomes: OutcomeCounter,
    /// Refunds made (a repeated request for the same charge is not counted).
    pub(crate) refunds: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "payments_payment_outcomes",
            "Charge attempts by outcome",
            metrics.payment_outcomes.clone(),
        );
        registry.register("payments_refunds", "Refunds made", metrics.refunds.clone());
        metrics
    }

    pub(crate) fn payment_outcome(&self, outcome: &'static str) {
        meshmart::metrics::count(&self.payment_outcomes, outcome);
    }
}
