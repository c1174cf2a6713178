//! Moving an order on, as the flow's events report. Events come in any order and more than
//! once, so each one is weighed against where the order stands:
//!
//! - an order in a final state (COMPLETED, FAILED) changes no more, its history neither;
//! - a state further along (higher [`State::rank`]), or FAILED, is a transition: the state,
//!   its time, and a history entry;
//! - a state the order went past without hearing of it (PAID reported after SHIPPED) is
//!   recorded in the history only, where it belongs by rank, since the order has been in
//!   it; the state and its time stay;
//! - anything else (the state again) changes nothing.

use sqlx::AnyConnection;

use super::State;
use crate::{Error, Result};

/// What an event did to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The order moved to the event's state.
    Transition,
    /// The state was added to the history only.
    HistoryOnly,
    /// Nothing: the order is final, or was in that state already.
    Unchanged,
}

/// Weighs `to` (at `time_ms`, with `reason`) against where `order_id` stands, within the
/// caller's transaction `tx` (the one that records the event in the inbox). NOT_FOUND for
/// an order this service does not have.
pub async fn advance(
    tx: &mut AnyConnection,
    order_id: &str,
    to: State,
    time_ms: i64,
    reason: &str,
) -> Result<Advance> {
    // A write first, which changes nothing but takes the row: on PostgreSQL a concurrent
    // event for the same order waits here until this one commits, so no two events decide
    // from the same old state (a late PAID cannot overwrite a SHIPPED that committed
    // meanwhile). On SQLite the one writer connection orders them anyway.
    let locked = sqlx::query("UPDATE orders SET state = state WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if locked == 0 {
        return Err(Error::NotFound(order_id.to_owned()));
    }
    let (state, update_time_ms): (String, i64) =
        sqlx::query_as("SELECT state, update_time_ms FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
    let current = State::parse(&state);
    if current.is_final() {
        return Ok(Advance::Unchanged);
    }
    let recorded = sqlx::query(
        "INSERT INTO order_history (order_id, state, time_ms, reason) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (order_id, state) DO NOTHING",
    )
    .bind(order_id)
    .bind(to.as_str())
    .bind(time_ms)
    .bind(reason)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if to.rank() <= current.rank() {
        return Ok(if recorded == 1 {
            Advance::HistoryOnly
        } else {
            Advance::Unchanged
        });
    }
    // Another service's clock may run behind ours: the order's time does not go back.
    let failure_reason = if to == State::Failed { reason } else { "" };
    sqlx::query(
        "UPDATE orders SET state = $2, update_time_ms = $3, failure_reason = $4 WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(to.as_str())
    .bind(time_ms.max(update_time_ms))
    .bind(failure_reason)
    .execute(&mut *tx)
    .await?;
    Ok(Advance::Transition)
}
