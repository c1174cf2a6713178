//! The broker a service uses, chosen by its configuration: one type for the services to
//! hold, whichever broker is behind it.

use super::{
    Consumer, ConsumerConfig, DeadLetter, Delivery, EventBus, EventsConfig, Outgoing, Published,
    embedded::{EmbeddedBus, EmbeddedConsumer},
    jetstream::{JetStreamBus, JetStreamConsumer, JetStreamOptions},
};

/// NATS JetStream or the embedded log, as [`EventsConfig`] says.
#[derive(Debug, Clone)]
pub enum Bus {
    // Boxed: a JetStream connection's handle is far larger than the embedded log's, and a
    // service holds one bus for its life.
    JetStream(Box<JetStreamBus>),
    Embedded(EmbeddedBus),
}

/// A member of a consumer group on either broker.
#[derive(Debug)]
pub enum BusConsumer {
    // Boxed for the same reason: its pull stream is large, and a consumer lives long.
    JetStream(Box<JetStreamConsumer>),
    Embedded(EmbeddedConsumer),
}

/// Connects to the broker `config` names: JetStream with the shop's streams, or the
/// embedded log's file (created when new).
pub async fn connect(config: &EventsConfig) -> crate::Result<Bus> {
    let bus = match config {
        EventsConfig::JetStream { url } => Bus::JetStream(Box::new(
            JetStreamBus::connect(url, JetStreamOptions::default()).await?,
        )),
        EventsConfig::Embedded(embedded) => Bus::Embedded(EmbeddedBus::open(embedded).await?),
    };
    tracing::info!(broker = config.broker(), "event bus ready");
    Ok(bus)
}

impl EventBus for Bus {
    type Consumer = BusConsumer;

    async fn publish(&self, event: Outgoing) -> crate::Result<Published> {
        match self {
            Self::JetStream(bus) => bus.publish(event).await,
            Self::Embedded(bus) => bus.publish(event).await,
        }
    }

    async fn consumer(&self, config: &ConsumerConfig) -> crate::Result<BusConsumer> {
        Ok(match self {
            Self::JetStream(bus) => BusConsumer::JetStream(Box::new(bus.consumer(config).await?)),
            Self::Embedded(bus) => BusConsumer::Embedded(bus.consumer(config).await?),
        })
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        delivery: Delivery,
        error: &str,
    ) -> crate::Result<()> {
        match self {
            Self::JetStream(bus) => bus.dead_letter(consumer, delivery, error).await,
            Self::Embedded(bus) => bus.dead_letter(consumer, delivery, error).await,
        }
    }

    async fn dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> crate::Result<Vec<DeadLetter>> {
        match self {
            Self::JetStream(bus) => bus.dead_letters(consumer, limit).await,
            Self::Embedded(bus) => bus.dead_letters(consumer, limit).await,
        }
    }

    async fn find_dead_letter(&self, id: u64) -> crate::Result<Option<DeadLetter>> {
        match self {
            Self::JetStream(bus) => bus.find_dead_letter(id).await,
            Self::Embedded(bus) => bus.find_dead_letter(id).await,
        }
    }

    async fn replay(&self, id: u64) -> crate::Result<bool> {
        match self {
            Self::JetStream(bus) => bus.replay(id).await,
            Self::Embedded(bus) => bus.replay(id).await,
        }
    }
}

impl Consumer for BusConsumer {
    async fn next(&mut self) -> crate::Result<Delivery> {
        match self {
            Self::JetStream(consumer) => consumer.next().await,
            Self::Embedded(consumer) => consumer.next().await,
        }
    }
}
