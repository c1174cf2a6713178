//! The idempotent consumer: a consumer group records each event it applies, in the same
//! transaction as the effect, so a redelivered event (after a crash before the ack, a nak,
//! or an expired lease) finds its record and changes nothing a second time.

use sqlx::AnyConnection;

use crate::db::now_millis;

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
