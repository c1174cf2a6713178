//! Crash points for the failure tests: with the `fault-injection` feature (which release
//! builds leave out), `MESHMART_CRASH_AT=<point>` makes the process abort at that point, as
//! abruptly as SIGKILL would, so a test can check what survives a crash at the awkward
//! moment. Without the feature a crash point is nothing.

/// Aborts the process here if `MESHMART_CRASH_AT` names `point`.
#[cfg(feature = "fault-injection")]
pub fn crash_point(point: &str) {
    if std::env::var("MESHMART_CRASH_AT").is_ok_and(|at| at == point) {
        eprintln!("crash point {point}: aborting");
        std::process::abort();
    }
}

/// Aborts the process here if `MESHMART_CRASH_AT` names `point` (only with the
/// `fault-injection` feature).
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}

/// The server's fault layer (see [`faults`]): with the `fault-injection` feature and
/// `MESHMART_FAULTS` set, the calls that file names fail or wait as it says; otherwise
/// nothing.
#[cfg(feature = "fault-injection")]
pub fn layer() -> faults::FaultLayer {
    faults::FaultLayer::from_env()
}

/// The server's fault layer: nothing, without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
pub fn layer() -> tower_layer::Identity {
    tower_layer::Identity::new()
}

/// Faults for the mesh tests, which must make a real service fail in a chosen way while
/// it runs: `MESHMART_FAULTS` names a file the test writes, read on every call, one fault
/// per line, `<method path> <fault> <number>`:
///
/// - `/pkg.Service/Method unavailable-after N`: the next N calls run, their effect
///   commits, and their answer is replaced with UNAVAILABLE (the answer was lost on the
///   way: a retry must find the effect already there);
/// - `/pkg.Service/Method unavailable-before N`: the next N calls are answered UNAVAILABLE
///   without running;
/// - `/pkg.Service/Method delay MILLIS`: every call waits this long before it runs (a slow
///   dependency, for the routes' timeouts).
///
/// The counts are written back as they are used up.
#[cfg(feature = "fault-injection")]
pub mod faults {
    use std::path::PathBuf;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tonic::{Status, body::Body};
    use tower_layer::Layer;
    use tower_service::Service;

    /// What one call meets.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        UnavailableAfter,
        UnavailableBefore,
        Delay(Duration),
    }

    /// The faults file, and a lock so that two calls never use up the same count.
    #[derive(Debug, Clone, Default)]
    pub struct FaultLayer {
        file: Option<Arc<(PathBuf, tokio::sync::Mutex<()>)>>,
    }

    impl FaultLayer {
        pub fn from_env() -> Self {
            let file = std::env::var_os("MESHMART_FAULTS")
                .filter(|f| !f.is_empty())
                .map(|f| Arc::new((PathBuf::from(f), tokio::sync::Mutex::new(()))));
            Self { file }
        }

        /// The fault for a call to `path`, using up one of its count.
        async fn take(&self, path: &str) -> Option<Fault> {
            let (file, lock) = self.file.as_deref()?;
            let _held = lock.lock().await;
            // Blocking file access on a runtime thread: a few bytes, in test builds only.
            let text = std::fs::read_to_string(file).ok()?;
            let mut found = None;
            let mut lines: Vec<String> = Vec::new();
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (Some(&method), Some(&kind), Some(number)) = (
                    words.first(),
                    words.get(1),
                    words.get(2).and_then(|n| n.parse::<u64>().ok()),
                ) else {
                    lines.push(line.to_owned());
                    continue;
                };
                if found.is_some() || method != path {
                    lines.push(line.to_owned());
                    continue;
                }
                match kind {
                    "delay" => {
                        found = Some(Fault::Delay(Duration::from_millis(number)));
                        lines.push(line.to_owned());
                    }
                    "unavailable-after" | "unavailable-before" if number > 0 => {
                        found = Some(if kind == "unavailable-after" {
                            Fault::UnavailableAfter
                        } else {
                            Fault::UnavailableBefore
                        });
                        lines.push(format!("{method} {kind} {}", number - 1));
                    }
                    _ => lines.push(line.to_owned()),
                }
            }
            if matches!(
                found,
                Some(Fault::UnavailableAfter | Fault::UnavailableBefore)
            ) {
                let _ = std::fs::write(file, lines.join("\n") + "\n");
            }
            found
        }
    }

    impl<S> Layer<S> for FaultLayer {
        type Service = FaultService<S>;
        fn layer(&self, inner: S) -> Self::Service {
            FaultService {
                inner,
                layer: self.clone(),
            }
        }
    }

    #[derive(Debug, Clone)]
    pub struct FaultService<S> {
        inner: S,
        layer: FaultLayer,
    }

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    impl<S> Service<http::Request<Body>> for FaultService<S>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        type Response = http::Response<Body>;
        type Error = S::Error;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            if self.layer.file.is_none() {
                return Box::pin(self.inner.call(request));
            }
            // The readied service goes with the call; a clone stays for the next one.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let layer = self.layer.clone();
            Box::pin(async move {
                let path = request.uri().path().to_owned();
                let fault = layer.take(&path).await;
                if fault.is_some() {
                    tracing::warn!(method = %path, ?fault, "injecting a fault");
                }
                match fault {
                    Some(Fault::UnavailableBefore) => {
                        Ok(Status::unavailable("fault injected: not run").into_http())
                    }
                    Some(Fault::UnavailableAfter) => {
                        // Runs to its end (a unary call's effect has committed when its
                        // response is ready), then the answer is lost.
                        drop(inner.call(request).await?);
                        Ok(Status::unavailable("fault injected: the answer was lost").into_http())
                    }
                    Some(Fault::Delay(wait)) => {
                        tokio::time::sleep(wait).await;
                        inner.call(request).await
                    }
                    None => inner.call(request).await,
                }
            })
        }
    }
}
