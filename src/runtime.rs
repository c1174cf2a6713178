//! The `main` of every service binary, so each one starts, logs, fails and stops the same way.

use std::{fmt::Display, process::ExitCode};

use crate::{
    config::{ConfigError, Env, ServerConfig, ServiceInfo, TelemetryConfig},
    server::Listeners,
};

/// Exit code for a configuration the service cannot start with.
const EXIT_CONFIG: u8 = 2;

/// Reads the configuration from the process environment, sets up telemetry, binds the
/// listeners and serves until SIGTERM or SIGINT. A configuration error is printed naming
/// the variable, and the process exits with code 2 before anything starts.
pub fn main<C, Fut, E>(
    service: ServiceInfo,
    configure: impl FnOnce(&Env, ServerConfig) -> Result<C, ConfigError>,
    serve: impl FnOnce(C, Listeners, crate::shutdown::Signal) -> Fut,
) -> ExitCode
where
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let env = Env::from_process();
    let configured = (|| {
        let telemetry = TelemetryConfig::from_env(&env)?;
        let server = ServerConfig::from_env(&env, service)?;
        let config = configure(&env, server.clone())?;
        Ok::<_, ConfigError>((telemetry, server, config))
    })();
    let (telemetry, server, config) = match configured {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("{}: {error}", service.name);
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the async runtime: {error}", service.name);
            return ExitCode::FAILURE;
        }
    };

    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(service.name, &server.version, &telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{}: {error}", service.name);
                return ExitCode::FAILURE;
            }
        };
        let result = match Listeners::bind(&server).await {
            Ok(listeners) => serve(config, listeners, crate::shutdown::service_signal())
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "service failed");
                ExitCode::FAILURE
            }
        }
    })
}
