//! What only the orders service knows: how placing orders goes, where orders move, what
//! the consumer does with the flow's events (the outbox lag is the shared runtime's).

use meshmart::metrics::OutcomeCounter;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use crate::store::State;

/// The one label of the transitions counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: &'static str,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    /// Orders that reached each state (PENDING: placed). The rate of COMPLETED against
    /// PENDING is the flow's throughput; their difference, the orders in flight.
    transitions: Family<StateLabels, Counter>,
    /// CreateOrder calls by outcome: `placed`, `replayed` (a retry of a placed order),
    /// `out_of_stock`, `unknown_product`.
    placements: OutcomeCounter,
    /// Flow events by what they did: `transition`, `history_only`, `unchanged` (late or
    /// final), `repeated` (applied before), `unknown_order` (dead-lettered).
    events: OutcomeCounter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "orders_transitions",
            "Orders that reached each state",
            metrics.transitions.clone(),
        );
        registry.register(
            "orders_placements",
            "CreateOrder calls by outcome",
            metrics.placements.clone(),
        );
        registry.register(
            "orders_events",
            "Flow events consumed, by what they did to their order",
            metrics.events.clone(),
        );
        metrics
    }

    pub(crate) fn transition(&self, state: State) {
        self.transitions
            .get_or_create(&StateLabels {
                state: state.as_str(),
            })
            .inc();
    }

    pub(crate) fn placement(&self, outcome: &'static str) {
        meshmart::metrics::count(&self.placements, outcome);
    }

    pub(crate) fn event(&self, outcome: &'static str) {
        meshmart::metrics::count(&self.events, outcome);
    }
}
