//! What can go wrong, each as one line that names what failed.

use std::error::Error as _;
use std::fmt;

/// Every error of the crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service has no delegate VirtualService: the chart renders one only for a service
    /// with `canary.enabled`.
    #[error(
        "{service} has no canary in namespace {namespace} (no VirtualService {service}-weights; \
         set services.{service}.canary.enabled)"
    )]
    NoCanary { service: String, namespace: String },
    /// The delegate is not what the chart renders: one route with two destinations.
    #[error("VirtualService {namespace}/{name} is not a canary's weights: {reason}")]
    MalformedDelegate {
        namespace: String,
        name: String,
        reason: String,
    },
    /// The kubeconfig could not be found, read or used.
    #[error("kubeconfig: {}", chain(.0.as_ref()))]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A request to the API server failed; `what` names it (`get VirtualService ns/name`).
    #[error("{what}: {}", ApiFailure(.source))]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The answer could not be printed (stdout closed).
    #[error("write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// A failed request to the API server, `what` naming it.
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }

    /// The process's exit code for this error, as `meshctl dlq` has them: 1 for a service
    /// without a canary or a malformed delegate, 3 for the API server out of reach or
    /// failing (2 is clap's, for a usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NoCanary { .. } | Error::MalformedDelegate { .. } => 1,
            Error::Config(_) | Error::Api { .. } | Error::Output(_) => 3,
        }
    }
}

/// An error and its sources on one line: `a: b: c`, without repeating a source the
/// message already has (many of kube's errors include their source in their message).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = next.source();
    }
    line.replace('\n', " ")
}

/// kube's error as a person reads it: the HTTP status and the server's message for an
/// answer, "unreachable" for no answer. kube's own Display of a Status is its Debug dump.
struct ApiFailure<'a>(&'a kube::Error);

impl fmt::Display for ApiFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            kube::Error::Api(status) => {
                let meaning = match status.code {
                    401 => "unauthorized (the kubeconfig's credentials were refused)",
                    403 => "forbidden",
                    404 => "not found",
                    409 => "conflict",
                    422 => "invalid",
                    429 => "too many requests",
                    500..=599 => "the API server failed",
                    _ => "refused",
                };
                write!(f, "{meaning} (HTTP {})", status.code)?;
                if !status.message.is_empty() {
                    write!(f, ": {}", status.message.replace('\n', " "))?;
                }
                Ok(())
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                let cause = self.0.source().map(chain).unwrap_or_default();
                write!(f, "the API server is unreachable: {cause}")
            }
            other => f.write_str(&chain(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.to_owned(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn an_api_answer_is_one_line_with_its_status() {
        let error = Error::api("patch VirtualService meshmart/catalog-weights")(status(
            403,
            "virtualservices is forbidden:\nUser \"x\" cannot patch",
        ));
        assert_eq!(
            error.to_string(),
            "patch VirtualService meshmart/catalog-weights: forbidden (HTTP 403): \
             virtualservices is forbidden: User \"x\" cannot patch"
        );
        assert_eq!(error.exit_code(), 3);
    }

    #[test]
    fn a_service_without_a_canary_says_how_to_get_one() {
        let error = Error::NoCanary {
            service: "orders".to_owned(),
            namespace: "shop".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "orders has no canary in namespace shop (no VirtualService orders-weights; \
             set services.orders.canary.enabled)"
        );
        assert_eq!(error.exit_code(), 1);
    }
}
