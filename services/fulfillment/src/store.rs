//! Shipments in fulfillment's own database (SQLite or PostgreSQL).
//!
//! Reads go through `Pools::read`. Writes happen inside the event handlers' transactions
//! (`meshmart::events::inbox::apply_once`), whose first statement is the inbox record and
//! whose second is the order's `order_progress` row ([`note_progress`]): two events of one
//! order are so applied one after the other, on SQLite by its one writer and on PostgreSQL
//! by that row's lock, and the second sees what the first did (a ShipmentRequested and a
//! PaymentSucceeded arriving together ship the order once, never zero times).
//!
//! `shipments.rs` holds the shipments, their lines and addresses.

mod shipments;

use sqlx::AnyConnection;

pub(crate) use shipments::{
    NewShipment, awaiting_shipment, cancel_awaiting, insert_shipment, mark_failed, mark_shipped,
};

/// Where a shipment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentState {
    AwaitingPayment,
    Shipped,
    Failed,
    Cancelled,
}

impl ShipmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "AWAITING_PAYMENT",
            Self::Shipped => "SHIPPED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "SHIPPED" => Self::Shipped,
            "FAILED" => Self::Failed,
            "CANCELLED" => Self::Cancelled,
            // The column's CHECK constraint allows nothing else.
            _ => Self::AwaitingPayment,
        }
    }
}

/// A shipment as the API shows it: no address but its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentRecord {
    pub shipment_id: String,
    pub order_id: String,
    pub state: ShipmentState,
    /// Ordered by product id.
    pub lines: Vec<(String, i64)>,
    pub tracking_number: String,
    pub failure_reason: String,
    pub region_code: String,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

/// Which page of a listing: of one order or all, after which item, how many.
pub type Page = meshmart::page_token::OrderPage;

/// What an event tells about its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Its ShipmentRequested arrived: nothing to note but the order itself.
    Requested,
    Paid,
    Failed,
}

/// What fulfillment knows of an order, the event being applied included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OrderProgress {
    pub(crate) paid: bool,
    pub(crate) failed: bool,
}

meshmart::service_store!(Store);

/// Notes `progress` for `order_id` within `tx` and returns all that is known of the order.
/// Call it first in every handler's transaction (see the module's comment).
pub(crate) async fn note_progress(
    tx: &mut AnyConnection,
    order_id: &str,
    progress: Progress,
    now_ms: i64,
) -> Result<OrderProgress, sqlx::Error> {
    let (paid, failed) = match progress {
        Progress::Requested => (None, None),
        Progress::Paid => (Some(now_ms), None),
        Progress::Failed => (None, Some(now_ms)),
    };
    let (paid_time_ms, failed_time_ms): (Option<i64>, Option<i64>) = sqlx::query_as(
        "INSERT INTO order_progress (order_id, paid_time_ms, failed_time_ms, update_time_ms) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (order_id) DO UPDATE SET \
           paid_time_ms = COALESCE(order_progress.paid_time_ms, excluded.paid_time_ms), \
           failed_time_ms = COALESCE(order_progress.failed_time_ms, excluded.failed_time_ms), \
           update_time_ms = excluded.update_time_ms \
         RETURNING paid_time_ms, failed_time_ms",
    )
    .bind(order_id)
    .bind(paid)
    .bind(failed)
    .bind(now_ms)
    .fetch_one(tx)
    .await?;
    Ok(OrderProgress {
        paid: paid_time_ms.is_some(),
        failed: failed_time_ms.is_some(),
    })
}
