//! The benchmarks' baseline: `meshmart.echo.v1.EchoService`, served by the same
//! [`ServiceHost`] and [`meshmart::runtime::main`] as every meshmart service (the same
//! layers, health, reflection, metrics, telemetry and drain), and doing no work of its own.
//! Whatever a real service costs beyond this one is the cost of its own work.
//!
//! With `ECHO_NEXT_ADDR` set it is the two-hop baseline: each call is passed on to the echo
//! service at that address over the same client stack catalog uses for inventory
//! ([`meshmart::client::connect_lazy`], with the call context propagated), and that reply
//! is returned. It is the floor for what GetProduct's two hops cost with no work at all.

#![forbid(unsafe_code)]

use meshmart::{
    client::MeshChannel,
    config::{ConfigError, Env, ServerConfig, ServiceInfo},
    proto::echo::{
        EchoRequest, EchoResponse,
        echo_service_client::EchoServiceClient,
        echo_service_server::{EchoService, EchoServiceServer},
    },
    server::{Listeners, ServiceHost},
    status::Failure,
};
use tonic::{Request, Response, Status};

/// The echo service's name and port: 50050, beside the shop's 50051 and up, so that the
/// baseline runs alongside the services it is compared with.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "echo",
    grpc_port: 50050,
};

/// Everything the echo service is configured with: what every server is, and where the
/// next echo is, for the two-hop baseline.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// `ECHO_NEXT_ADDR`: the echo service each call is passed on to; unset, calls are
    /// answered here.
    pub next_addr: Option<String>,
}

impl Config {
    /// The signature is the one [`meshmart::runtime::main`] asks of every service.
    pub fn from_env(env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        let next_addr = match env.get("ECHO_NEXT_ADDR") {
            Some(_) => Some(env.endpoint_or("ECHO_NEXT_ADDR", "")?),
            None => None,
        };
        Ok(Self { server, next_addr })
    }
}

/// The echo service: answers each call itself, or passes it on to the next echo.
#[derive(Debug, Clone, Default)]
pub struct Echo {
    next: Option<EchoServiceClient<MeshChannel>>,
}

impl Echo {
    /// An echo that answers every call itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// An echo that passes every call on to `next`, as catalog does to inventory.
    pub fn passing_to(next: EchoServiceClient<MeshChannel>) -> Self {
        Self { next: Some(next) }
    }
}

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest { message } = request.into_inner();
        let Some(next) = &self.next else {
            return Ok(Response::new(EchoResponse { message }));
        };
        // A clone per call, as every service does with its clients: tonic's channel is a
        // handle, and the call needs `&mut`.
        match next.clone().echo(EchoRequest { message }).await {
            Ok(reply) => Ok(Response::new(reply.into_inner())),
            Err(status) => Err(Failure::downstream("echo", status).into()),
        }
    }
}

/// Serves the echo service on `listeners` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    let echo = match &config.next_addr {
        Some(next) => Echo::passing_to(EchoServiceClient::new(meshmart::client::connect_lazy(
            next,
        )?)),
        None => Echo::new(),
    };
    // The registry holds only the build info metric, as every service's does.
    ServiceHost::new(&config.server)
        .add_service(EchoServiceServer::new(echo))
        .serve(listeners, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use meshmart::{proto::echo::echo_service_client::EchoServiceClient, testing};

    use super::*;

    #[tokio::test]
    async fn echoes_over_grpc() {
        let server = spawn(None).await;
        let mut client = EchoServiceClient::connect(server.endpoint()).await.unwrap();
        let reply = client
            .echo(EchoRequest {
                message: "products/espresso-cup".to_owned(),
            })
            .await
            .unwrap();
        assert_eq!(reply.get_ref().message, "products/espresso-cup");
        assert_eq!(
            reply
                .metadata()
                .get(meshmart::server::SERVICE_HEADER)
                .unwrap(),
            "echo"
        );
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn passes_calls_on_to_the_next_echo() {
        let last = spawn(None).await;
        let first = spawn(Some(last.endpoint())).await;
        let mut client = EchoServiceClient::connect(first.endpoint()).await.unwrap();
        let reply = client
            .echo(EchoRequest {
                message: "two hops".to_owned(),
            })
            .await
            .unwrap();
        assert_eq!(reply.get_ref().message, "two hops");
        // The next echo is gone: its failure is answered as any downstream one is.
        last.stop().await.unwrap();
        let status = client
            .echo(EchoRequest {
                message: "two hops".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        first.stop().await.unwrap();
    }

    async fn spawn(next_addr: Option<String>) -> testing::TestServer<meshmart::Error> {
        let config = Config {
            server: testing::server_config(SERVICE),
            next_addr,
        };
        testing::TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
            serve(config, listeners, shutdown)
        })
        .await
    }
}
