//! What only the orchestrator knows, sampled rather than counted, so every replica reports
//! the same truth: sagas by state (from the database) and dead letters per consumer group
//! (from the bus).

use std::{collections::BTreeSet, time::Duration};

use meshmart::events::{Bus, EventBus};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{saga::State, store::Store};

/// How often the gauges are sampled: cheap reads, and dashboards scrape every 15 to 30 s.
const SAMPLE_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    sagas: Family<StateLabels, Gauge>,
    dead_letters: Family<ConsumerLabels, Gauge>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "orchestrator_sagas",
            "Sagas by state (AWAITING_* and COMPENSATING are the active ones)",
            metrics.sagas.clone(),
        );
        registry.register(
            "orchestrator_dead_letters",
            "Dead letters waiting on the event bus, per consumer group (up to 10000 read)",
            metrics.dead_letters.clone(),
        );
        metrics
    }

    /// Samples both gauges every [`SAMPLE_EVERY`] until `stopping`.
    pub(crate) async fn sample(self, store: Store, bus: Bus, stopping: meshmart::shutdown::Signal) {
        let mut samples = meshmart::shutdown::Periodic::new(SAMPLE_EVERY, stopping);
        let mut seen = BTreeSet::new();
        while samples.next().await {
            match store.count_by_state().await {
                Ok(counts) => {
                    for state in State::ALL {
                        let count = counts
                            .iter()
                            .find(|(s, _)| *s == state)
                            .map_or(0, |(_, count)| *count);
                        self.sagas
                            .get_or_create(&StateLabels {
                                state: state.as_str(),
                            })
                            .set(count);
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot count sagas for the metrics"),
            }
            match bus.dead_letters(None, crate::dead_letters::MAX_SCAN).await {
                Ok(letters) => {
                    for consumer in &seen {
                        self.dead_letters
                            .get_or_create(&ConsumerLabels {
                                consumer: String::clone(consumer),
                            })
                            .set(0);
                    }
                    for letter in letters {
                        seen.insert(letter.consumer.clone());
                        self.dead_letters
                            .get_or_create(&ConsumerLabels {
                                consumer: letter.consumer,
                            })
                            .inc();
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot count dead letters for the metrics"),
            }
        }
    }
}
