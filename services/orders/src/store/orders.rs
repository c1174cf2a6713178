//! Placing an order (with the events that announce it, in one transaction), and reading
//! orders back with their lines and history.

use std::collections::HashMap;

use meshmart::{
    events::{Outgoing, outbox::Outbox},
    proto::{google::r#type::Money, orders::ShippingAddress},
};
use sqlx::{Any, Transaction};

use super::{Cursor, Line, NewOrder, OrderRecord, State, Store, Transition, placeholders};
use crate::{Error, Result};

const COLUMNS: &str = "order_id, customer_id, state, failure_reason, currency_code, total_units, \
     total_nanos, recipient, address_lines, locality, postal_code, region_code, create_time_ms, \
     update_time_ms";

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

/// What placing an order found: the order is placed now, or an earlier attempt of the same
/// request placed it (or another request under the same key did: compare the fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    Now,
    Earlier(Earlier),
}

/// An order placed by an earlier call: its request's fingerprint and the reply it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    pub fingerprint: String,
    pub reply: Vec<u8>,
}

impl Store {
    /// What an earlier CreateOrder under this order id stored: its request's fingerprint
    /// and its reply.
    pub async fn placed_earlier(&self, order_id: &str) -> Result<Option<Earlier>> {
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT request_fingerprint, create_reply FROM orders WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(self.db.read())
        .await?;
        Ok(row.map(|(fingerprint, reply)| Earlier { fingerprint, reply }))
    }

