//! Stock and reservations in the inventory's own database (SQLite or PostgreSQL).
//!
//! Concurrency: writes go through `Pools::write`, on SQLite the service's one writer
//! connection, and reads through `Pools::read`. Every write transaction starts with a write,
//! so on SQLite it takes the write lock before reading anything (no lock upgrades, no
//! SQLITE_BUSY surprises, even with another process on the file), and on PostgreSQL a second
//! caller with the same key waits for the first and then sees its row.
//! Stock rows are changed in product-id order, so two reservations never deadlock.
//!
//! `stock.rs` holds the keyed stock changes, `reservations.rs` the reservations.

mod reservations;
mod stock;

use std::{borrow::Cow, sync::Arc, time::Duration};

use meshmart::{config::DatabaseConfig, db::Pools, demo};

use crate::Result;

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
    fn never_stocked(product_id: String) -> Self {
        Self {
            product_id,
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
    /// When it gives its stock back if still ACTIVE; `None` for reservations older than
    /// expiry.
    pub expire_time_ms: Option<i64>,
    /// Released because it expired, not by its owner.
    pub expired: bool,
}

/// Milliseconds since the Unix epoch, as stored in `*_time_ms` columns. Injected, so tests
/// can move time on without waiting for it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// What the read path reads of a product's stock.
macro_rules! stock_columns {
    () => {
        "product_id, available, reserved, update_time_ms"
    };
}

const STOCK_OF_ONE: &str = concat!(
    "SELECT ",
    stock_columns!(),
    " FROM stock WHERE product_id IN ($1)"
);

/// How long a reservation holds stock unless committed or released: `RESERVATION_TTL_SECS`.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// Whether a call changed anything, or repeated an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Now,
    Earlier,
}

#[derive(Clone)]
pub struct Store {
    db: Pools,
    clock: Clock,
    reservation_ttl_ms: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("reservation_ttl_ms", &self.reservation_ttl_ms)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects, migrates, and stocks the demo products in an empty database when asked to.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, meshmart::Error> {
        let now = meshmart::db::now_millis();
        let demo_stock = move || {
            demo::PRODUCTS
                .iter()
                .map(|product: &'static demo::DemoProduct| {
                    sqlx::query(
                        "INSERT INTO stock (product_id, available, reserved, update_time_ms) VALUES ($1, $2, 0, $3) \
                         ON CONFLICT (product_id) DO NOTHING",
                    )
                    .bind(product.id)
                    .bind(product.stock)
                    .bind(now)
                })
                .collect()
        };
        let db = meshmart::db::connect_seeded(
            config,
            sqlx::migrate!("./migrations"),
            "stock",
            demo_stock,
        )
        .await?;
        Ok(Self {
            db,
            clock: Arc::new(meshmart::db::now_millis),
            reservation_ttl_ms: millis(DEFAULT_RESERVATION_TTL),
        })
    }

    /// Reservations made from now on expire after `ttl`.
    #[must_use]
    pub fn with_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl_ms = millis(ttl);
        self
    }

    /// Reads the time from `clock` instead of the system's.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The stock of each product, in the order given; zero for products never stocked.
    pub async fn stock_levels(&self, product_ids: Vec<String>) -> Result<Vec<StockLevel>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        // One product is what every GetProduct asks: its statement is a constant.
        let sql = if product_ids.len() == 1 {
            Cow::Borrowed(STOCK_OF_ONE)
        } else {
            let placeholders = (1..=product_ids.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            Cow::Owned(format!(
                concat!(
                    "SELECT ",
                    stock_columns!(),
                    " FROM stock WHERE product_id IN ({})"
                ),
                placeholders
            ))
        };
        // What each asked product has, by position; rows are matched to it by id.
        let mut found: Vec<Option<Stocked>> = vec![None; product_ids.len()];
        let mut place = |id: &str, stocked: Stocked| {
            for (slot, _) in found
                .iter_mut()
                .zip(&product_ids)
                .filter(|(_, asked)| *asked == id)
            {
                *slot = Some(stocked);
            }
        };
        // The read path's one query (every GetProduct and ListProducts asks it): on SQLite
        // it runs on this thread, a primary-key lookup (meshmart::db::inline).
        if let Some(inline) = self.db.inline() {
            inline.read(|connection| {
                let mut statement = connection.prepare_cached(&sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(&product_ids))?;
                while let Some(row) = rows.next()? {
                    // Borrowed from the row: the ids asked for are what the answer keeps.
                    place(
                        row.get_ref(0)?.as_str()?,
                        (row.get(1)?, row.get(2)?, row.get(3)?),
                    );
                }
                Ok(())
            })?;
        } else {
            let mut query = sqlx::query_as(&sql);
            for id in &product_ids {
                query = query.bind(id);
            }
            let rows: Vec<(String, i64, i64, i64)> = query.fetch_all(self.db.read()).await?;
            for (id, available, reserved, update_time_ms) in rows {
                place(&id, (available, reserved, update_time_ms));
            }
        }
        Ok(product_ids
            .into_iter()
            .zip(found)
            .map(|(product_id, stocked)| match stocked {
                Some((available, reserved, update_time_ms)) => {
                    stock_level((product_id, available, reserved, update_time_ms))
                }
                None => StockLevel::never_stocked(product_id),
            })
            .collect())
    }
}

/// A stocked product's available and reserved counts and when they last changed.
type Stocked = (i64, i64, i64);

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

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

async fn available_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, product_id: &str) -> Result<i64> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT available FROM stock WHERE product_id = $1")
        .bind(product_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map_or(0, |(available,)| available))
}
