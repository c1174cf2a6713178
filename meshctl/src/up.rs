//! `meshctl up`: the whole shop as child processes of this one.
//!
//! Each service runs as `meshctl serve <name>` in its own process, so it is configured,
//! logs and stops exactly as it does in a container, and calls between services cross a
//! real socket.
//!
//! Once every service reports SERVING, one that exits is restarted (`supervise`); before
//! that, an exit fails `up`: a service that cannot start once (a configuration error, exit
//! code 2; a port taken) has nothing good to be restarted into, and its own error says more
//! than a loop of restarts would.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use meshmart::{config::ServiceInfo, probe};
use tokio::time::Instant;

use crate::{
    children::{self, Child, Launch, Signals, SpawnError},
    supervise::{self, Service},
};

/// The services `up` starts, in start order: dependencies first.
const SERVICES: &[ServiceInfo] = &[
    inventory::SERVICE,
    catalog::SERVICE,
    orders::SERVICE,
    payments::SERVICE,
    fulfillment::SERVICE,
    notifications::SERVICE,
    orchestrator::SERVICE,
];

/// How long the shop may take to report SERVING before `up` gives up; and a restarted
/// service, before it is killed.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Below the options in `meshctl up --help`.
pub(crate) const AFTER_HELP: &str = "\
Environment:
  Every service variable (README: Configuration) is passed on to the services, except
  GRPC_ADDR, METRICS_ADDR, DATA_DIR, INVENTORY_ADDR and CATALOG_ADDR, which meshctl sets;
  without NATS_URL the services share the embedded event log in DATA_DIR.
  LOG_FORMAT                  text unless set
  SHUTDOWN_DRAIN_DELAY_SECS   after SIGTERM, how long a service keeps serving (default 0)
  SHUTDOWN_GRACE_PERIOD_SECS  then, how long calls in flight may take (default 20)

Once the shop is up, a service that exits (a crash, a kill, any exit code) is started
again after 1 s, then 2, 4, 8, 16 and at most 30 s while it keeps failing, and from 1 s
again once it has served for 60 s; meshctl says so on stderr, and when it is back. It
never gives up. A service that exits before the shop is first up fails `up` instead.

On SIGTERM or Ctrl-C every service gets SIGTERM (one waiting to restart is not started
again); one that has not exited after its drain delay plus grace period plus 5 s gets
SIGKILL. A second Ctrl-C kills them all at once. The exit code is 0 only if every service
running then stopped cleanly by itself.";

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub(crate) struct Options {
    /// Where the services keep their SQLite databases
    #[arg(long, value_name = "DIR", default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// Add N to every port, to run a second shop beside the first
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=10_000))]
    pub(crate) port_offset: u16,
}

impl Options {
    pub(crate) fn grpc_addr(&self, service: &ServiceInfo) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, service.grpc_port + self.port_offset))
    }

    fn metrics_addr(&self, service: &ServiceInfo) -> SocketAddr {
        SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            service.metrics_port() + self.port_offset,
        ))
    }

    /// What meshctl sets for a child, on top of its own environment.
    fn child_vars(&self, service: &ServiceInfo) -> Vec<(&'static str, String)> {
        let inventory = self.grpc_addr(&inventory::SERVICE);
        let catalog = self.grpc_addr(&catalog::SERVICE);
        vec![
            ("GRPC_ADDR", self.grpc_addr(service).to_string()),
            ("METRICS_ADDR", self.metrics_addr(service).to_string()),
            // Every service's database file, and the event log they share.
            ("DATA_DIR", self.data_dir.display().to_string()),
            ("INVENTORY_ADDR", format!("http://{inventory}")),
            ("CATALOG_ADDR", format!("http://{catalog}")),
            // Children write through pipes, so pick their log format for the terminal
            // meshctl is on.
            (
                "LOG_FORMAT",
                std::env::var("LOG_FORMAT").unwrap_or_else(|_| "text".to_owned()),
            ),
        ]
    }
}

