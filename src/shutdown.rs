//! The signals that end a service: SIGTERM (Kubernetes, `meshctl up`) and SIGINT (Ctrl-C).

use std::pin::Pin;

/// A future that completes when the service should stop.
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Completes when SIGTERM or SIGINT arrives.
pub fn signal() -> Signal {
    Box::pin(wait_for_signal(false))
}

/// Completes when SIGTERM or SIGINT arrives, and from then on ends the process at once
/// when a second one arrives: whoever sends it (a person pressing Ctrl-C twice, a
/// supervisor that has waited long enough) does not want the drain to finish.
pub fn service_signal() -> Signal {
    Box::pin(wait_for_signal(true))
}

async fn wait_for_signal(exit_on_second: bool) {
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
                if exit_on_second {
                    tokio::spawn(async move {
                        // 128 + the signal's number, as a shell reports a process it killed.
                        let (name, code) = tokio::select! {
                            _ = term.recv() => ("SIGTERM", 143),
                            _ = int.recv() => ("SIGINT", 130),
                        };
                        tracing::warn!(signal = name, "second signal; exiting now");
                        std::process::exit(code);
                    });
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for shutdown signals; stopping");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = exit_on_second;
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c; stopping");
        }
    }
}
