//! The signals that end a service: SIGTERM (Kubernetes, `meshctl up`) and SIGINT (Ctrl-C).
//!
//! The handlers are installed when [`signal`] or [`service_signal`] is called, not when the
//! future is first polled: a service reports SERVING before its serve loop polls the future,
//! and a SIGTERM that arrived in between would otherwise kill it with the default action.

use std::{pin::Pin, time::Duration};

/// A future that completes when the service should stop.
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Completes when SIGTERM or SIGINT arrives. Must be called inside a Tokio runtime.
pub fn signal() -> Signal {
    Box::pin(wait_for_signal(Handlers::install(), false))
}

/// Completes when SIGTERM or SIGINT arrives, and from then on ends the process at once
/// when a second one arrives: whoever sends it (a person pressing Ctrl-C twice, a
/// supervisor that has waited long enough) does not want the drain to finish.
pub fn service_signal() -> Signal {
    Box::pin(wait_for_signal(Handlers::install(), true))
}

/// The rhythm of periodic work a service does beside its calls (`ServiceHost::run_beside`),
/// such as a sweep or a sampled gauge, until the drain begins:
///
/// ```ignore
/// let mut runs = Periodic::new(interval, stopping);
/// while runs.next().await {
///     sweep().await;
/// }
/// ```
///
/// The first run is at once. A run in progress when `stopping` completes is finished (the
/// loop ends at the next [`Periodic::next`]); a run that takes longer than the period delays
/// the next one rather than bunching them up.
pub struct Periodic {
    ticks: tokio::time::Interval,
    stopping: Signal,
    stopped: bool,
}

impl std::fmt::Debug for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("period", &self.ticks.period())
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Periodic {
    pub fn new(period: Duration, stopping: Signal) -> Self {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ticks,
            stopping,
            stopped: false,
        }
    }

    /// Waits for the next run: `true` when it is due, `false` once `stopping` completed.
    pub async fn next(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        tokio::select! {
            () = &mut self.stopping => {
                self.stopped = true;
                false
            }
            _ = self.ticks.tick() => true,
        }
    }
}

#[cfg(unix)]
struct Handlers(std::io::Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

#[cfg(unix)]
impl Handlers {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self(
            signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?))),
        )
    }
}

#[cfg(not(unix))]
struct Handlers;

#[cfg(not(unix))]
impl Handlers {
    fn install() -> Self {
        Self
    }
}

async fn wait_for_signal(handlers: Handlers, exit_on_second: bool) {
    #[cfg(unix)]
    {
        match handlers.0 {
            Ok((mut term, mut int)) => {
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
            Err(error) => {
                tracing::error!(%error, "cannot listen for shutdown signals; stopping");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let Handlers = handlers;
        let _ = exit_on_second;
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c; stopping");
        }
    }
}
