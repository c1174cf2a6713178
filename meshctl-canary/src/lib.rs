//! `meshctl canary`: the canary weights of meshmart's VirtualServices, read and set through
//! the Kubernetes API. See [`delegate`] for who owns the weights, and why.
//!
//! A crate of its own so that kube stays out of the `meshctl` binary; `meshctl canary ...`
//! runs the `meshctl-canary` binary next to it (or on PATH).

pub mod cli;
pub mod delegate;
pub mod error;
pub mod status;

use std::io::Write;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use cli::Cli;
pub use error::Error;

/// How long one answer of the API server may take: a command line tool should not hang
/// for kube's default of no limit.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the kubeconfig and context the command line names, or else the ones
/// kubectl would use (KUBECONFIG, ~/.kube/config, or in a pod its service account).
pub async fn client(cli: &Cli) -> Result<kube::Client, Error> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let boxed = |e: Box<dyn std::error::Error + Send + Sync>| Error::Config(e);
    let mut config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| boxed(e.into()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| boxed(e.into()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| boxed(e.into()))?,
        (None, None) => kube::Config::infer().await.map_err(|e| boxed(e.into()))?,
    };
    // One try per request: a failure is reported, and the user decides (kube would retry
    // 429, 503 and 504 by itself).
    config.default_retry = false;
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    kube::Client::try_from(config).map_err(|e| boxed(e.into()))
}

/// Runs the command with `client`, printing to `out`.
pub async fn run(cli: &Cli, client: &kube::Client, out: &mut dyn Write) -> Result<(), Error> {
    let namespace = cli.namespace.as_str();
    match &cli.command {
        cli::Command::Status { service, output } => {
            let statuses = status::collect(client, namespace, service.as_deref()).await?;
            status::print(&statuses, namespace, *output, out)
        }
        command => {
            let Some((target, weight)) = command.weight_change() else {
                return Ok(());
            };
            delegate::set_weight(
                client,
                namespace,
                &target.service,
                weight,
                target.dry_run,
                out,
            )
            .await
        }
    }
}
