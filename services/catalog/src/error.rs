//! The catalog's errors, and the one place they become gRPC statuses.

use meshmart::status::about_resource;
use tonic::{Code, Status};

meshmart::service_error! {
    pub enum Error {
        #[error("product {0} not found")]
        NotFound(String),
        #[error("product {0} already exists")]
        AlreadyExists(String),
    }
    fn status(error, message) {
        Error::NotFound(id) => product_status(Code::NotFound, message, id),
        Error::AlreadyExists(id) => product_status(Code::AlreadyExists, message, id),
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
