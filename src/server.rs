//! The gRPC server every service runs: its services, plus health, reflection, context
//! propagation, version metadata, limits, a metrics endpoint and a graceful drain.
//!
//! The HTTP/2 connections are served here with hyper rather than by tonic's `Server`,
//! because tonic's server answers an expired `grpc-timeout` with CANCELLED, which the
//! mesh's routes would treat as retryable, and gives no hook to say how many calls a drain
//! left behind. The gRPC services themselves are still tonic's.

mod call;
mod flow;

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tonic::{body::Body, server::NamedService, service::RoutesBuilder};
use tonic_health::pb::health_check_response::ServingStatus;
use tower::ServiceBuilder;
use tower_service::Service;

/// What completes when a service should stop: `serve` takes it as its shutdown.
pub use crate::shutdown::Signal;
use crate::{Error, Result, config::ServerConfig, context::ServerContextLayer, health::Health};
pub use call::{CallLayer, InFlight};
pub use flow::FlowHost;

/// The response metadata that tells which service and version answered, so a canary split
/// can be seen from `grpcurl -v`.
pub const VERSION_HEADER: &str = "x-meshmart-version";
pub const SERVICE_HEADER: &str = "x-meshmart-service";

/// The sockets a service listens on, bound before it starts so that tests can bind port 0
/// and learn the address.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub metrics: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &ServerConfig) -> Result<Self> {
        Ok(Self {
            grpc: bind(config.grpc_addr).await?,
            metrics: bind(config.metrics_addr).await?,
        })
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.local_addr().ok()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.local_addr().ok()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Assembles one service's server. Every service builds it the same way:
/// `ServiceHost::new(&config)`, its metrics registered in [`ServiceHost::registry`], then
/// `.add_service(...)`, any `.run_beside(...)`, and `.serve(listeners, shutdown)`.
pub struct ServiceHost {
    config: ServerConfig,
    registry: Registry,
    routes: RoutesBuilder,
    health: Health,
    names: Vec<&'static str>,
    beside: Vec<(&'static str, BesideTask)>,
}

/// Work a service does beside answering calls (a sweeper, an outbox relay, an event
/// consumer), started with a signal that completes when the drain begins.
type BesideTask = Box<dyn FnOnce(crate::shutdown::Signal) -> crate::shutdown::Signal + Send>;

impl std::fmt::Debug for ServiceHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHost")
            .field("service", &self.config.service.name)
            .field("services", &self.names)
            .field(
                "beside",
                &self.beside.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ServiceHost {
    /// A host for the service `config` names, with its metrics registry holding the
    /// build info every service reports.
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            registry: crate::metrics::registry(config.service.name, &config.version),
            config: config.clone(),
            routes: RoutesBuilder::default(),
            health: Health::new(),
            names: Vec::new(),
            beside: Vec::new(),
        }
    }

    /// Where the service registers its own metrics, served on its metrics port.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Runs `task` while the service serves. Its argument completes when the drain begins;
    /// the task should then finish what it holds and return. Once the connections have
    /// closed, the host waits for it up to the grace period, and then drops it.
    pub fn run_beside<F, Fut>(mut self, name: &'static str, task: F) -> Self
    where
        F: FnOnce(crate::shutdown::Signal) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.beside.push((
            name,
            Box::new(move |stopping| Box::pin(task(stopping)) as crate::shutdown::Signal),
        ));
        self
    }

    /// Runs the consumer group `config` on `bus` beside the service
    /// ([`crate::events::run_consumer`]), handing every delivery to `handler`; it takes no
    /// new event once the drain begins, and finishes the one in hand.
    pub fn consume_beside<B, H>(
        self,
        bus: B,
        config: crate::events::ConsumerConfig,
        handler: H,
    ) -> Self
    where
        B: crate::events::EventBus,
        H: crate::events::EventHandler,
    {
        self.run_beside("event consumer", move |stopping| async move {
            let group = config.name.clone();
            let handler = &handler;
            let consumed = crate::events::run_consumer(
                bus,
                config,
                |incoming| handler.handle(incoming),
                stopping,
            )
            .await;
            if let Err(error) = consumed {
                tracing::error!(consumer = %group, %error, "the event consumer cannot run");
            }
        })
    }

