//! The benchmarks' baseline: `meshmart.echo.v1.EchoService`, served by the same
//! [`ServiceHost`] and [`meshmart::runtime::main`] as every meshmart service (the same
//! layers, health, reflection, metrics, telemetry and drain), and doing no work of its own.
//! Whatever a real service costs beyond this one is the cost of its own work.

#![forbid(unsafe_code)]

use meshmart::{
    config::{ConfigError, Env, ServerConfig, ServiceInfo},
    proto::echo::{
        EchoRequest, EchoResponse,
        echo_service_server::{EchoService, EchoServiceServer},
    },
    server::{Listeners, ServiceHost},
};
use tonic::{Request, Response, Status};

/// The echo service's name and port: 50050, beside the shop's 50051 and up, so that the
/// baseline runs alongside the services it is compared with.
pub const SERVICE: ServiceInfo = ServiceInfo {
    name: "echo",
    grpc_port: 50050,
};

/// Everything the echo service is configured with: only what every server is.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
}

impl Config {
    /// The echo service has no settings of its own; the signature is the one
    /// [`meshmart::runtime::main`] asks of every service.
    pub fn from_env(_env: &Env, server: ServerConfig) -> Result<Self, ConfigError> {
        Ok(Self { server })
    }
}

/// The echo service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest { message } = request.into_inner();
        Ok(Response::new(EchoResponse { message }))
    }
}

/// Serves the echo service on `listeners` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), meshmart::Error> {
    // The registry holds only the build info metric, as every service's does.
    ServiceHost::new(&config.server)
        .add_service(EchoServiceServer::new(Echo))
        .serve(listeners, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use meshmart::{proto::echo::echo_service_client::EchoServiceClient, testing};

    use super::*;

    #[tokio::test]
    async fn echoes_over_grpc() {
        let config = Config {
            server: testing::server_config(SERVICE),
        };
        let server = testing::TestServer::spawn(&config.server.clone(), |listeners, shutdown| {
            serve(config, listeners, shutdown)
        })
        .await;
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
}
