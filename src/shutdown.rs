//! The signals that end a service: SIGTERM (Kubernetes, `meshctl up`) and SIGINT (Ctrl-C).

use std::pin::Pin;

/// A future that completes when the service should stop.
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Completes when SIGTERM or SIGINT arrives.
pub fn signal() -> Signal {
    Box::pin(wait_for_signal())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                    _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for shutdown signals; stopping");
            }
        }
    }
    #[cfg(not(unix))]
    {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c; stopping");
        }
    }
}