    /// Publishes what the service's transactions write into `outbox`, through `bus`,
    /// beside the service ([`crate::events::outbox::Outbox::relay`]), and samples how far
    /// behind it is into `meshmart_outbox_lag_ms`: registered here, so every service that
    /// relays exports the same gauge under the same name.
    pub fn relay_beside<B: crate::events::EventBus>(
        mut self,
        outbox: crate::events::outbox::Outbox,
        bus: B,
    ) -> Self {
        let lag = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        self.registry.register(
            crate::events::outbox::LAG_METRIC,
            "How long the oldest unpublished event has waited in the outbox, in milliseconds",
            lag.clone(),
        );
        let sampled = outbox.clone();
        self.run_beside("outbox relay", move |stopping| outbox.relay(bus, stopping))
            .run_beside("outbox lag", move |stopping| {
                sampled.sample_lag(lag, stopping)
            })
    }

    /// Adds a gRPC service; it reports SERVING once the server is listening, and server
    /// reflection lists it.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self.names.push(S::NAME);
        self
    }

    /// Serves until `shutdown` completes, then drains:
    /// 1. health turns NOT_SERVING for every service and health watches end, so probes and
    ///    load balancers stop sending new calls;
    /// 2. for the drain delay, new connections and calls are still served;
    /// 3. then the listener closes and every connection is told to go away (HTTP/2 GOAWAY)
    ///    once its calls end;
    /// 4. calls in flight get the grace period to finish. If some are still running when
    ///    it ends, they are abandoned and `serve` fails with [`Error::Abandoned`].
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Self {
            config,
            registry,
            mut routes,
            health,
            names,
            beside,
        } = self;

        routes.add_service(health.service());
        routes.add_service(reflection::v1(&names)?);
        routes.add_service(reflection::v1alpha(&names)?);

        let in_flight = InFlight::default();
        let service = ServiceBuilder::new()
            // Outermost, so the span, the call context and the deadline cover everything.
            .layer(ServerContextLayer)
            // Counts the call until its response has been sent, checks message sizes, and
            // marks every response with who answered.
            .layer(CallLayer::new(&config, in_flight.clone()))
            // Test builds only (the `fault-injection` feature): the faults a mesh test
            // asks for; nothing in release builds.
            .layer(crate::fault::layer())
            .service(routes.routes().prepare());

        let (stop_metrics_tx, stop_metrics_rx) = tokio::sync::oneshot::channel::<()>();
        let metrics = tokio::spawn(crate::metrics::serve(listeners.metrics, registry, async {
            let _ = stop_metrics_rx.await;
        }));

        let (draining_tx, draining_rx) = watch::channel(false);
        let mut beside_tasks = JoinSet::new();
        for (name, task) in beside {
            let mut draining = draining_rx.clone();
            let stopping: crate::shutdown::Signal = Box::pin(async move {
                let _ = draining.wait_for(|draining| *draining).await;
            });
            beside_tasks.spawn(async move {
                task(stopping).await;
                name
            });
        }

        health.set_all(&names, ServingStatus::Serving);
        tracing::info!(
            service = config.service.name,
            version = %config.version,
            grpc_addr = %config.grpc_addr,
            metrics_addr = %config.metrics_addr,
            "serving"
        );
        let mut connections = Connections::new(listeners.grpc, service);
        connections.accept_until(shutdown).await;

        health.start_drain();
        let _ = draining_tx.send(true);
        tracing::info!(
            drain_delay_secs = config.drain_delay.as_secs_f64(),
            "health is NOT_SERVING; draining"
        );
        connections
            .accept_until(tokio::time::sleep(config.drain_delay))
            .await;
        let grace_ends = tokio::time::Instant::now() + config.grace_period;
        let result = connections.close(config.grace_period, &in_flight).await;
        stop_beside(beside_tasks, grace_ends).await;

        let _ = stop_metrics_tx.send(());
        match metrics.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(Error::Metrics(error)),
            Err(error) => tracing::error!(%error, "metrics server task failed"),
        }
        if result.is_ok() {
            tracing::info!("stopped");
        }
        result
    }
}

