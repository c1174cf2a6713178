//! The transactional outbox: an event is written in the same transaction as the change it
//! reports, and a relay beside the service has the broker store it afterwards.
//!
//! So an event is published if and only if its change committed, whatever crashes when: a
//! process that dies between its commit and the publish publishes on restart (its rows are
//! still unpublished). Every replica relays; two relaying one row publish it twice under one
//! message id, and the broker keeps one. A row is marked published after the broker has
//! stored it, and removed after [`KEEP_PUBLISHED`].

use std::{sync::Arc, time::Duration};

use prometheus_client::metrics::gauge::Gauge;
use sqlx::AnyConnection;
use tokio::sync::Notify;

use super::{EventBus, Headers, Outgoing};
use crate::db::{Pools, now_millis};

/// The gauge of [`Outbox::lag_ms`], as `ServiceHost::relay_beside` registers it.
pub const LAG_METRIC: &str = "meshmart_outbox_lag_ms";

/// How often the outbox lag is sampled for [`LAG_METRIC`]: a scrape cannot wait for the
/// database, so the gauge holds the last sample, at most this old.
pub const LAG_SAMPLE: Duration = Duration::from_secs(5);

/// How often the relay looks for rows when nothing woke it: the bound on how late an event
/// written by another replica (or before a restart) goes out. Events this process writes
/// wake the relay at once ([`Outbox::committed`]).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How many rows one pass publishes before it looks again.
const BATCH: i64 = 100;

/// How long published rows stay, for an operator to look at; then a pass removes them.
pub const KEEP_PUBLISHED: Duration = Duration::from_secs(60 * 60);

/// How long the relay waits after the broker failed, before it tries again; doubled up
/// to [`MAX_BACKOFF`] while it keeps failing.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A service's outbox: where its transactions write events, and what wakes its relay.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: Pools,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(db: Pools) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Writes `event` into the outbox within the caller's transaction `tx`; it is published
    /// once that commits. Call [`Outbox::committed`] after the commit.
    pub async fn add(tx: &mut AnyConnection, event: &Outgoing) -> Result<(), sqlx::Error> {
        let headers = serde_json::to_string(&event.headers).unwrap_or_else(|_| "{}".to_owned());
        sqlx::query(
            "INSERT INTO event_outbox (event_id, subject, headers, payload, create_time_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&event.message_id)
        .bind(&event.subject)
        .bind(headers)
        .bind(event.payload.to_vec())
        .bind(now_millis())
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Tells this process's relay that a transaction with events committed.
    pub fn committed(&self) {
        self.wake.notify_one();
    }

    /// How old the oldest unpublished event is, in milliseconds (0 when none waits): the
    /// outbox lag a dashboard shows.
    pub async fn lag_ms(&self) -> Result<i64, sqlx::Error> {
        let (oldest,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(create_time_ms) FROM event_outbox WHERE publish_time_ms IS NULL",
        )
        .fetch_one(self.db.read())
        .await?;
        Ok(oldest.map_or(0, |oldest| (now_millis() - oldest).max(0)))
    }

    /// Sets `gauge` to [`Outbox::lag_ms`] every [`LAG_SAMPLE`] until `stopping`.
    pub async fn sample_lag(self, gauge: Gauge, stopping: crate::shutdown::Signal) {
        let mut samples = crate::shutdown::Periodic::new(LAG_SAMPLE, stopping);
        while samples.next().await {
            match self.lag_ms().await {
                Ok(lag) => {
                    gauge.set(lag);
                }
                Err(error) => tracing::debug!(%error, "cannot sample the outbox lag"),
            }
        }
    }

    /// Publishes what is waiting until `stopping` completes, and then what is left in one
    /// last pass. Run it beside the service (`ServiceHost::run_beside`).
    pub async fn relay<B: EventBus>(self, bus: B, mut stopping: crate::shutdown::Signal) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let wait = match self.publish_waiting(&bus).await {
                Ok(more) => {
                    backoff = FIRST_BACKOFF;
                    if more { Duration::ZERO } else { POLL_INTERVAL }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "cannot relay events");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                () = &mut stopping => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Err(error) = self.publish_waiting(&bus).await {
            tracing::warn!(%error, "events left in the outbox; they go out after the restart");
        }
    }

    /// One pass: publishes up to [`BATCH`] rows, oldest first, and removes old published
    /// ones. `true` when more rows may be waiting.
    async fn publish_waiting<B: EventBus>(&self, bus: &B) -> crate::Result<bool> {
        let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT event_id, subject, headers, payload FROM event_outbox \
             WHERE publish_time_ms IS NULL ORDER BY create_time_ms, event_id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(self.db.read())
        .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) == BATCH;
        for (event_id, subject, headers, payload) in rows {
            let headers: Headers = serde_json::from_str(&headers).unwrap_or_default();
            bus.publish(Outgoing {
                subject,
                message_id: event_id.clone(),
                headers,
                payload: payload.into(),
            })
            .await?;
            crate::fault::crash_point("outbox.after_publish");
            sqlx::query("UPDATE event_outbox SET publish_time_ms = $1 WHERE event_id = $2")
                .bind(now_millis())
                .bind(&event_id)
                .execute(self.db.write())
                .await?;
        }
        let keep_ms = i64::try_from(KEEP_PUBLISHED.as_millis()).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM event_outbox WHERE publish_time_ms < $1")
            .bind(now_millis() - keep_ms)
            .execute(self.db.write())
            .await?;
        Ok(more)
    }
}
