//! Charges and refunds in payments' own database (SQLite or PostgreSQL).
//!
//! Reads go through `Pools::read`. Writes happen inside the event handlers' transactions
//! (`meshmart::events::inbox::apply_once`), whose first statement is the inbox record, so
//! on SQLite they take the write lock before reading and on PostgreSQL a second handler of
//! the same event waits for the first. The functions taking a connection are those writes.
//!
//! `charges.rs` holds the charges and failed attempts, `refunds.rs` the refunds.

mod charges;
mod refunds;

pub(crate) use charges::{NewCharge, insert_charge, record_failed_attempt};
pub(crate) use refunds::{NewRefund, insert_refund};

/// An amount in a currency, as `google.type.Money` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    pub currency_code: String,
    pub units: i64,
    pub nanos: i32,
}

impl Amount {
    fn from_columns(currency_code: String, units: i64, nanos: i64) -> Self {
        Self {
            currency_code,
            units,
            // The column only ever holds what an i32 gave it.
            nanos: i32::try_from(nanos).unwrap_or_default(),
        }
    }
}

/// Where a settled charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeState {
    Succeeded,
    Declined,
    Failed,
}

impl ChargeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Declined => "DECLINED",
            Self::Failed => "FAILED",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "SUCCEEDED" => Self::Succeeded,
            "DECLINED" => Self::Declined,
            // The column's CHECK constraint allows nothing else.
            _ => Self::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    pub charge_id: String,
    pub order_id: String,
    pub amount: Amount,
    pub state: ChargeState,
    pub failure_reason: String,
    pub attempts: i32,
    pub card_brand: String,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub refund_id: String,
    pub charge_id: String,
    pub order_id: String,
    pub amount: Amount,
    pub reason: String,
    pub create_time_ms: i64,
}

/// Which page of a listing: of one order or all, after which item, how many.
pub type Page = meshmart::page_token::OrderPage;

meshmart::service_store!(Store);

/// The SQL of one page of `table`, oldest first by (`create_time_ms`, `id_column`): after
/// the position of the resource a token names (looked up by its id, as rows are never
/// deleted), and of one order when filtered. Binds: the order id if filtered, then the
/// token's id if any, then the limit.
fn page_sql(columns: &str, table: &str, id_column: &str, page: &Page) -> String {
    let mut conditions = Vec::new();
    let mut next = 1;
    if page.order_id.is_some() {
        conditions.push(format!("order_id = ${next}"));
        next += 1;
    }
    if page.after.is_some() {
        conditions.push(format!(
            "(create_time_ms, {id_column}) > \
             (SELECT create_time_ms, {id_column} FROM {table} WHERE {id_column} = ${next})"
        ));
        next += 1;
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {columns} FROM {table} {filter} ORDER BY create_time_ms, {id_column} LIMIT ${next}"
    )
}

/// One more than the page holds, to learn whether another follows.
fn fetch_limit(page: &Page) -> i64 {
    i64::try_from(page.size + 1).unwrap_or(i64::MAX)
}

impl Store {
    /// One page of `table`'s rows (see [`page_sql`]), and whether more follow.
    async fn page_of<R>(
        &self,
        columns: &str,
        table: &str,
        id_column: &str,
        page: &Page,
    ) -> Result<(Vec<R>, bool), sqlx::Error>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let sql = page_sql(columns, table, id_column, page);
        let mut query = sqlx::query_as::<_, R>(&sql);
        if let Some(order_id) = &page.order_id {
            query = query.bind(order_id);
        }
        if let Some(after) = &page.after {
            query = query.bind(after);
        }
        let mut rows = query
            .bind(fetch_limit(page))
            .fetch_all(self.db.read())
            .await?;
        let more = rows.len() > page.size;
        rows.truncate(page.size);
        Ok((rows, more))
    }
}
