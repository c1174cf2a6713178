//! Keyed stock changes: SetStock and AdjustStock, each applied once per `request_id`, and
//! answered the same way every time the same request comes back.
//!
//! Why keyed, even for SetStock, which looks safe to repeat: a SetStock whose reply was
//! lost, retried after a reservation took units, would set the old figure again and create
//! units that do not exist. Recorded under its key, the retry changes nothing and returns
//! what the first call answered.

use super::{Applied, StockLevel, Store, available_in, stock_level};
use crate::{Error, Result};
use meshmart::status::Failure;

/// The two kinds of keyed change, as stored in `stock_adjustments.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `amount` is added to the available quantity.
    Adjust,
    /// `amount` becomes the available quantity.
    Set,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Adjust => "ADJUST",
            Self::Set => "SET",
        }
    }
}

impl Store {
    /// Sets the available quantity of a product, once per `request_id`.
    pub async fn set_stock(
        &self,
        request_id: &str,
        product_id: &str,
        available: i64,
    ) -> Result<(StockLevel, Applied)> {
        self.keyed_change(request_id, Kind::Set, product_id, available)
            .await
    }

    /// Adds `delta` to the available quantity, once per `request_id`.
    pub async fn adjust_stock(
        &self,
        request_id: &str,
        product_id: &str,
        delta: i64,
    ) -> Result<(StockLevel, Applied)> {
        self.keyed_change(request_id, Kind::Adjust, product_id, delta)
            .await
    }

    async fn keyed_change(
        &self,
        request_id: &str,
        kind: Kind,
        product_id: &str,
        amount: i64,
    ) -> Result<(StockLevel, Applied)> {
        let now = self.now();
        let mut tx = self.db.write().begin().await?;
        // The key first: the transaction's first statement is a write (see the module
        // documentation of the store).
        let recorded = sqlx::query(
            "INSERT INTO stock_adjustments (request_id, product_id, delta, create_time_ms, kind) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(product_id)
        .bind(amount)
        .bind(now)
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            tx.rollback().await?;
            return self.replay(request_id, kind, product_id, amount).await;
        }
        sqlx::query(
            "INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, 0, 0, $2) \
             ON CONFLICT (product_id) DO NOTHING",
        )
        .bind(product_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let sql = match kind {
            Kind::Adjust => {
                "UPDATE stock SET available = available + $2, update_time_ms = $3 \
                 WHERE product_id = $1 AND available + $2 >= 0 \
                 RETURNING product_id, available, reserved, update_time_ms"
            }
            Kind::Set => {
                "UPDATE stock SET available = $2, update_time_ms = $3 WHERE product_id = $1 \
                 RETURNING product_id, available, reserved, update_time_ms"
            }
        };
        let row = sqlx::query_as::<_, (String, i64, i64, i64)>(sql)
            .bind(product_id)
            .bind(amount)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            // Only an adjustment can fail here; the key is not kept, so a retry after more
            // stock arrives is a new attempt.
            let available = available_in(&mut tx, product_id).await?;
            tx.rollback().await?;
            return Err(Error::InsufficientStock {
                product_id: product_id.to_owned(),
                requested: -amount,
                available,
            });
        };
        let level = stock_level(row);
        sqlx::query(
            "UPDATE stock_adjustments SET result_available = $2, result_reserved = $3, \
             result_update_time_ms = $4 WHERE request_id = $1",
        )
        .bind(request_id)
        .bind(level.available)
        .bind(level.reserved)
        .bind(level.update_time_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((level, Applied::Now))
    }

    /// The answer to a request whose key is already recorded: what the first call answered,
    /// or ALREADY_EXISTS if the key came back with a different request.
    async fn replay(
        &self,
        request_id: &str,
        kind: Kind,
        product_id: &str,
        amount: i64,
    ) -> Result<(StockLevel, Applied)> {
        type Recorded = (String, String, i64, Option<i64>, Option<i64>, Option<i64>);
        let (earlier_kind, earlier_product, earlier_amount, available, reserved, update_time_ms): Recorded =
            sqlx::query_as(
                "SELECT kind, product_id, delta, result_available, result_reserved, result_update_time_ms \
                 FROM stock_adjustments WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_one(self.db.write())
            .await?;
        if earlier_kind != kind.as_str()
            || earlier_product != product_id
            || earlier_amount != amount
        {
            return Err(Failure::key_reused("request_id", request_id).into());
        }
        let level = match (available, reserved, update_time_ms) {
            (Some(available), Some(reserved), update_time_ms) => StockLevel {
                product_id: product_id.to_owned(),
                available,
                reserved,
                update_time_ms,
            },
            // Recorded before results were kept: the current stock is the best answer left.
            _ => self
                .stock_levels(vec![product_id.to_owned()])
                .await?
                .into_iter()
                .next()
                .unwrap_or_else(|| StockLevel::never_stocked(product_id.to_owned())),
        };
        Ok((level, Applied::Earlier))
    }
}
