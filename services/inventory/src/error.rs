//! The inventory's errors, and the one place they become gRPC statuses.

use meshmart::status::{about_resource, failed_precondition};
use tonic::Code;

meshmart::service_error! {
    pub enum Error {
        #[error("reservation {0} not found")]
        ReservationNotFound(String),
        #[error("insufficient stock for {product_id}: {requested} requested, {available} available")]
        InsufficientStock {
            product_id: String,
            requested: i64,
            available: i64,
        },
        #[error("reservation {reservation_id} is {state} and cannot be {action}")]
        ReservationClosed {
            reservation_id: String,
            state: &'static str,
            action: &'static str,
        },
    }
    fn status(error, message) {
        Error::ReservationNotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.inventory.v1.Reservation",
            id,
        ),
        Error::InsufficientStock { product_id, .. } => {
            failed_precondition("STOCK", product_id, message)
        }
        Error::ReservationClosed { reservation_id, .. } => {
            failed_precondition("STATE", reservation_id, message)
        }
    }
}
