//! Shipments, their lines, and their addresses (written, and read only to ship).

use meshmart::proto::events::ShippingAddress;
use sqlx::AnyConnection;

use super::{Page, ShipmentRecord, ShipmentState, Store};
use crate::{Error, Result};

const COLUMNS: &str = "shipment_id, order_id, state, tracking_number, failure_reason, \
     region_code, create_time_ms, update_time_ms";

type Row = (String, String, String, String, String, String, i64, i64);

fn record(
    (
        shipment_id,
        order_id,
        state,
        tracking_number,
        failure_reason,
        region_code,
        create_time_ms,
        update_time_ms,
    ): Row,
    lines: Vec<(String, i64)>,
) -> ShipmentRecord {
    ShipmentRecord {
        shipment_id,
        order_id,
        state: ShipmentState::parse(&state),
        lines,
        tracking_number,
        failure_reason,
        region_code,
        create_time_ms,
        update_time_ms,
    }
}

/// A shipment about to be created.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewShipment<'a> {
    pub(crate) shipment_id: &'a str,
    pub(crate) order_id: &'a str,
    pub(crate) state: ShipmentState,
    pub(crate) lines: &'a [(String, i64)],
    pub(crate) address: &'a ShippingAddress,
    pub(crate) now_ms: i64,
}

impl Store {
    pub async fn shipment(&self, shipment_id: &str) -> Result<ShipmentRecord> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM shipments WHERE shipment_id = $1"
        ))
        .bind(shipment_id)
        .fetch_optional(self.db.read())
        .await?;
        let row = row.ok_or_else(|| Error::ShipmentNotFound(shipment_id.to_owned()))?;
        let mut with_lines = self.with_lines(vec![row]).await?;
        with_lines
            .pop()
            .ok_or_else(|| Error::ShipmentNotFound(shipment_id.to_owned()))
    }

    /// One page of shipments, oldest first by (`create_time_ms`, `shipment_id`), and
    /// whether more follow. A token's position is looked up by its shipment id: shipments
    /// are never deleted.
    pub async fn shipments(&self, page: &Page) -> Result<(Vec<ShipmentRecord>, bool)> {
        let mut conditions = Vec::new();
        if page.order_id.is_some() {
            conditions.push(format!("order_id = ${}", conditions.len() + 1));
        }
        if page.after.is_some() {
            conditions.push(format!(
                "(create_time_ms, shipment_id) > (SELECT create_time_ms, shipment_id \
                 FROM shipments WHERE shipment_id = ${})",
                conditions.len() + 1
            ));
        }
        let limit = format!("${}", conditions.len() + 1);
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM shipments {filter} \
             ORDER BY create_time_ms, shipment_id LIMIT {limit}"
        );
        let mut query = sqlx::query_as::<_, Row>(&sql);
        for value in [&page.order_id, &page.after].into_iter().flatten() {
            query = query.bind(value);
        }
        let fetch = i64::try_from(page.size + 1).unwrap_or(i64::MAX);
        let mut rows = query.bind(fetch).fetch_all(self.db.read()).await?;
        let more = rows.len() > page.size;
        rows.truncate(page.size);
        Ok((self.with_lines(rows).await?, more))
    }

    /// The shipments of `rows` with their lines, read in one query.
    async fn with_lines(&self, rows: Vec<Row>) -> Result<Vec<ShipmentRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = (1..=rows.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT shipment_id, product_id, quantity FROM shipment_lines \
             WHERE shipment_id IN ({placeholders}) ORDER BY shipment_id, product_id"
        );
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
        for row in &rows {
            query = query.bind(&row.0);
        }
        let lines = query.fetch_all(self.db.read()).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let own = lines
                    .iter()
                    .filter(|line| line.0 == row.0)
                    .map(|(_, product_id, quantity)| (product_id.clone(), *quantity))
                    .collect();
                record(row, own)
            })
            .collect())
    }
}

/// Creates the order's shipment with its lines and address within `tx`; `false` (and
/// nothing written) when the order has one already.
pub(crate) async fn insert_shipment(
    tx: &mut AnyConnection,
    shipment: &NewShipment<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO shipments ({COLUMNS}) VALUES ($1, $2, $3, '', '', $4, $5, $5) \
         ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(shipment.shipment_id)
    .bind(shipment.order_id)
    .bind(shipment.state.as_str())
    .bind(&shipment.address.region_code)
    .bind(shipment.now_ms)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    for (product_id, quantity) in shipment.lines {
        // A product named on two lines ships once, with both quantities.
        sqlx::query(
            "INSERT INTO shipment_lines (shipment_id, product_id, quantity) VALUES ($1, $2, $3) \
             ON CONFLICT (shipment_id, product_id) DO UPDATE SET \
               quantity = shipment_lines.quantity + excluded.quantity",
        )
        .bind(shipment.shipment_id)
        .bind(product_id)
        .bind(quantity)
        .execute(&mut *tx)
        .await?;
    }
    let address = shipment.address;
    sqlx::query(
        "INSERT INTO shipment_addresses (shipment_id, recipient, locality, postal_code) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(shipment.shipment_id)
    .bind(&address.recipient)
    .bind(&address.locality)
    .bind(&address.postal_code)
    .execute(&mut *tx)
    .await?;
    for (position, line) in (0_i64..).zip(&address.address_lines) {
        sqlx::query(
            "INSERT INTO shipment_address_lines (shipment_id, position, line) VALUES ($1, $2, $3)",
        )
        .bind(shipment.shipment_id)
        .bind(position)
        .bind(line)
        .execute(&mut *tx)
        .await?;
    }
    Ok(true)
}

/// The order's shipment if it awaits payment: its id and the postal code to ship to.
pub(crate) async fn awaiting_shipment(
    tx: &mut AnyConnection,
    order_id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.shipment_id, a.postal_code FROM shipments s \
         JOIN shipment_addresses a ON a.shipment_id = s.shipment_id \
         WHERE s.order_id = $1 AND s.state = 'AWAITING_PAYMENT'",
    )
    .bind(order_id)
    .fetch_optional(tx)
    .await
}

/// AWAITING_PAYMENT → SHIPPED; `false` if it was no longer awaiting payment.
pub(crate) async fn mark_shipped(
    tx: &mut AnyConnection,
    shipment_id: &str,
    tracking_number: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE shipments SET state = 'SHIPPED', tracking_number = $2, update_time_ms = $3 \
         WHERE shipment_id = $1 AND state = 'AWAITING_PAYMENT'",
    )
    .bind(shipment_id)
    .bind(tracking_number)
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// AWAITING_PAYMENT → FAILED; `false` if it was no longer awaiting payment.
pub(crate) async fn mark_failed(
    tx: &mut AnyConnection,
    shipment_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE shipments SET state = 'FAILED', failure_reason = $2, update_time_ms = $3 \
         WHERE shipment_id = $1 AND state = 'AWAITING_PAYMENT'",
    )
    .bind(shipment_id)
    .bind(reason)
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// The order's shipment, if it awaits payment, becomes CANCELLED; `false` if there was
/// none such (not requested yet, or already shipped, failed or cancelled).
pub(crate) async fn cancel_awaiting(
    tx: &mut AnyConnection,
    order_id: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE shipments SET state = 'CANCELLED', update_time_ms = $2 \
         WHERE order_id = $1 AND state = 'AWAITING_PAYMENT'",
    )
    .bind(order_id)
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}
