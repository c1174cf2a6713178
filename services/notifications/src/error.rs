//! The notifications service's errors, and the one place they become gRPC statuses.

use meshmart::status::about_resource;
use tonic::Code;

meshmart::service_error! {
    pub enum Error {
        #[error("notification {0} not found")]
        NotFound(String),
    }
    fn status(error, message) {
        Error::NotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.notifications.v1.Notification",
            format!("notifications/{id}"),
        ),
    }
}
