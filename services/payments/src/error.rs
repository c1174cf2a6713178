//! Payments' errors, and the one place they become gRPC statuses.

use meshmart::status::about_resource;
use tonic::Code;

meshmart::service_error! {
    pub enum Error {
        #[error("charge {0} not found")]
        ChargeNotFound(String),
        #[error("refund {0} not found")]
        RefundNotFound(String),
    }
    fn status(error, message) {
        Error::ChargeNotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.payments.v1.Charge",
            format!("charges/{id}"),
        ),
        Error::RefundNotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.payments.v1.Refund",
            format!("refunds/{id}"),
        ),
    }
}
