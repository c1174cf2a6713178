//! A member of a group (claims, and the wait between them) and its answers (ack, nak,
//! dead letter), each guarded by the claim's lease token.

use std::{sync::Arc, time::Duration};

use sqlx::SqlitePool;

use super::{EmbeddedBus, decode_headers, to_u32, watch::Shared};
use crate::{
    Result,
    db::now_millis,
    events::{BoxFuture, Consumer, ConsumerConfig, Delivery, Reply},
};

/// A member of a durable group in the embedded log.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    bus: EmbeddedBus,
    name: String,
    ack_wait_ms: i64,
}

/// The longest a consumer waits without looking for itself, in case the watcher's wake-up
/// does not come (it cannot read the file, say): slow, then, but never stuck.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl EmbeddedConsumer {
    pub(super) fn new(bus: EmbeddedBus, config: &ConsumerConfig) -> Self {
        Self {
            bus,
            name: config.name.clone(),
            ack_wait_ms: millis(config.ack_wait),
        }
    }

    /// When the group's next delivery may be claimed: now or earlier if one is due, later
    /// for a nakked one or a lease still running, `None` if the group has nothing pending.
    async fn next_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(available_ms) FROM deliveries WHERE consumer = ? AND state = 'pending'",
        )
        .bind(&self.name)
        .fetch_one(&self.bus.read)
        .await?)
    }

    /// Claims the group's oldest due delivery, if another member has not just taken it.
    async fn claim(&self, now: i64) -> Result<Option<Delivery>> {
        // One statement, so one write transaction: no other member, in this process or
        // another, can claim the same row between the choice and the update.
        let claimed: Option<(i64, i64, i64)> = sqlx::query_as(
            "UPDATE deliveries SET attempts = attempts + 1, available_ms = ?
             WHERE id = (SELECT id FROM deliveries
                         WHERE consumer = ? AND state = 'pending' AND available_ms <= ?
                         ORDER BY available_ms, id LIMIT 1)
             RETURNING id, event_seq, attempts",
        )
        .bind(now.saturating_add(self.ack_wait_ms))
        .bind(&self.name)
        .bind(now)
        .fetch_optional(&self.bus.write)
        .await?;
        let Some((id, seq, attempts)) = claimed else {
            return Ok(None);
        };
        // Events never change once stored, so a reader may fetch this one.
        let (subject, message_id, headers, payload): (String, String, String, Vec<u8>) =
            sqlx::query_as(
                "SELECT subject, message_id, headers, payload FROM events WHERE seq = ?",
            )
            .bind(seq)
            .fetch_one(&self.bus.read)
            .await?;
        let headers = decode_headers(&headers, &message_id);
        let reply = EmbeddedReply {
            write: self.bus.write.clone(),
            shared: Arc::clone(&self.bus.shared),
            consumer: self.name.clone(),
            id,
            attempts,
        };
        Ok(Some(Delivery::new(
            subject,
            message_id,
            headers,
            payload.into(),
            to_u32(attempts),
            Box::new(reply),
        )))
    }
}

impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            // Listen before looking, so a commit between the look and the wait still wakes
            // this one.
            let notified = self.bus.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_millis();
            let due = self.next_due().await?;
            if due.is_some_and(|at| at <= now) {
                if let Some(delivery) = self.claim(now).await? {
                    return Ok(delivery);
                }
                // Another member took it: look again at once.
                continue;
            }
            // Until the watcher says the file changed, or the group's next delivery falls due
            // (a nak's delay or a lease runs out: nobody commits for that).
            let wait = due.map_or(FALLBACK_POLL, |at| {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(FALLBACK_POLL)
            });
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The answer handle of one claim: the row and its lease token (the attempt count the
/// claim set). Every answer is conditional on the token, so an answer that comes after the
/// lease ran out and another member claimed the row changes nothing.
pub(super) struct EmbeddedReply {
    write: SqlitePool,
    shared: Arc<Shared>,
    consumer: String,
    id: i64,
    attempts: i64,
}

impl EmbeddedReply {
    pub(super) fn consumer(&self) -> &str {
        &self.consumer
    }

    fn lease_lost(&self, answer: &str) {
        tracing::warn!(
            consumer = %self.consumer,
            delivery = self.id,
            attempt = self.attempts,
            answer,
            "answer ignored: the lease ran out and another member claimed the delivery"
        );
    }

    /// Closes the delivery and records the dead letter, in one transaction.
    pub(super) async fn dead_letter(&self, error: &str) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let closed = sqlx::query(
            "UPDATE deliveries SET state = 'dead', available_ms = ?
             WHERE id = ? AND attempts = ? AND state = 'pending'",
        )
        .bind(now)
        .bind(self.id)
        .bind(self.attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            // The member that holds it now decides; nothing is recorded twice.
            self.lease_lost("dead letter");
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO dead_letters
                 (delivery_id, consumer, subject, message_id, headers, payload, error, attempts, time_ms)
             SELECT d.id, d.consumer, e.subject, e.message_id, e.headers, e.payload, ?, d.attempts, ?
             FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.id = ?",
        )
        .bind(error)
        .bind(now)
        .bind(self.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(consumer = %self.consumer, delivery = self.id, attempts = self.attempts, error, "event dead-lettered");
        Ok(())
    }

    async fn answer(self, answer: &'static str, state: &str, available_ms: i64) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE deliveries SET state = ?, available_ms = ?
             WHERE id = ? AND attempts = ? AND state = 'pending'",
        )
        .bind(state)
        .bind(available_ms)
        .bind(self.id)
        .bind(self.attempts)
        .execute(&self.write)
        .await?
        .rows_affected();
        if changed == 0 {
            self.lease_lost(answer);
        }
        Ok(())
    }
}

impl Reply for EmbeddedReply {
    fn ack(self: Box<Self>) -> BoxFuture<Result<()>> {
        Box::pin(async move { self.answer("ack", "done", now_millis()).await })
    }

    fn nak(self: Box<Self>, delay: Duration) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            let shared = Arc::clone(&self.shared);
            self.answer("nak", "pending", now_millis().saturating_add(millis(delay)))
                .await?;
            // A member of this process that is waiting recomputes its wait at once.
            shared.notify.notify_waiters();
            Ok(())
        })
    }
}
