//! What only notifications knows: how many messages of each kind it wrote.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::store::Kind;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    /// `order_placed`, `payment_declined`, ...
    kind: &'static str,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Notifications written, by kind (a redelivered event writes none, so is not counted).
    written: Family<KindLabels, Counter>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "notifications_written",
            "Notifications written to customers, by kind",
            metrics.written.clone(),
        );
        metrics
    }

    pub(crate) fn written(&self, kind: Kind) {
        self.written
            .get_or_create(&KindLabels { kind: kind.label() })
            .inc();
    }
}
