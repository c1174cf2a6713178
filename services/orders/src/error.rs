//! The orders service's errors, and the one place they become gRPC statuses.

use meshmart::status::{about_resource, failed_precondition};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

meshmart::service_error! {
    pub enum Error {
        #[error("order {0} not found")]
        NotFound(String),
        /// Products the catalog does not have. FAILED_PRECONDITION rather than
        /// INVALID_ARGUMENT: the request is well formed, and whether a product exists is
        /// the catalog's state (it may be added tomorrow), which is what AIP-193 keeps
        /// FAILED_PRECONDITION for; a shortage of stock is answered the same way.
        #[error("not in the catalog: {0:?}")]
        UnknownProducts(Vec<String>),
        /// The lines are priced in more than one currency, so they have no one total.
        #[error("the products are priced in different currencies ({0}); order them separately")]
        MixedCurrencies(String),
        /// Inventory's answer to a reservation it could not hold, passed on with its
        /// PreconditionFailure (which product, how many are left): a shortage is the
        /// caller's business, unlike inventory's other failures.
        #[error("not enough stock")]
        OutOfStock(Status),
        /// The stock held for this request by an earlier attempt was given back (it expired)
        /// before the order was stored: the order cannot be placed under this request_id.
        #[error("the stock held for request {0} was given back before the order was placed; place the order again with a new request_id")]
        StockLapsed(String),
        /// A stored first reply that does not decode: the database holds something this
        /// release did not write.
        #[error("the stored reply of order {0} is unreadable")]
        UnreadableReply(String),
    }
    fn status(error, message) {
        Error::NotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.orders.v1.Order",
            format!("orders/{id}"),
        ),
        Error::UnknownProducts(ids) => {
            let mut details = ErrorDetails::new();
            for id in ids {
                details.add_precondition_failure_violation(
                    "PRODUCT",
                    id,
                    "no such product in the catalog",
                );
            }
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        Error::MixedCurrencies(_) => failed_precondition("CURRENCY", "lines", message),
        Error::OutOfStock(status) => Status::with_details(
            Code::FailedPrecondition,
            status.message(),
            status.details().to_vec().into(),
        ),
        Error::StockLapsed(request_id) => failed_precondition("RESERVATION", request_id, message),
        Error::UnreadableReply(_) => {
            tracing::error!(error = %message, "stored reply unreadable");
            Status::internal("internal error")
        }
    }
}
