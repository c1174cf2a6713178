//! Charges: settled once per order, and the transient failures before that.

use sqlx::AnyConnection;

use super::{Amount, ChargeRecord, ChargeState, Page, Store};
use crate::{Error, Result};

const COLUMNS: &str = "charge_id, order_id, currency_code, amount_units, amount_nanos, state, \
     failure_reason, attempts, card_brand, create_time_ms, update_time_ms";

type Row = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    i64,
    String,
    i64,
    i64,
);

fn record(
    (
        charge_id,
        order_id,
        currency_code,
        units,
        nanos,
        state,
        failure_reason,
        attempts,
        card_brand,
        create_time_ms,
        update_time_ms,
    ): Row,
) -> ChargeRecord {
    ChargeRecord {
        charge_id,
        order_id,
        amount: Amount::from_columns(currency_code, units, nanos),
        state: ChargeState::parse(&state),
        failure_reason,
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        card_brand,
        create_time_ms,
        update_time_ms,
    }
}

/// A charge about to be settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewCharge<'a> {
    pub(crate) charge_id: &'a str,
    pub(crate) order_id: &'a str,
    pub(crate) amount: &'a Amount,
    pub(crate) state: ChargeState,
    pub(crate) failure_reason: &'a str,
    pub(crate) attempts: u32,
    pub(crate) card_brand: &'a str,
    pub(crate) now_ms: i64,
}

impl Store {
    pub async fn charge(&self, charge_id: &str) -> Result<ChargeRecord> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM charges WHERE charge_id = $1"
        ))
        .bind(charge_id)
        .fetch_optional(self.db.read())
        .await?;
        row.map(record)
            .ok_or_else(|| Error::ChargeNotFound(charge_id.to_owned()))
    }

    /// The order's charge, once settled.
    pub async fn charge_of_order(&self, order_id: &str) -> Result<Option<ChargeRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM charges WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(self.db.read())
        .await?;
        Ok(row.map(record))
    }

    /// One page of charges, and whether more follow.
    pub async fn charges(&self, page: &Page) -> Result<(Vec<ChargeRecord>, bool)> {
        let (rows, more) = self
            .page_of::<Row>(COLUMNS, "charges", "charge_id", page)
            .await?;
        Ok((rows.into_iter().map(record).collect(), more))
    }
}

/// Settles an order's charge within `tx`; `false` (and nothing written) when the order's
/// charge was settled before. Dated from the order's first failed attempt, if any.
pub(crate) async fn insert_charge(
    tx: &mut AnyConnection,
    charge: &NewCharge<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO charges ({COLUMNS}) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, \
           COALESCE((SELECT MIN(fail_time_ms) FROM failed_charge_attempts WHERE order_id = $2), $10), $10 \
         WHERE 1 = 1 \
         ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(charge.charge_id)
    .bind(charge.order_id)
    .bind(&charge.amount.currency_code)
    .bind(charge.amount.units)
    .bind(i64::from(charge.amount.nanos))
    .bind(charge.state.as_str())
    .bind(charge.failure_reason)
    .bind(i64::from(charge.attempts))
    .bind(charge.card_brand)
    .bind(charge.now_ms)
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Records that `attempt` at charging `order_id` failed transiently; `false` when it was
/// recorded before (the same delivery, redelivered after a crash), so it is reported once.
pub(crate) async fn record_failed_attempt(
    tx: &mut AnyConnection,
    order_id: &str,
    attempt: u32,
    reason: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO failed_charge_attempts (order_id, attempt, reason, fail_time_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (order_id, attempt) DO NOTHING",
    )
    .bind(order_id)
    .bind(i64::from(attempt))
    .bind(reason)
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
