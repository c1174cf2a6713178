//! The gRPC server every service runs: its services, plus health, reflection, context
//! propagation, version metadata, a metrics endpoint and a graceful drain.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use http::HeaderValue;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::RoutesBuilder,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};
use tower::ServiceBuilder;
use tower_service::Service;

use crate::{Error, Result, config::ServerConfig, context::ServerContextLayer, proto};

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
/// `ServiceHost::new(&config, registry).add_service(...).serve(listeners, shutdown)`.
#[derive(Debug)]
pub struct ServiceHost {
    config: ServerConfig,
    registry: Registry,
    routes: RoutesBuilder,
    health: HealthReporter,
    health_service: HealthServer<HealthService>,
    names: Vec<&'static str>,
}

impl ServiceHost {
    pub fn new(config: &ServerConfig, registry: Registry) -> Self {
        let health = HealthReporter::new();
        let health_service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
        Self {
            config: config.clone(),
            registry,
            routes: RoutesBuilder::default(),
            health,
            health_service,
            names: Vec::new(),
        }
    }

    /// Adds a gRPC service; it reports SERVING once the server is listening.
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
    /// 1. health turns NOT_SERVING for every service, so probes and load balancers stop
    ///    sending new calls;
    /// 2. after the drain delay the listener closes: new connections are refused and open
    ///    ones are told to go away once their calls end;
    /// 3. calls in flight get the grace period to finish; then the server stops regardless.
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
            health_service,
            names,
        } = self;

        routes.add_service(health_service);
        routes.add_service(reflection_v1()?);
        routes.add_service(reflection_v1alpha()?);
        for name in &names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        health.set_service_status("", ServingStatus::Serving).await;

        let (drain_started_tx, drain_started_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_metrics_tx, stop_metrics_rx) = tokio::sync::oneshot::channel::<()>();
        let drain = {
            let health = health.clone();
            let names = names.clone();
            let delay = config.drain_delay;
            async move {
                shutdown.await;
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                for name in &names {
                    health
                        .set_service_status(*name, ServingStatus::NotServing)
                        .await;
                }
                tracing::info!(
                    drain_delay_secs = delay.as_secs(),
                    "health is NOT_SERVING; draining"
                );
                tokio::time::sleep(delay).await;
                let _ = drain_started_tx.send(());
            }
        };

        let metrics = tokio::spawn(crate::metrics::serve(listeners.metrics, registry, async {
            let _ = stop_metrics_rx.await;
        }));

        let version = header_value(&config.version);
        let service = header_value(config.service.name);
        let layers = ServiceBuilder::new()
            // Outermost, so the span and the call context cover everything below.
            .layer(ServerContextLayer)
            // Every response says who answered, errors included.
            .map_response(move |mut response: http::Response<Body>| {
                let headers = response.headers_mut();
                headers.insert(VERSION_HEADER, version.clone());
                headers.insert(SERVICE_HEADER, service.clone());
                response
            })
            .into_inner();

        let incoming = TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
        tracing::info!(
            service = config.service.name,
            version = %config.version,
            grpc_addr = %config.grpc_addr,
            metrics_addr = %config.metrics_addr,
            "serving"
        );
        let server = Server::builder()
            .layer(layers)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, drain);

        let result = grace(server, drain_started_rx, config.grace_period).await;
        let _ = stop_metrics_tx.send(());
        match metrics.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(Error::Metrics(error)),
            Err(error) => tracing::error!(%error, "metrics server task failed"),
        }
        tracing::info!("stopped");
        result
    }
}

/// Runs the server; once the drain has started, gives calls in flight `period` to finish.
async fn grace(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    drain_started: tokio::sync::oneshot::Receiver<()>,
    period: Duration,
) -> Result<()> {
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        started = drain_started => {
            if started.is_err() {
                // The drain future was dropped without starting: the server ended first.
                return Ok(server.await?);
            }
        }
    }
    match tokio::time::timeout(period, &mut server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!(
                grace_period_secs = period.as_secs(),
                "grace period over; abandoning calls in flight"
            );
            Ok(())
        }
    }
}

fn header_value(value: &str) -> HeaderValue {
    // Config validation allows only visible ASCII here, so this cannot fail in practice.
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc error details, so grpcurl can print BadRequest and friends.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

// grpcurl 1.8 speaks only v1alpha; newer clients speak v1. Serve both.
fn reflection_v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    Ok(reflection_builder().build_v1()?)
}

fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
> {
    Ok(reflection_builder().build_v1alpha()?)
}
