//! How every service in the order flow starts alike: its consumer group checked, the
//! broker connected, its outbox opened, and its host made, before its own wiring.

use prometheus_client::registry::Registry;

use super::ServiceHost;
use crate::{
    Result,
    config::FlowConfig,
    db::Pools,
    events::{Bus, ConsumerConfig, EventHandler, outbox::Outbox},
};

/// A flow service's host with the bus, the outbox and the group it will run beside. The
/// service registers its metrics and builds its handler from these, then finishes with
/// [`FlowHost::relay_and_consume`] (or [`FlowHost::consume`]) and adds its gRPC services.
#[derive(Debug)]
pub struct FlowHost {
    pub host: ServiceHost,
    /// The broker; clones share its connection.
    pub bus: Bus,
    /// Where the service's transactions write the events they publish.
    pub outbox: Outbox,
    /// The consumer group, checked.
    pub consumer: ConsumerConfig,
}

impl FlowHost {
    /// Checks the group before anything else (a bad setting should stop the start, not
    /// the group later), connects to the broker, and opens the outbox in `db`, the
    /// service's own database.
    pub async fn open(config: &FlowConfig, db: &Pools) -> Result<Self> {
        config.consumer.validate()?;
        let bus = crate::events::connect(&config.events).await?;
        Ok(Self {
            host: ServiceHost::new(&config.server),
            bus,
            outbox: Outbox::new(db.clone()),
            consumer: config.consumer.clone(),
        })
    }

    /// Where the service registers its own metrics.
    pub fn registry(&mut self) -> &mut Registry {
        self.host.registry()
    }

    /// The host relaying the outbox (and sampling its lag) and running the group, every
    /// delivery handed to `handler`, beside the service.
    pub fn relay_and_consume<H: EventHandler>(self, handler: H) -> ServiceHost {
        self.host
            .relay_beside(self.outbox, self.bus.clone())
            .consume_beside(self.bus, self.consumer, handler)
    }

    /// The host running the group only: for a service that publishes nothing, so whose
    /// outbox stays empty and needs no relay.
    pub fn consume<H: EventHandler>(self, handler: H) -> ServiceHost {
        self.host.consume_beside(self.bus, self.consumer, handler)
    }
}