pub(crate) fn run(options: &Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("meshctl: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(up(options))
}

async fn up(options: &Options) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("meshctl: cannot find my own executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::listen() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("meshctl: cannot listen for SIGTERM and SIGINT: {error}");
            return ExitCode::FAILURE;
        }
    };
    let width = SERVICES
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or_default();
    let launches: Vec<Launch> = SERVICES
        .iter()
        .map(|service| Launch {
            exe: exe.clone(),
            service: *service,
            vars: options.child_vars(service),
            prefix: format!("{:width$} | ", service.name),
        })
        .collect();
    let mut running = Vec::new();
    for launch in &launches {
        match launch.spawn() {
            Ok(child) => running.push(child),
            Err(error) => {
                eprintln!("meshctl: cannot start {}: {error}", launch.service.name);
                children::stop_all(running, &mut signals).await;
                return match error {
                    // As the service itself would: a configuration it cannot start with.
                    SpawnError::Config(_) => ExitCode::from(2),
                    SpawnError::Io(_) => ExitCode::FAILURE,
                };
            }
        }
    }

    let started = Instant::now();
    tokio::select! {
        ready = wait_until_serving(options, &mut running) => {
            if let Err(error) = ready {
                eprintln!("meshctl: {error}; stopping");
                children::stop_all(running, &mut signals).await;
                return ExitCode::FAILURE;
            }
        }
        _ = signals.next() => return exit_code(children::stop_all(running, &mut signals).await),
    }
    print_welcome(options, started.elapsed());

    let services = launches
        .into_iter()
        .zip(running)
        .map(|(launch, child)| Service {
            endpoint: format!("http://{}", options.grpc_addr(&launch.service)),
            launch,
            child,
        })
        .collect();
    let supervisors = supervise::supervise(services);
    signals.next().await;
    let (left, supervised) = supervisors.stop().await;
    let stopped = children::stop_all(left, &mut signals).await;
    exit_code(supervised && stopped)
}

fn exit_code(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Waits until every service says SERVING, one after another, within [`START_TIMEOUT`]
/// in all; fails as soon as a child exits.
async fn wait_until_serving(options: &Options, running: &mut [Child]) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    for child in running.iter_mut() {
        let endpoint = format!("http://{}", options.grpc_addr(&child.service));
        let left = deadline.saturating_duration_since(Instant::now());
        let name = child.service.name;
        tokio::select! {
            ready = probe::wait_until_serving(&endpoint, "", left) => {
                ready.map_err(|error| format!("{name} is not serving: {error}"))?;
            }
            exited = exit_of(child) => return Err(format!("{name} {exited} during start-up")),
        }
    }
    Ok(())
}

/// Completes when `child` exits: `exited (status)`.
async fn exit_of(child: &mut Child) -> String {
    match child.wait().await {
        Ok(status) => format!("exited ({status})"),
        Err(error) => format!("could not be waited for ({error})"),
    }
}

fn print_welcome(options: &Options, took: Duration) {
    let addr = |service: &ServiceInfo| options.grpc_addr(service);
    let (catalog, orders) = (addr(&catalog::SERVICE), addr(&orders::SERVICE));
    let mut table = String::new();
    for service in SERVICES {
        table.push_str(&format!(
            "  {:<14} {}  metrics http://{}/metrics\n",
            service.name,
            addr(service),
            options.metrics_addr(service)
        ));
    }
    println!(
        "\nmeshmart is up in {took:.1?}: every service reports SERVING.\n\n{table}\n\
         try (README: A grpcurl tour):\n  \
         grpcurl -plaintext {catalog} list\n  \
         grpcurl -plaintext -d '{{\"name\": \"products/espresso-cup\"}}' {catalog} meshmart.catalog.v1.CatalogService/GetProduct\n  \
         grpcurl -plaintext -H 'x-meshmart-customer-id: ada' -d '{{\"request_id\": \"try-1\", \"lines\": [{{\"product_id\": \"espresso-cup\", \"quantity\": 1}}], \"payment_token\": \"tok_visa_approved\", \"shipping_address\": {{\"recipient\": \"Ada\", \"address_lines\": [\"12 St James Square\"], \"locality\": \"London\", \"postal_code\": \"SW1Y 4LE\", \"region_code\": \"GB\"}}}}' {orders} meshmart.orders.v1.OrderService/CreateOrder\n  \
         meshctl dlq list\n\n\
         press Ctrl-C to stop.\n"
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Up {
        #[command(flatten)]
        options: Options,
    }

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Up::try_parse_from(std::iter::once("up").chain(args.iter().copied())).map(|up| up.options)
    }

    #[test]
    fn options() {
        let parsed = parse(&["--data-dir", "/tmp/x", "--port-offset", "100"]).unwrap();
        assert_eq!(parsed.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(
            parsed.grpc_addr(&catalog::SERVICE),
            "127.0.0.1:50151".parse().unwrap()
        );
        assert_eq!(
            parsed.metrics_addr(&inventory::SERVICE),
            "127.0.0.1:9152".parse().unwrap()
        );
        assert_eq!(parse(&[]).unwrap().data_dir, PathBuf::from("data"));
        for (args, needle) in [
            (&["--port-offset", "x"][..], "--port-offset"),
            (&["--port-offset", "10001"][..], "--port-offset"),
            (&["--data-dir"][..], "--data-dir"),
            (&["--verbose"][..], "--verbose"),
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
    }
}
