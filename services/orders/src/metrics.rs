//! What only the orders service knows: how placing orders goes, where orders move, what
//! the consumer does with the flow's events, and how far behind its outbox is.

use std::time::Duration;

use meshmart::{events::outbox::Outbox, metrics::OutcomeCounter};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
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
    /// Milliseconds the oldest unpublished event has waited in the outbox, sampled.
    outbox_lag_ms: Gauge,
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
        registry.register(
            "orders_outbox_lag_ms",
            "How long the oldest unpublished event has waited in the outbox, in milliseconds",
            metrics.outbox_lag_ms.clone(),
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

    /// Samples the outbox lag every `every` until `stopping`. A scrape cannot wait for the
    /// database, so the gauge holds the last sample: at most `every` old.
    pub(crate) async fn sample_outbox_lag(
        self,
        outbox: Outbox,
        every: Duration,
        stopping: meshmart::shutdown::Signal,
    ) {
        let mut samples = meshmart::shutdown::Periodic::new(every, stopping);
        while samples.next().await {
            match outbox.lag_ms().await {
                Ok(lag) => {
                    self.outbox_lag_ms.set(lag);
                }
                Err(error) => tracing::debug!(%error, "cannot sample the outbox lag"),
            }
        }
    }
}
