//! Products in the catalog's own database (SQLite or PostgreSQL).

use meshmart::db::Pools;
use meshmart::status::Failure;
use meshmart::{config::DatabaseConfig, db::now_millis, demo};

use crate::{Error, Result};

const COLUMNS: &str = "product_id, display_name, description, currency_code, price_units, price_nanos, create_time_ms, update_time_ms";

const PRODUCTS_VERSION: &str = "SELECT version FROM products_version WHERE id = 1";

const INSERT_DEMO_PRODUCT: &str = "INSERT INTO products (product_id, display_name, description, currency_code, price_units, price_nanos, create_time_ms, update_time_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING";

/// A product as stored: everything but its stock, which inventory owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    pub product_id: String,
    pub display_name: String,
    pub description: String,
    pub price: Price,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

/// An amount in a currency, as `google.type.Money` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub currency_code: String,
    pub units: i64,
    pub nanos: i32,
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductChanges {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Price>,
}

/// Whether a create made the product, or found the one an earlier call with the same
/// `request_id` made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Now,
    Earlier,
}

type Row = (String, String, String, String, i64, i64, i64, i64);

fn record(
    (
        product_id,
        display_name,
        description,
        currency_code,
        units,
        nanos,
        create_time_ms,
        update_time_ms,
    ): Row,
) -> ProductRecord {
    ProductRecord {
        product_id,
        display_name,
        description,
        price: Price {
            currency_code,
            units,
            nanos: i32::try_from(nanos).unwrap_or_default(),
        },
        create_time_ms,
        update_time_ms,
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Pools,
}

impl Store {
    /// Connects, migrates, and adds the demo products to an empty database when asked to.
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, meshmart::Error> {
        let now = now_millis();
        let demo_products = move || {
            demo::PRODUCTS
                .iter()
                .map(|product: &'static demo::DemoProduct| {
                    sqlx::query(INSERT_DEMO_PRODUCT)
                        .bind(product.id)
                        .bind(product.display_name)
                        .bind(product.description)
                        .bind(product.currency_code)
                        .bind(product.price_units)
                        .bind(i64::from(product.price_nanos))
                        .bind(now)
                })
                .collect()
        };
        let db = meshmart::db::connect_seeded(
            config,
            sqlx::migrate!("./migrations"),
            "products",
            demo_products,
        )
        .await?;
        // Triggers have no portable syntax: each backend has its own folder for them.
        let mut triggers = if config.backend() == "sqlite" {
            sqlx::migrate!("./migrations-sqlite")
        } else {
            sqlx::migrate!("./migrations-postgres")
        };
        triggers.set_ignore_missing(true);
        triggers.run(db.write()).await?;
        Ok(Self { db })
    }

    /// The number every change to `products` raises (`crate::cache` says why).
    /// On SQLite it runs on this thread, as the read path's lookups do: each replica asks
    /// 40 times a second, and a hand-off to sqlx's connection thread would wake two threads
    /// on every one.
    pub async fn products_version(&self) -> Result<i64> {
        if let Some(inline) = self.db.inline() {
            return Ok(inline.read(|connection| {
                connection
                    .prepare_cached(PRODUCTS_VERSION)?
                    .query_row([], |row| row.get(0))
            })?);
        }
        Ok(sqlx::query_scalar(PRODUCTS_VERSION)
            .fetch_one(self.db.read())
            .await?)
    }

    pub async fn get(&self, product_id: &str) -> Result<ProductRecord> {
        let sql = format!("SELECT {COLUMNS} FROM products WHERE product_id = $1");
        let mut rows = self.select(&sql, &[product_id], None).await?;
        rows.pop()
            .map(record)
            .ok_or_else(|| Error::NotFound(product_id.to_owned()))
    }

    /// Up to `limit` products after `after` (exclusive) in product-id order, and whether
    /// more follow.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ProductRecord>, bool)> {
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let rows = match after {
            Some(after) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM products WHERE product_id > $1 ORDER BY product_id LIMIT $2"
                );
                self.select(&sql, &[after], Some(fetch)).await?
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM products ORDER BY product_id LIMIT $1");
                self.select(&sql, &[], Some(fetch)).await?
            }
        };
        let more = rows.len() > limit;
        Ok((rows.into_iter().take(limit).map(record).collect(), more))
    }

    /// The read path's queries: a primary-key lookup, or a page of the primary-key index,
    /// bound to `keys` and then `limit`. On SQLite they run on this thread
    /// (meshmart::db::inline); on PostgreSQL through the pool.
    async fn select(&self, sql: &str, keys: &[&str], limit: Option<i64>) -> Result<Vec<Row>> {
        if let Some(inline) = self.db.inline() {
            let params = keys
                .iter()
                .map(|key| key as &dyn rusqlite::ToSql)
                .chain(limit.as_ref().map(|limit| limit as &dyn rusqlite::ToSql));
            return Ok(inline.read(|connection| {
                connection
                    .prepare_cached(sql)?
                    .query_map(rusqlite::params_from_iter(params), |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                        ))
                    })?
                    .collect()
            })?);
        }
        let mut query = sqlx::query_as(sql);
        for key in keys {
            query = query.bind(*key);
        }
        if let Some(limit) = limit {
            query = query.bind(limit);
        }
        Ok(query.fetch_all(self.db.read()).await?)
    }

    /// Creates a product. With a `request_id`, a repeat of an earlier call returns the
    /// product that call created instead of failing.
    pub async fn create(
        &self,
        request_id: Option<&str>,
        product: &ProductRecord,
    ) -> Result<(ProductRecord, Created)> {
        let now = now_millis();
        let fingerprint = fingerprint(product);
        let inserted = sqlx::query(&format!(
            "INSERT INTO products ({COLUMNS}, create_request_id, create_request_fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) ON CONFLICT DO NOTHING"
        ))
        .bind(&product.product_id)
        .bind(&product.display_name)
        .bind(&product.description)
        .bind(&product.price.currency_code)
        .bind(product.price.units)
        .bind(i64::from(product.price.nanos))
        .bind(now)
        .bind(request_id)
        .bind(&fingerprint)
        .execute(self.db.write())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok((self.get(&product.product_id).await?, Created::Now));
        }
        if let Some(request_id) = request_id {
            let earlier: Option<(String, Option<String>)> = sqlx::query_as(
                "SELECT product_id, create_request_fingerprint FROM products WHERE create_request_id = $1",
            )
            .bind(request_id)
            .fetch_optional(self.db.read())
            .await?;
            if let Some((earlier_id, earlier_fingerprint)) = earlier {
                // Rows made before fingerprints were kept compare by product id alone.
                let same = earlier_id == product.product_id
                    && earlier_fingerprint.is_none_or(|earlier| earlier == fingerprint);
                return if same {
                    Ok((self.get(&earlier_id).await?, Created::Earlier))
                } else {
                    Err(Failure::key_reused("request_id", request_id).into())
                };
            }
        }
        Err(Error::AlreadyExists(product.product_id.clone()))
    }

    /// Applies `changes` to a product and returns it as it is now.
    pub async fn update(
        &self,
        product_id: &str,
        changes: &ProductChanges,
    ) -> Result<ProductRecord> {
        // COALESCE keeps a column when its parameter is NULL, so one statement serves
        // every combination of fields in the mask.
        let updated = sqlx::query(
            "UPDATE products SET \
               display_name = COALESCE($2, display_name), \
               description = COALESCE($3, description), \
               currency_code = COALESCE($4, currency_code), \
               price_units = COALESCE($5, price_units), \
               price_nanos = COALESCE($6, price_nanos), \
               update_time_ms = $7 \
             WHERE product_id = $1",
        )
        .bind(product_id)
        .bind(changes.display_name.as_deref())
        .bind(changes.description.as_deref())
        .bind(changes.price.as_ref().map(|p| p.currency_code.as_str()))
        .bind(changes.price.as_ref().map(|p| p.units))
        .bind(changes.price.as_ref().map(|p| i64::from(p.nanos)))
        .bind(now_millis())
        .execute(self.db.write())
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::NotFound(product_id.to_owned()));
        }
        self.get(product_id).await
    }
}

/// A digest of what a CreateProduct asked for: each field, length-prefixed so that no two
/// different requests run together into the same bytes.
fn fingerprint(product: &ProductRecord) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for field in [
        product.product_id.as_bytes(),
        product.display_name.as_bytes(),
        product.description.as_bytes(),
        product.price.currency_code.as_bytes(),
        &product.price.units.to_be_bytes(),
        &product.price.nanos.to_be_bytes(),
    ] {
        digest.update(u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
        digest.update(field);
    }
    digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
