//! The idempotent consumer: a consumer group records each event it applies, in the same
//! transaction as the effect, so a redelivered event (after a crash before the ack, a nak,
//! or an expired lease) finds its record and changes nothing a second time.

use sqlx::AnyConnection;

use super::{Outgoing, outbox::Outbox};
use crate::db::{Pools, now_millis};

/// Applies an event once per consumer group: in one transaction, records it in the inbox,
/// runs `effect`, and writes the events `effect` returns into the outbox; then commits and
/// wakes the relay. When the group has applied the event before, `effect` does not run and
/// the answer is `false`. An error from `effect` rolls everything back, the inbox record
/// with it, so the event can be tried again.
pub async fn apply_once<E>(
    db: &Pools,
    outbox: &Outbox,
    consumer: &str,
    event_id: &str,
    effect: impl AsyncFnOnce(&mut AnyConnection) -> Result<Vec<Outgoing>, E>,
) -> Result<bool, E>
where
    E: From<sqlx::Error>,
{
    let mut tx = db.write().begin().await?;
    if !first_time(&mut tx, consumer, event_id).await? {
        return Ok(false);
    }
    let events = effect(&mut tx).await?;
    for event in &events {
        Outbox::add(&mut tx, event).await?;
    }
    tx.commit().await?;
    if !events.is_empty() {
        outbox.committed();
    }
    Ok(true)
}

/// Records that `consumer` applies `event_id`, within the transaction `tx` that applies it.
/// `false` when the event was applied before: the caller then rolls back and acks.
///
/// On PostgreSQL a second transaction recording the same event waits for the first and then
/// sees its row; on SQLite the one writer connection orders them.
pub async fn first_time(
    tx: &mut AnyConnection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query(
        "INSERT INTO event_inbox (consumer, event_id, process_time_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(now_millis())
    .execute(tx)
    .await?;
    Ok(recorded.rows_affected() == 1)
}
