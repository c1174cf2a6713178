//! Refunds: the whole of a succeeded charge, at most once per charge.

use sqlx::AnyConnection;

use super::{Amount, Page, RefundRecord, Store};
use crate::{Error, Result};

const COLUMNS: &str = "refund_id, charge_id, order_id, currency_code, amount_units, amount_nanos, \
     reason, create_time_ms";

type Row = (String, String, String, String, i64, i64, String, i64);

fn record(
    (refund_id, charge_id, order_id, currency_code, units, nanos, reason, create_time_ms): Row,
) -> RefundRecord {
    RefundRecord {
        refund_id,
        charge_id,
        order_id,
        amount: Amount::from_columns(currency_code, units, nanos),
        reason,
        create_time_ms,
    }
}

/// A refund about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewRefund<'a> {
    pub(crate) refund_id: &'a str,
    pub(crate) charge_id: &'a str,
    pub(crate) order_id: &'a str,
    pub(crate) amount: &'a Amount,
    pub(crate) reason: &'a str,
    pub(crate) now_ms: i64,
}

impl Store {
    pub async fn refund(&self, refund_id: &str) -> Result<RefundRecord> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM refunds WHERE refund_id = $1"
        ))
        .bind(refund_id)
        .fetch_optional(self.db.read())
        .await?;
        row.map(record)
            .ok_or_else(|| Error::RefundNotFound(refund_id.to_owned()))
    }

    /// The refund of a charge, if it was refunded.
    pub async fn refund_of_charge(&self, charge_id: &str) -> Result<Option<RefundRecord>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM refunds WHERE charge_id = $1"
        ))
        .bind(charge_id)
        .fetch_optional(self.db.read())
        .await?;
        Ok(row.map(record))
    }

    /// One page of refunds, and whether more follow.
    pub async fn refunds(&self, page: &Page) -> Result<(Vec<RefundRecord>, bool)> {
        let (rows, more) = self
            .page_of::<Row>(COLUMNS, "refunds", "refund_id", page)
            .await?;
        Ok((rows.into_iter().map(record).collect(), more))
    }
}

/// Records a charge's refund within `tx`; `false` (and nothing written) when the charge
/// was refunded before.
pub(crate) async fn insert_refund(
    tx: &mut AnyConnection,
    refund: &NewRefund<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO refunds ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (charge_id) DO NOTHING"
    ))
    .bind(refund.refund_id)
    .bind(refund.charge_id)
    .bind(refund.order_id)
    .bind(&refund.amount.currency_code)
    .bind(refund.amount.units)
    .bind(i64::from(refund.amount.nanos))
    .bind(refund.reason)
    .bind(refund.now_ms)
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
