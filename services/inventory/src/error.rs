//! The inventory's errors, and the one place they become gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reservation {0} not found")]
    ReservationNotFound(String),
    #[error("insufficient stock for {product_id}: {requested} requested, {available} available")]
    InsufficientStock {
        product_id: String,
        requested: i64,
        available: i64,
    },
    /// An idempotency key came back with a different request: a client bug, never a retry.
    #[error("{field} {key} was already used for a different request")]
    KeyReused { field: &'static str, key: String },
    #[error("reservation {reservation_id} is {state} and cannot be {action}")]
    ReservationClosed {
        reservation_id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::ReservationNotFound(id) => Status::with_error_details(
                Code::NotFound,
                message,
                ErrorDetails::with_resource_info("meshmart.inventory.v1.Reservation", id, "", ""),
            ),
            Error::InsufficientStock { product_id, .. } => Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure_violation("STOCK", product_id, message),
            ),
            Error::KeyReused { .. } => Status::already_exists(message),
            Error::ReservationClosed { reservation_id, .. } => Status::with_error_details(
                Code::FailedPrecondition,
                message.clone(),
                ErrorDetails::with_precondition_failure_violation("STATE", reservation_id, message),
            ),
            Error::Database(error) => meshmart::db::status(&error),
        }
    }
}
