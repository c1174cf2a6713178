//! Orders in the service's own database (SQLite or PostgreSQL), and the event tables
//! beside them (the outbox it publishes from, the inbox of events it applied).
//!
//! Concurrency: writes go through `Pools::write` (on SQLite the one writer connection) and
//! every write transaction starts with a write keyed on the order id, so on SQLite it holds
//! the write lock before it reads, and on PostgreSQL a second transaction on the same order
//! waits for the first and then sees what it did.
//!
//! `orders.rs` places and reads orders; `transitions.rs` moves them on.

mod orders;
mod transitions;

use meshmart::proto::{google::r#type::Money, orders::ShippingAddress};

pub use orders::{Earlier, Placed};
pub use transitions::{Advance, advance};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Paid,
    Shipped,
    Completed,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Shipped => "SHIPPED",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "PAID" => Self::Paid,
            "SHIPPED" => Self::Shipped,
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            // The columns' CHECK constraints allow nothing else.
            _ => Self::Pending,
        }
    }

    /// How far along the flow: an order moves only to a higher rank. FAILED can come
    /// after any state that is not final, so it ranks last.
    pub fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Paid => 1,
            Self::Shipped => 2,
            Self::Completed => 3,
            Self::Failed => 4,
        }
    }

    /// COMPLETED and FAILED: the order changes no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// One line of an order, at the price of the moment it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: Money,
}

/// One state an order has been in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: State,
    pub time_ms: i64,
    pub reason: String,
}

/// An order as stored. Its `Debug` leaves out the address, so no log line can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<Line>,
    pub total: Money,
    pub state: State,
    pub failure_reason: String,
    pub address: ShippingAddress,
    /// Oldest first by the flow's order (`State::rank`), the current state last.
    pub history: Vec<Transition>,
    pub create_time_ms: i64,
    pub update_time_ms: i64,
}

/// An order's place in a customer's list, newest first: when it was placed, and its id to
/// break ties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub create_time_ms: i64,
    pub order_id: String,
}

impl std::fmt::Debug for OrderRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRecord")
            .field("order_id", &self.order_id)
            .field("customer_id", &self.customer_id)
            .field("lines", &self.lines)
            .field("total", &self.total)
            .field("state", &self.state)
            .field("failure_reason", &self.failure_reason)
            .field("history", &self.history)
            .field("create_time_ms", &self.create_time_ms)
            .field("update_time_ms", &self.update_time_ms)
            .finish_non_exhaustive()
    }
}

/// An order about to be placed: PENDING, with what keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub record: OrderRecord,
    pub request_id: String,
    pub fingerprint: String,
}

meshmart::service_store!(Store);

/// `$1, $2, ...` for `count` values bound after `skip` others.
fn placeholders(skip: usize, count: usize) -> String {
    (skip + 1..=skip + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
