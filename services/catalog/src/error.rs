//! The catalog's errors, and the one place they become gRPC statuses.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("product {0} not found")]
    NotFound(String),
    #[error("product {0} already exists")]
    AlreadyExists(String),
    /// A request_id came back with a different request: a client bug, never a retry.
    #[error("request_id {0} was already used to create a different product")]
    KeyReused(String),
    /// The stock lookup failed; carries inventory's status.
    #[error("inventory: {}", .0.message())]
    Inventory(Status),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::NotFound(id) => product_status(Code::NotFound, message, &id),
            Error::AlreadyExists(id) => product_status(Code::AlreadyExists, message, &id),
            Error::KeyReused(_) => Status::already_exists(message),
            // Nothing inventory answers is the caller's doing: the shared rule applies.
            Error::Inventory(status) => meshmart::client::downstream_failure("inventory", &status),
            Error::Database(error) => meshmart::db::status(&error),
        }
    }
}

/// A status about one product, with a ResourceInfo naming it.
fn product_status(code: Code, message: String, id: &str) -> Status {
    let resource = ErrorDetails::with_resource_info(
        "meshmart.catalog.v1.Product",
        format!("products/{id}"),
        "",
        "",
    );
    Status::with_error_details(code, message, resource)
}
