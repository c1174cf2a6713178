//! Stock and reservations in the inventory's own database (SQLite or PostgreSQL).
//!
//! Concurrency: writes go through `Pools::write`, on SQLite the service's one writer
//! connection, and reads through `Pools::read`. Every write transaction starts with a write,
//! so on SQLite it takes the write lock before reading anything (no lock upgrades, no
//! SQLITE_BUSY surprises, even with another process on the file), and on PostgreSQL a second
//! caller with the same key waits for the first and then sees its row.
//! Stock rows are changed in product-id order, so two reservations never deadlock.

use meshmart::db::Pools;
use meshmart::{config::DatabaseConfig, db::now_millis, demo};
use sqlx::migrate::Migrator;

use crate::{Error, Result};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The stock of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: String,
    pub available: i64,
    pub reserved: i64,
    /// `None` for a product never stocked.
    pub update_time_ms: Option<i64>,
}

impl StockLevel {
    fn never_stocked(product_id: &str) -> Self {
        Self {
            product_id: product_id.to_owned(),
            available: 0,
            reserved: 0,
            update_time_ms: None,
        }
    }
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Active,
    Released,
    Committed,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Released => "RELEASED",
            Self::Committed => "COMMITTED",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "RELEASED" => Self::Released,
            "COMMITTED" => Self::Committed,
            // The column's CHECK constraint allows nothing else.
            _ => Self::Active,
        }
    }
}

/// A reservation with its items, ordered by product id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub reservation_id: String,
    pub items: Vec<(String, i64)>,
    pub state: ReservationState,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

/// Whether a call changed anything, or repeated an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Now,
    Earlier,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Pools,
}

