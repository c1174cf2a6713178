//! The catalog's errors, and the one place they become gRPC statuses.

use meshmart::status::{Failure, about_resource};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("product {0} not found")]
    NotFound(String),
    #[error("product {0} already exists")]
    AlreadyExists(String),
    /// A reused request_id, inventory's failure, or the database's.
    #[error(transparent)]
    Failure(#[from] Failure),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Failure(error.into())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::NotFound(id) => product_status(Code::NotFound, message, id),
            Error::AlreadyExists(id) => product_status(Code::AlreadyExists, message, id),
            Error::Failure(failure) => failure.into(),
        }
    }
}

fn product_status(code: Code, message: String, id: String) -> Status {
    about_resource(
        code,
        message,
        "meshmart.catalog.v1.Product",
        format!("products/{id}"),
    )
}
