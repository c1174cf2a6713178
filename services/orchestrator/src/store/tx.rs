//! The writes of a saga, inside the transaction that applies an event.

use sqlx::AnyConnection;

use super::{COLUMNS, Row, saga};
use crate::saga::Saga;

/// The saga of `order_id`, created in AWAITING_PAYMENT if this is its first event, and
/// locked for the rest of the transaction: the first statement writes its row, so on
/// PostgreSQL a second event of the same order waits here until the first commits, and
/// on SQLite the one writer connection orders them.
pub async fn lock_or_create(
    tx: &mut AnyConnection,
    order_id: &str,
    now_ms: i64,
) -> Result<Saga, sqlx::Error> {
    let new = Saga::new(order_id, now_ms);
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO sagas ({COLUMNS}) VALUES ($1, $2, 0, 0, '', '', 0, $3, $3) \
         ON CONFLICT (order_id) DO UPDATE SET update_time_ms = sagas.update_time_ms \
         RETURNING {COLUMNS}"
    ))
    .bind(order_id)
    .bind(new.state.as_str())
    .bind(now_ms)
    .fetch_one(tx)
    .await?;
    Ok(saga(row))
}

/// Writes everything about `saga` but its creation time.
pub async fn save(tx: &mut AnyConnection, saga: &Saga, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sagas SET state = $2, paid = $3, shipped = $4, charge_id = $5, \
         failure_reason = $6, refund_requested = $7, update_time_ms = $8 WHERE order_id = $1",
    )
    .bind(&saga.order_id)
    .bind(saga.state.as_str())
    .bind(i64::from(saga.paid))
    .bind(i64::from(saga.shipped))
    .bind(&saga.charge_id)
    .bind(&saga.failure_reason)
    .bind(i64::from(saga.refund_requested))
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(())
}

/// Appends `descriptions` to the saga's steps, each naming `event_id`.
pub async fn add_steps(
    tx: &mut AnyConnection,
    order_id: &str,
    event_id: &str,
    descriptions: &[String],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    // The saga's row is locked (lock_or_create), so no other transaction numbers steps of
    // this saga meanwhile.
    let (last,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM saga_steps WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
    for (seq, description) in (last + 1..).zip(descriptions) {
        sqlx::query(
            "INSERT INTO saga_steps (order_id, seq, description, event_id, create_time_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(order_id)
        .bind(seq)
        .bind(description)
        .bind(event_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