    /// Stores `order` PENDING with its first history entry, the reply the call answers, and
    /// `events` in the outbox, all in one transaction, unless an order with its id exists:
    /// then nothing is written and that order's fingerprint and reply are returned.
    /// `stock_held` says whether the reservation under the order id still holds the
    /// stock; when it does not (it expired since an earlier attempt made it), no order is
    /// placed. Call [`Outbox::committed`] after [`Placed::Now`].
    pub async fn place(
        &self,
        order: &NewOrder,
        reply: &[u8],
        events: &[Outgoing],
        stock_held: bool,
    ) -> Result<Placed> {
        let record = &order.record;
        let mut tx = self.db.write().begin().await?;
        // First, the write keyed on the order id: the race between attempts is decided here.
        let inserted = sqlx::query(&format!(
            "INSERT INTO orders ({COLUMNS}, request_id, request_fingerprint, create_reply) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (order_id) DO NOTHING"
        ))
        .bind(&record.order_id)
        .bind(&record.customer_id)
        .bind(record.state.as_str())
        .bind(&record.failure_reason)
        .bind(&record.total.currency_code)
        .bind(record.total.units)
        .bind(i64::from(record.total.nanos))
        .bind(&record.address.recipient)
        .bind(address_lines(&record.address))
        .bind(&record.address.locality)
        .bind(&record.address.postal_code)
        .bind(&record.address.region_code)
        .bind(record.create_time_ms)
        .bind(record.update_time_ms)
        .bind(&order.request_id)
        .bind(&order.fingerprint)
        .bind(reply.to_vec())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            let earlier = self.placed_earlier(&record.order_id).await?;
            return earlier
                .map(Placed::Earlier)
                .ok_or_else(|| Error::NotFound(record.order_id.clone()));
        }
        if !stock_held {
            tx.rollback().await?;
            return Err(Error::StockLapsed(order.request_id.clone()));
        }
        insert_lines(&mut tx, record).await?;
        for transition in &record.history {
            sqlx::query(
                "INSERT INTO order_history (order_id, state, time_ms, reason) VALUES ($1, $2, $3, $4)",
            )
            .bind(&record.order_id)
            .bind(transition.state.as_str())
            .bind(transition.time_ms)
            .bind(&transition.reason)
            .execute(&mut *tx)
            .await?;
        }
        for event in events {
            Outbox::add(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(Placed::Now)
    }

    /// `customer_id`'s order `order_id`; NOT_FOUND for an order of another customer too.
    pub async fn get(&self, customer_id: &str, order_id: &str) -> Result<OrderRecord> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM orders WHERE order_id = $1 AND customer_id = $2"
        ))
        .bind(order_id)
        .bind(customer_id)
        .fetch_optional(self.db.read())
        .await?;
        let row = row.ok_or_else(|| Error::NotFound(order_id.to_owned()))?;
        let mut records = self.complete(vec![row]).await?;
        records
            .pop()
            .ok_or_else(|| Error::NotFound(order_id.to_owned()))
    }

    /// Where an order stands, if it exists: the cheap read a watch polls with.
    pub async fn state(&self, order_id: &str) -> Result<Option<State>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT state FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(self.db.read())
            .await?;
        Ok(row.map(|(state,)| State::parse(&state)))
    }

    /// Up to `limit` of `customer_id`'s orders, newest first, after `after` (exclusive),
    /// and whether more follow.
    pub async fn list(
        &self,
        customer_id: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Vec<OrderRecord>, bool)> {
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let rows: Vec<Row> = match after {
            Some(after) => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM orders WHERE customer_id = $1 \
                     AND (create_time_ms < $2 OR (create_time_ms = $2 AND order_id < $3)) \
                     ORDER BY create_time_ms DESC, order_id DESC LIMIT $4"
                ))
                .bind(customer_id)
                .bind(after.create_time_ms)
                .bind(&after.order_id)
                .bind(fetch)
                .fetch_all(self.db.read())
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM orders WHERE customer_id = $1 \
                     ORDER BY create_time_ms DESC, order_id DESC LIMIT $2"
                ))
                .bind(customer_id)
                .bind(fetch)
                .fetch_all(self.db.read())
                .await?
            }
        };
        let more = rows.len() > limit;
        let rows = rows.into_iter().take(limit).collect();
        Ok((self.complete(rows).await?, more))
    }

    /// The orders of `rows` with their lines and history: two more reads however many.
    async fn complete(&self, rows: Vec<Row>) -> Result<Vec<OrderRecord>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
        let mut lines = self.lines_of(&ids).await?;
        let mut history = self.history_of(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let lines = lines.remove(&row.0).unwrap_or_default();
                let history = history.remove(&row.0).unwrap_or_default();
                record(row, lines, history)
            })
            .collect())
    }

    async fn lines_of(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Line>>> {
        let sql = format!(
            "SELECT order_id, line_number, product_id, quantity, currency_code, unit_units, unit_nanos \
             FROM order_lines WHERE order_id IN ({})",
            placeholders(0, ids.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64, String, i64, String, i64, i64)>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let mut rows = query.fetch_all(self.db.read()).await?;
        rows.sort_by_key(|row| row.1);
        let mut lines: HashMap<String, Vec<Line>> = HashMap::new();
        for (order_id, _, product_id, quantity, currency_code, units, nanos) in rows {
            lines.entry(order_id).or_default().push(Line {
                product_id,
                quantity,
                unit_price: money(currency_code, units, nanos),
            });
        }
        Ok(lines)
    }

    async fn history_of(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Transition>>> {
        let sql = format!(
            "SELECT order_id, state, time_ms, reason FROM order_history WHERE order_id IN ({})",
            placeholders(0, ids.len())
        );
        let mut query = sqlx::query_as::<_, (String, String, i64, String)>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(self.db.read()).await?;
        let mut history: HashMap<String, Vec<Transition>> = HashMap::new();
        for (order_id, state, time_ms, reason) in rows {
            history.entry(order_id).or_default().push(Transition {
                state: State::parse(&state),
                time_ms,
                reason,
            });
        }
        for transitions in history.values_mut() {
            transitions.sort_by_key(|transition| transition.state.rank());
        }
        Ok(history)
    }
}

async fn insert_lines(tx: &mut Transaction<'_, Any>, record: &OrderRecord) -> Result<()> {
    for (number, line) in record.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_number, product_id, quantity, currency_code, unit_units, unit_nanos) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.order_id)
        .bind(i64::try_from(number).unwrap_or(i64::MAX))
        .bind(&line.product_id)
        .bind(line.quantity)
        .bind(&line.unit_price.currency_code)
        .bind(line.unit_price.units)
        .bind(i64::from(line.unit_price.nanos))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn address_lines(address: &ShippingAddress) -> String {
    serde_json::to_string(&address.address_lines).unwrap_or_else(|_| "[]".to_owned())
}

fn money(currency_code: String, units: i64, nanos: i64) -> Money {
    Money {
        currency_code,
        units,
        nanos: i32::try_from(nanos).unwrap_or_default(),
    }
}

fn record(row: Row, lines: Vec<Line>, history: Vec<Transition>) -> OrderRecord {
    let (
        order_id,
        customer_id,
        state,
        failure_reason,
        currency_code,
        total_units,
        total_nanos,
        recipient,
        address_lines,
        locality,
        postal_code,
        region_code,
        create_time_ms,
        update_time_ms,
    ) = row;
    OrderRecord {
        order_id,
        customer_id,
        lines,
        total: money(currency_code, total_units, total_nanos),
        state: State::parse(&state),
        failure_reason,
        address: ShippingAddress {
            recipient,
            address_lines: serde_json::from_str(&address_lines).unwrap_or_default(),
            locality,
            postal_code,
            region_code,
        },
        history,
        create_time_ms,
        update_time_ms,
    }
}
