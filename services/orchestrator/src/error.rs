//! The orchestrator's errors, and the one place they become gRPC statuses.

use meshmart::status::about_resource;
use tonic::{Code, Status};

meshmart::service_error! {
    pub enum Error {
        #[error("saga {0} not found")]
        SagaNotFound(String),
        #[error("dead letter {0} not found")]
        DeadLetterNotFound(u64),
        /// The event bus failed a dead-letter operation.
        #[error("event bus: {0}")]
        Bus(meshmart::Error),
    }
    fn status(error, message) {
        Error::SagaNotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.orchestrator.v1.Saga",
            format!("sagas/{id}"),
        ),
        Error::DeadLetterNotFound(id) => about_resource(
            Code::NotFound,
            message,
            "meshmart.orchestrator.v1.DeadLetter",
            format!("deadLetters/{id}"),
        ),
        // The broker's detail is for the log; the caller learns to try later.
        Error::Bus(error) => {
            tracing::warn!(%error, "event bus failed");
            Status::unavailable("the event bus is not available; try again later")
        }
    }
}
