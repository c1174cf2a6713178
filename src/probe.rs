//! Waiting for a service to report a health status: `grpc.health.v1.Health/Check`, asked
//! again on a fresh connection every short interval until the answer is the one wanted or
//! time runs out. What `meshctl up`, the load generator and the tests wait on before they
//! use a service, and what a kubelet's gRPC probe does.
//!
//! Each try opens a new connection, as a probe from outside would: a refused connection
//! (the port not bound yet) fails at once and is tried again one interval later, and once
//! the port is bound the check waits in the listen backlog and is answered as soon as the
//! server runs.

use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub use tonic_health::pb::health_check_response::ServingStatus;

/// Why a check, or a wait, did not see the status wanted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid endpoint {0:?}: expected http://host:port")]
    Endpoint(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("health check failed: {0:?}")]
    Rpc(tonic::Code),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
    #[error("{endpoint} did not report {want} for {service:?} within {waited:?} (last: {last})")]
    TimedOut {
        endpoint: String,
        service: String,
        want: &'static str,
        waited: Duration,
        /// The last status seen, or why there was none.
        last: String,
    },
}

/// Waits until `service` at `endpoint` (`http://host:port`; an empty service is the server
/// as a whole) reports SERVING, polling every 50 ms for at most `timeout`. Returns how long
/// it waited.
pub async fn wait_until_serving(
    endpoint: &str,
    service: &str,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    HealthProbe::new(endpoint, service)
        .wait_for(ServingStatus::Serving, timeout)
        .await
}

/// One service's health, polled. [`wait_until_serving`] is the common case.
#[derive(Debug, Clone)]
pub struct HealthProbe {
    endpoint: String,
    service: String,
    interval: Duration,
    attempt_timeout: Duration,
}

impl HealthProbe {
    /// Polls every 50 ms; each try may take up to 2 s.
    pub fn new(endpoint: &str, service: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            service: service.to_owned(),
            interval: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(2),
        }
    }

    /// The pause between tries: short to see a start sooner, longer to ask less often.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long one try (connecting and the call) may take; never more than the time left.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Asks once.
    pub async fn check(&self) -> Result<ServingStatus, ProbeError> {
        self.check_within(self.attempt_timeout).await
    }

    /// Asks until the answer is `want`, for at most `timeout`; returns how long that took.
    pub async fn wait_for(
        &self,
        want: ServingStatus,
        timeout: Duration,
    ) -> Result<Duration, ProbeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut last_logged = started;
        let mut last = None;
        loop {
            let budget = self
                .attempt_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            match self.check_within(budget).await {
                Ok(status) if status == want => return Ok(started.elapsed()),
                Ok(status) => last = Some(status.as_str_name().to_owned()),
                Err(error @ ProbeError::Endpoint(_)) => return Err(error),
                // Cut short by the deadline: what the try before saw says more.
                Err(ProbeError::NoAnswer(_)) if budget < self.attempt_timeout && last.is_some() => {
                }
                Err(error) => last = Some(error.to_string()),
            }
            let seen = last.as_deref().unwrap_or_default();
            if Instant::now() + self.interval >= deadline {
                return Err(ProbeError::TimedOut {
                    endpoint: self.endpoint.clone(),
                    service: self.service.clone(),
                    want: want.as_str_name(),
                    waited: timeout,
                    last: seen.to_owned(),
                });
            }
            // A start that is stuck shows in the log, without a line per try.
            if last_logged.elapsed() >= Duration::from_secs(5) {
                last_logged = Instant::now();
                tracing::info!(
                    endpoint = %self.endpoint,
                    service = %self.service,
                    want = want.as_str_name(),
                    last = seen,
                    "waiting for a health status"
                );
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn check_within(&self, timeout: Duration) -> Result<ServingStatus, ProbeError> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|_| ProbeError::Endpoint(self.endpoint.clone()))?
            .connect_timeout(timeout)
            .tcp_nodelay(true);
        let check = async {
            let channel = endpoint
                .connect()
                .await
                .map_err(|error| ProbeError::Connect(error.to_string()))?;
            let reply = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: self.service.clone(),
                })
                .await
                .map_err(|status| ProbeError::Rpc(status.code()))?;
            Ok(reply.get_ref().status())
        };
        tokio::time::timeout(timeout, check)
            .await
            .unwrap_or(Err(ProbeError::NoAnswer(timeout)))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tonic::transport::{Server, server::TcpIncoming};

    use super::*;

    #[tokio::test]
    async fn waits_for_serving_and_says_how_long() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let server = tokio::spawn(
            Server::builder()
                .add_service(health)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let probe = HealthProbe::new(&endpoint, "").interval(Duration::from_millis(5));
        assert_eq!(probe.check().await.unwrap(), ServingStatus::NotServing);
        let error = probe
            .wait_for(ServingStatus::Serving, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("last: NOT_SERVING"), "{error}");

        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            reporter
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
        });
        let waited = wait_until_serving(&endpoint, "", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        // A service the server does not know is an answer too, not a hang.
        let error = wait_until_serving(&endpoint, "no.such.Service", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("NotFound"), "{error}");
        server.abort();
    }

    #[tokio::test]
    async fn gives_up_in_time_when_nothing_listens() {
        // Bound and closed again: nothing listens there now.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let started = Instant::now();
        let error = wait_until_serving(&format!("http://{addr}"), "", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(error.to_string().contains("cannot connect"), "{error}");
        assert!(matches!(
            wait_until_serving("not a url", "", Duration::from_secs(5)).await,
            Err(ProbeError::Endpoint(_))
        ));
    }
}