impl Store {
    /// Connects, migrates, and stocks the demo products in an empty database when asked to.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, meshmart::Error> {
        let db = meshmart::db::connect(config, &MIGRATOR).await?;
        let store = Self { db };
        if config.seed_demo_data {
            store.seed().await?;
        }
        Ok(store)
    }

    async fn seed(&self) -> Result<(), sqlx::Error> {
        if !meshmart::db::is_empty(self.db.read(), "stock").await? {
            return Ok(());
        }
        let now = now_millis();
        let mut tx = self.db.write().begin().await?;
        for product in demo::PRODUCTS {
            sqlx::query(
                "INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, $2, 0, $3) \
                 ON CONFLICT (product_id) DO NOTHING",
            )
            .bind(product.id)
            .bind(product.stock)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(products = demo::PRODUCTS.len(), "stocked the demo products");
        Ok(())
    }

    /// The stock of each product, in the order given; zero for products never stocked.
    pub async fn stock_levels(&self, product_ids: &[String]) -> Result<Vec<StockLevel>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = (1..=product_ids.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT product_id, available, reserved, update_time_ms FROM stock WHERE product_id IN ({placeholders})"
        );
        let mut query = sqlx::query_as::<_, (String, i64, i64, i64)>(&sql);
        for id in product_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.db.read()).await?;
        Ok(product_ids
            .iter()
            .map(|id| {
                rows.iter().find(|row| &row.0 == id).map_or_else(
                    || StockLevel::never_stocked(id),
                    |row| stock_level(row.clone()),
                )
            })
            .collect())
    }

    /// Sets the available quantity of a product.
    pub async fn set_stock(&self, product_id: &str, available: i64) -> Result<StockLevel> {
        let row = sqlx::query_as::<_, (String, i64, i64, i64)>(
            "INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (product_id) DO UPDATE SET available = excluded.available, update_time_ms = excluded.update_time_ms \
             RETURNING product_id, available, reserved, update_time_ms",
        )
        .bind(product_id)
        .bind(available)
        .bind(now_millis())
        .fetch_one(self.db.write())
        .await?;
        Ok(stock_level(row))
    }

    /// Adds `delta` to the available quantity, once per `request_id`.
    pub async fn adjust_stock(
        &self,
        request_id: &str,
        product_id: &str,
        delta: i64,
    ) -> Result<(StockLevel, Applied)> {
        let now = now_millis();
        let mut tx = self.db.write().begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO stock_adjustments (request_id, product_id, delta, create_time_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id)
        .bind(product_id)
        .bind(delta)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            tx.rollback().await?;
            let (earlier_product, earlier_delta): (String, i64) = sqlx::query_as(
                "SELECT product_id, delta FROM stock_adjustments WHERE request_id = $1",
            )
            .bind(request_id)
            .fetch_one(self.db.read())
            .await?;
            if earlier_product != product_id || earlier_delta != delta {
                return Err(Error::KeyReused {
                    field: "request_id",
                    key: request_id.to_owned(),
                });
            }
            let level = self.stock_levels(&[product_id.to_owned()]).await?;
            return Ok((
                level
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| StockLevel::never_stocked(product_id)),
                Applied::Earlier,
            ));
        }
        sqlx::query(
            "INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, 0, 0, $2) \
             ON CONFLICT (product_id) DO NOTHING",
        )
        .bind(product_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as::<_, (String, i64, i64, i64)>(
            "UPDATE stock SET available = available + $2, update_time_ms = $3 \
             WHERE product_id = $1 AND available + $2 >= 0 \
             RETURNING product_id, available, reserved, update_time_ms",
        )
        .bind(product_id)
        .bind(delta)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let available = available_in(&mut tx, product_id).await?;
            tx.rollback().await?;
            return Err(Error::InsufficientStock {
                product_id: product_id.to_owned(),
                requested: -delta,
                available,
            });
        };
        tx.commit().await?;
        Ok((stock_level(row), Applied::Now))
    }

    /// Holds stock for every item, all or nothing, once per `reservation_id`. `items` must
    /// name each product once.
    pub async fn reserve(
        &self,
        reservation_id: &str,
        items: &[(String, i64)],
    ) -> Result<(Reservation, Applied)> {
        let mut items = items.to_vec();
        items.sort();
        let now = now_millis();
        let mut tx = self.db.write().begin().await?;
        let created = sqlx::query(
            "INSERT INTO reservations (reservation_id, state, create_time_ms, update_time_ms) VALUES ($1, 'ACTIVE', $2, $2) \
             ON CONFLICT (reservation_id) DO NOTHING",
        )
        .bind(reservation_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            tx.rollback().await?;
            let earlier = self.reservation(reservation_id).await?;
            if earlier.items != items {
                return Err(Error::KeyReused {
                    field: "reservation_id",
                    key: reservation_id.to_owned(),
                });
            }
            return Ok((earlier, Applied::Earlier));
        }
        for (product_id, quantity) in &items {
            let held = sqlx::query(
                "UPDATE stock SET available = available - $2, reserved = reserved + $2, update_time_ms = $3 \
                 WHERE product_id = $1 AND available >= $2",
            )
            .bind(product_id)
            .bind(quantity)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if held == 0 {
                let available = available_in(&mut tx, product_id).await?;
                tx.rollback().await?;
                return Err(Error::InsufficientStock {
                    product_id: product_id.clone(),
                    requested: *quantity,
                    available,
                });
            }
            sqlx::query("INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES ($1, $2, $3)")
                .bind(reservation_id)
                .bind(product_id)
                .bind(quantity)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((
            Reservation {
                reservation_id: reservation_id.to_owned(),
                items,
                state: ReservationState::Active,
                create_time_ms: now,
                update_time_ms: now,
            },
            Applied::Now,
        ))
    }

    /// Returns a reservation.
    pub async fn reservation(&self, reservation_id: &str) -> Result<Reservation> {
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT state, create_time_ms, update_time_ms FROM reservations WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_optional(self.db.read())
        .await?;
        let Some((state, create_time_ms, update_time_ms)) = row else {
            return Err(Error::ReservationNotFound(reservation_id.to_owned()));
        };
        let mut items: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product_id, quantity FROM reservation_items WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_all(self.db.read())
        .await?;
        // Sorted here rather than in SQL: collation order differs between databases.
        items.sort();
        Ok(Reservation {
            reservation_id: reservation_id.to_owned(),
            items,
            state: ReservationState::parse(&state),
            create_time_ms,
            update_time_ms,
        })
    }

    /// Returns held stock to available. Releasing a released reservation changes nothing.
    pub async fn release(&self, reservation_id: &str) -> Result<(Reservation, Applied)> {
        self.close(reservation_id, Close::Release).await
    }

    /// Takes held stock out for good. Committing a committed reservation changes nothing.
    pub async fn commit(&self, reservation_id: &str) -> Result<(Reservation, Applied)> {
        self.close(reservation_id, Close::Commit).await
    }

    async fn close(&self, reservation_id: &str, close: Close) -> Result<(Reservation, Applied)> {
        let target = close.state();
        let now = now_millis();
        let mut tx = self.db.write().begin().await?;
        let closed = sqlx::query(
            "UPDATE reservations SET state = $2, update_time_ms = $3 WHERE reservation_id = $1 AND state = 'ACTIVE'",
        )
        .bind(reservation_id)
        .bind(target.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            tx.rollback().await?;
            let reservation = self.reservation(reservation_id).await?;
            if reservation.state == target {
                return Ok((reservation, Applied::Earlier));
            }
            return Err(Error::ReservationClosed {
                reservation_id: reservation_id.to_owned(),
                state: reservation.state.as_str(),
                action: close.verb(),
            });
        }
        let mut items: Vec<(String, i64)> = sqlx::query_as(
            "SELECT product_id, quantity FROM reservation_items WHERE reservation_id = $1",
        )
        .bind(reservation_id)
        .fetch_all(&mut *tx)
        .await?;
        items.sort();
        let sql = match close {
            Close::Release => {
                "UPDATE stock SET available = available + $2, reserved = reserved - $2, update_time_ms = $3 WHERE product_id = $1"
            }
            Close::Commit => {
                "UPDATE stock SET reserved = reserved - $2, update_time_ms = $3 WHERE product_id = $1"
            }
        };
        for (product_id, quantity) in &items {
            sqlx::query(sql)
                .bind(product_id)
                .bind(quantity)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((self.reservation(reservation_id).await?, Applied::Now))
    }
}

#[derive(Debug, Clone, Copy)]
enum Close {
    Release,
    Commit,
}

impl Close {
    fn state(self) -> ReservationState {
        match self {
            Self::Release => ReservationState::Released,
            Self::Commit => ReservationState::Committed,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Release => "released",
            Self::Commit => "committed",
        }
    }
}

fn stock_level(
    (product_id, available, reserved, update_time_ms): (String, i64, i64, i64),
) -> StockLevel {
    StockLevel {
        product_id,
        available,
        reserved,
        update_time_ms: Some(update_time_ms),
    }
}

async fn available_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, product_id: &str) -> Result<i64> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT available FROM stock WHERE product_id = $1")
        .bind(product_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map_or(0, |(available,)| available))
}
