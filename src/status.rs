//! What every service's errors have in common, and the helpers that turn a service's own
//! errors into `tonic::Status` with `google.rpc` details.
//!
//! Each service keeps one error enum, mapped to a status in one place (its `error.rs`); the
//! failures every service can meet ([`Failure`]) are one variant there, and map here.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The failures any service can meet, whatever its domain.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// An idempotency key came back with a different request: a client bug, never a retry.
    #[error("{field} {key} was already used for a different request")]
    KeyReused { field: &'static str, key: String },
    /// A call to another service failed; carries its status.
    #[error("{callee}: {}", .status.message())]
    Downstream {
        callee: &'static str,
        status: Status,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A read made on the calling thread ([`crate::db::inline`]) failed.
    #[error("database: {0}")]
    InlineRead(#[from] rusqlite::Error),
}

impl Failure {
    pub fn key_reused(field: &'static str, key: impl Into<String>) -> Self {
        Self::KeyReused {
            field,
            key: key.into(),
        }
    }

    pub fn downstream(callee: &'static str, status: Status) -> Self {
        Self::Downstream { callee, status }
    }
}

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::KeyReused { .. } => Status::already_exists(failure.to_string()),
            // Nothing another service answers is the caller's doing: the shared rule applies.
            Failure::Downstream { callee, status } => {
                crate::client::downstream_failure(callee, &status)
            }
            Failure::Database(error) => crate::db::status(&error),
            Failure::InlineRead(error) => crate::db::inline::status(&error),
        }
    }
}

/// A status about one resource, with a ResourceInfo naming it: NOT_FOUND, ALREADY_EXISTS.
pub fn about_resource(
    code: Code,
    message: impl Into<String>,
    resource_type: &str,
    resource_name: impl Into<String>,
) -> Status {
    let details = ErrorDetails::with_resource_info(resource_type, resource_name, "", "");
    Status::with_error_details(code, message, details)
}

/// FAILED_PRECONDITION with one PreconditionFailure violation: what kind of precondition
/// (`STOCK`, `STATE`, ...), about what, and the message again as its description.
pub fn failed_precondition(kind: &str, subject: impl Into<String>, message: String) -> Status {
    let details = ErrorDetails::with_precondition_failure_violation(kind, subject, message.clone());
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// A service's one error enum and its one mapping to `tonic::Status`, with what every
/// service shares written once: the [`Failure`] variant and its mapping, the `Result`
/// alias, and the conversion of database errors. The service writes its own variants, and
/// for each the status a caller sees (`message` is the error's text).
///
/// ```ignore
/// meshmart::service_error! {
///     /// The catalog's errors.
///     pub enum Error {
///         #[error("product {0} not found")]
///         NotFound(String),
///     }
///     fn status(error, message) {
///         Error::NotFound(id) => Status::not_found(message),
///     }
/// }
/// ```
#[macro_export]
macro_rules! service_error {
    (
        $(#[$meta:meta])*
        pub enum $error:ident { $($variants:tt)* }
        fn status($value:ident, $message:ident) { $($arms:tt)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, thiserror::Error)]
        pub enum $error {
            $($variants)*
            /// What any service can meet: a reused idempotency key, another service's
            /// failure, the database's.
            #[error(transparent)]
            Failure(#[from] $crate::status::Failure),
        }

        pub type Result<T, E = $error> = std::result::Result<T, E>;

        impl From<sqlx::Error> for $error {
            fn from(error: sqlx::Error) -> Self {
                Self::Failure(error.into())
            }
        }

        impl From<$crate::db::inline::rusqlite::Error> for $error {
            fn from(error: $crate::db::inline::rusqlite::Error) -> Self {
                Self::Failure(error.into())
            }
        }

        impl From<$error> for tonic::Status {
            fn from($value: $error) -> Self {
                #[allow(unused_variables)]
                let $message = $value.to_string();
                match $value {
                    $error::Failure(failure) => failure.into(),
                    $($arms)*
                }
            }
        }
    };
}