/// Waits until the grace period ends for the tasks beside the service to return, and drops
/// the rest: what they hold must be safe to lose (an unacknowledged event comes back).
async fn stop_beside(mut tasks: JoinSet<&'static str>, grace_ends: tokio::time::Instant) {
    let finished = tokio::time::timeout_at(grace_ends, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(name) => tracing::debug!(task = name, "stopped"),
                Err(error) => tracing::error!(%error, "task beside the service failed"),
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            tasks = tasks.len(),
            "tasks beside the service did not stop in time; dropping them"
        );
        tasks.shutdown().await;
    }
}

/// What answers each call on a connection: the per-call layers over tonic's routes.
trait CallStack:
    Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> CallStack for S where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The open HTTP/2 connections of one server, each served by its own task.
struct Connections<S> {
    listener: Option<TcpListener>,
    service: S,
    tasks: JoinSet<()>,
    /// Flips to true when the connections should finish their calls and close.
    go_away: watch::Sender<bool>,
}

impl<S> Connections<S>
where
    S: CallStack,
{
    fn new(listener: TcpListener, service: S) -> Self {
        Self {
            listener: Some(listener),
            service,
            tasks: JoinSet::new(),
            go_away: watch::Sender::new(false),
        }
    }

    /// Accepts connections until `until` completes.
    async fn accept_until(&mut self, until: impl Future<Output = ()>) {
        let Some(listener) = &self.listener else {
            return;
        };
        tokio::pin!(until);
        loop {
            let event = tokio::select! {
                () = &mut until => return,
                accepted = listener.accept() => Some(accepted),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => None,
            };
            match event {
                Some(Ok((stream, _peer))) => {
                    // gRPC calls are small and latency-bound: send each frame at once.
                    let _ = stream.set_nodelay(true);
                    self.tasks.spawn(serve_connection(
                        stream,
                        self.service.clone(),
                        self.go_away.subscribe(),
                    ));
                }
                Some(Err(error)) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // A connection ended; its task was reaped.
                None => {}
            }
        }
    }

    /// Closes the listener, asks every connection to go away once its calls end, and waits
    /// up to `grace_period` for them.
    async fn close(mut self, grace_period: Duration, in_flight: &InFlight) -> Result<()> {
        self.listener = None;
        self.go_away.send_replace(true);
        let all_closed = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace_period, all_closed).await.is_ok() {
            return Ok(());
        }
        let abandoned = in_flight.count();
        tracing::error!(
            grace_period_secs = grace_period.as_secs_f64(),
            calls_in_flight = abandoned,
            "grace period over; abandoning calls in flight"
        );
        self.tasks.abort_all();
        Err(Error::Abandoned {
            calls: abandoned,
            grace_period,
        })
    }
}

async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    mut go_away: watch::Receiver<bool>,
) where
    S: CallStack,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // As tonic's server: no limit on concurrent calls per connection (the mesh's
    // connection pool settings are the limit).
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(None);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = go_away.wait_for(|go| *go) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection ended with an error while draining");
    }
}

/// Server reflection that lists exactly what this server serves: its own services, health
/// and reflection, not every service in the shared descriptor set.
mod reflection {
    use crate::{Result, proto};

    const ALWAYS: [&str; 3] = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];

    fn builder(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can print BadRequest and friends.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        names
            .iter()
            .chain(ALWAYS.iter())
            .fold(builder, |builder, name| builder.with_service_name(*name))
    }

    // grpcurl 1.8 speaks only v1alpha; newer clients speak v1. Serve both.
    pub(super) fn v1(
        names: &[&'static str],
    ) -> Result<
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
    > {
        Ok(builder(names).build_v1()?)
    }

    pub(super) fn v1alpha(
        names: &[&'static str],
    ) -> Result<
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    > {
        Ok(builder(names).build_v1alpha()?)
    }
}
