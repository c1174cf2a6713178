//! Fulfillment's errors, and the one place they become gRPC statuses.

use meshmart::status::about_resource;
use tonic::Code;

meshmart::service_error! {
    pub enum Error {
        #[error("shipment {0} not found")]
        ShipmentNotFound(String),
    }
    fn status(error, message) {
        Error::ShipmentNotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.fulfillment.v1.Shipment",
            format!("shipments/{id}"),
        ),
    }
}
