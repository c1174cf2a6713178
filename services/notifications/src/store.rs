//! Notifications, and whose each order is, in the service's own database (SQLite or
//! PostgreSQL). Reads go through `Pools::read`; the writes happen inside the consumer's
//! `apply_once` transaction, with the functions taking a connection.

use meshmart::proto::notifications::notification;
use sqlx::AnyConnection;

use crate::{Error, Result};

/// What a notification tells. Stored by name, so the table reads without the proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OrderPlaced,
    PaymentDeclined,
    OrderShipped,
    OrderCompleted,
    OrderFailed,
    RefundIssued,
}

impl Kind {
    const ALL: [Self; 6] = [
        Self::OrderPlaced,
        Self::PaymentDeclined,
        Self::OrderShipped,
        Self::OrderCompleted,
        Self::OrderFailed,
        Self::RefundIssued,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderPlaced => "ORDER_PLACED",
            Self::PaymentDeclined => "PAYMENT_DECLINED",
            Self::OrderShipped => "ORDER_SHIPPED",
            Self::OrderCompleted => "ORDER_COMPLETED",
            Self::OrderFailed => "ORDER_FAILED",
            Self::RefundIssued => "REFUND_ISSUED",
        }
    }

    /// The metric label: the name in lowercase.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order_placed",
            Self::PaymentDeclined => "payment_declined",
            Self::OrderShipped => "order_shipped",
            Self::OrderCompleted => "order_completed",
            Self::OrderFailed => "order_failed",
            Self::RefundIssued => "refund_issued",
        }
    }

    fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == stored)
    }

    pub fn proto(self) -> notification::Kind {
        match self {
            Self::OrderPlaced => notification::Kind::OrderPlaced,
            Self::PaymentDeclined => notification::Kind::PaymentDeclined,
            Self::OrderShipped => notification::Kind::OrderShipped,
            Self::OrderCompleted => notification::Kind::OrderCompleted,
            Self::OrderFailed => notification::Kind::OrderFailed,
            Self::RefundIssued => notification::Kind::RefundIssued,
        }
    }
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub notification_id: String,
    pub customer_id: String,
    pub order_id: String,
    /// `None` for a kind a newer release wrote.
    pub kind: Option<Kind>,
    pub subject: String,
    pub body: String,
    /// The event that caused it.
    pub event_id: String,
    pub create_time_ms: i64,
}

const COLUMNS: &str =
    "notification_id, customer_id, order_id, kind, subject, body, event_id, create_time_ms";

type Row = (String, String, String, String, String, String, String, i64);

fn record(
    (notification_id, customer_id, order_id, kind, subject, body, event_id, create_time_ms): Row,
) -> NotificationRecord {
    NotificationRecord {
        notification_id,
        customer_id,
        order_id,
        kind: Kind::parse(&kind),
        subject,
        body,
        event_id,
        create_time_ms,
    }
}

meshmart::service_store!(Store);

impl Store {
    /// One of `customer_id`'s notifications; another customer's is not found, as if it did
    /// not exist.
    pub async fn get(
        &self,
        customer_id: &str,
        notification_id: &str,
    ) -> Result<NotificationRecord> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE notification_id = $1 AND customer_id = $2"
        ))
        .bind(notification_id)
        .bind(customer_id)
        .fetch_optional(self.db.read())
        .await?;
        row.map(record)
            .ok_or_else(|| Error::NotFound(notification_id.to_owned()))
    }

    /// Up to `size` of `customer_id`'s notifications, newest first, of one order or of all,
    /// after the notification `after` (the last of the previous page); and whether more
    /// follow.
    pub async fn list(
        &self,
        customer_id: &str,
        order_id: Option<&str>,
        after: Option<&str>,
        size: usize,
    ) -> Result<(Vec<NotificationRecord>, bool)> {
        // The page goes on below the previous page's last row, found by its key: the token
        // holds one id whatever the sort.
        let mut sql = format!("SELECT {COLUMNS} FROM notifications WHERE customer_id = $1");
        let mut next = 2;
        if order_id.is_some() {
            sql.push_str(&format!(" AND order_id = ${next}"));
            next += 1;
        }
        if after.is_some() {
            sql.push_str(&format!(
                " AND (create_time_ms, notification_id) < \
                 (SELECT create_time_ms, notification_id FROM notifications \
                  WHERE notification_id = ${next} AND customer_id = $1)"
            ));
            next += 1;
        }
        sql.push_str(&format!(
            " ORDER BY create_time_ms DESC, notification_id DESC LIMIT ${next}"
        ));
        let mut query = sqlx::query_as::<_, Row>(&sql).bind(customer_id);
        if let Some(order_id) = order_id {
            query = query.bind(order_id);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        let limit = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
        let mut rows: Vec<NotificationRecord> = query
            .bind(limit)
            .fetch_all(self.db.read())
            .await?
            .into_iter()
            .map(record)
            .collect();
        let more = rows.len() > size;
        rows.truncate(size);
        Ok((rows, more))
    }
}

/// Records whose order `order_id` is. The first OrderCreated decides: a second one naming
/// another customer changes nothing.
pub(crate) async fn remember_customer(
    tx: &mut AnyConnection,
    order_id: &str,
    customer_id: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_customers (order_id, customer_id, create_time_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(customer_id)
    .bind(now_ms)
    .execute(tx)
    .await?;
    Ok(())
}

/// Whose order `order_id` is, once its OrderCreated has arrived.
pub(crate) async fn customer_of(
    tx: &mut AnyConnection,
    order_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT customer_id FROM order_customers WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(tx)
            .await?;
    Ok(row.map(|(customer,)| customer))
}

/// Writes `notification` unless its order already has one of its kind; `true` if written.
pub(crate) async fn insert(
    tx: &mut AnyConnection,
    notification: &NotificationRecord,
    kind: Kind,
) -> Result<bool, sqlx::Error> {
    let written = sqlx::query(&format!(
        "INSERT INTO notifications ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (order_id, kind) DO NOTHING"
    ))
    .bind(&notification.notification_id)
    .bind(&notification.customer_id)
    .bind(&notification.order_id)
    .bind(kind.as_str())
    .bind(&notification.subject)
    .bind(&notification.body)
    .bind(&notification.event_id)
    .bind(notification.create_time_ms)
    .execute(tx)
    .await?;
    Ok(written.rows_affected() == 1)
}
