//! `meshctl up`: the whole shop as child processes of this one.
//!
//! Each service runs as `meshctl serve <name>` in its own process, so it is configured,
//! logs and stops exactly as it does in a container, and calls between services cross a
//! real socket.

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::Duration,
};

use meshmart::config::ServiceInfo;
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    time::Instant,
};
use tonic::transport::Endpoint;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The services `up` starts, in start order: dependencies first.
const SERVICES: &[ServiceInfo] = &[inventory::SERVICE, catalog::SERVICE];

/// How long the shop may take to report SERVING before `up` gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    data_dir: PathBuf,
    port_offset: u16,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            data_dir: PathBuf::from("data"),
            port_offset: 0,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--data-dir" => options.data_dir = PathBuf::from(value("--data-dir")?),
                "--port-offset" => {
                    options.port_offset = value("--port-offset")?
                        .parse()
                        .ok()
                        .filter(|offset| *offset <= 10_000)
                        .ok_or("--port-offset must be a whole number from 0 to 10000")?;
                }
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(options)
    }

    fn grpc_addr(&self, service: &ServiceInfo) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, service.grpc_port + self.port_offset))
    }

    fn metrics_addr(&self, service: &ServiceInfo) -> SocketAddr {
        SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            service.metrics_port() + self.port_offset,
        ))
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

struct Running {
    service: ServiceInfo,
    child: Child,
}

async fn up(options: &Options) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("meshctl: cannot find my own executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    let width = SERVICES
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or_default();
    let mut running = Vec::new();
    for service in SERVICES {
        match spawn(&exe, options, service, width) {
            Ok(child) => running.push(Running {
                service: *service,
                child,
            }),
            Err(error) => {
                eprintln!("meshctl: cannot start {}: {error}", service.name);
                return stop_all(running).await;
            }
        }
    }

    let started = Instant::now();
    tokio::select! {
        ready = wait_until_serving(options, &mut running) => {
            if let Err(error) = ready {
                eprintln!("meshctl: {error}; stopping");
                stop_all(running).await;
                return ExitCode::FAILURE;
            }
        }
        () = meshmart::shutdown::signal() => return stop_all(running).await,
    }
    print_welcome(options, started.elapsed());

    tokio::select! {
        () = meshmart::shutdown::signal() => {}
        exited = first_exit(&mut running) => {
            eprintln!("meshctl: {exited}; stopping the others");
            stop_all(running).await;
            return ExitCode::FAILURE;
        }
    }
    stop_all(running).await
}

fn spawn(
    exe: &std::path::Path,
    options: &Options,
    service: &ServiceInfo,
    width: usize,
) -> std::io::Result<Child> {
    let inventory = options.grpc_addr(&inventory::SERVICE);
    let mut child = Command::new(exe)
        .args(["serve", service.name])
        .env("GRPC_ADDR", options.grpc_addr(service).to_string())
        .env("METRICS_ADDR", options.metrics_addr(service).to_string())
        .env("DATA_DIR", &options.data_dir)
        .env("INVENTORY_ADDR", format!("http://{inventory}"))
        // Children write through pipes, so pick their log format for the terminal meshctl is on.
        .env(
            "LOG_FORMAT",
            std::env::var("LOG_FORMAT").unwrap_or_else(|_| "text".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let prefix = format!("{:width$} | ", service.name);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(prefix_lines(stdout, prefix.clone(), false));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(prefix_lines(stderr, prefix, true));
    }
    Ok(child)
}

/// Copies a child's output line by line, each line marked with the service's name.
async fn prefix_lines(stream: impl AsyncRead + Unpin, prefix: String, to_stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // A closed terminal or pipe must not take the shop down with a panic: drop the line.
        let _ = if to_stderr {
            writeln!(std::io::stderr(), "{prefix}{line}")
        } else {
            writeln!(std::io::stdout(), "{prefix}{line}")
        };
    }
}

/// Polls every service's health until all say SERVING, a child exits, or time runs out.
async fn wait_until_serving(options: &Options, running: &mut [Running]) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    for r in running.iter_mut() {
        let endpoint = format!("http://{}", options.grpc_addr(&r.service));
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                return Err(format!(
                    "{} exited during start-up ({status})",
                    r.service.name
                ));
            }
            if is_serving(&endpoint).await {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not report SERVING within {START_TIMEOUT:?}",
                    r.service.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn is_serving(endpoint: &str) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(endpoint.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    matches!(reply, Ok(reply) if reply.get_ref().status() == ServingStatus::Serving)
}

/// Completes when any child exits, saying which.
async fn first_exit(running: &mut [Running]) -> String {
    loop {
        for r in running.iter_mut() {
            match r.child.try_wait() {
                Ok(Some(status)) => return format!("{} exited ({status})", r.service.name),
                Ok(None) => {}
                Err(error) => {
                    return format!("{} could not be waited for: {error}", r.service.name);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends SIGTERM to every child (in reverse start order, callers before callees) and waits
/// for all of them. Success only if every one drained and exited 0.
async fn stop_all(mut running: Vec<Running>) -> ExitCode {
    for r in running.iter().rev() {
        if let Some(pid) = r.child.id().and_then(|id| i32::try_from(id).ok()) {
            // Already gone is fine: there is nothing left to stop.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let mut clean = true;
    for r in running.iter_mut().rev() {
        match r.child.wait().await {
            Ok(status) if status.success() => {
                let _ = writeln!(
                    std::io::stdout(),
                    "meshctl: {} stopped cleanly",
                    r.service.name
                );
            }
            Ok(status) => {
                clean = false;
                eprintln!("meshctl: {} stopped with {status}", r.service.name);
            }
            Err(error) => {
                clean = false;
                eprintln!("meshctl: cannot wait for {}: {error}", r.service.name);
            }
        }
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_welcome(options: &Options, took: Duration) {
    let catalog = options.grpc_addr(&catalog::SERVICE);
    let inventory = options.grpc_addr(&inventory::SERVICE);
    println!(
        "\nmeshmart is up in {took:.1?}: every service reports SERVING.\n\n\
         {:<10} {catalog}  metrics http://{}/metrics\n\
         {:<10} {inventory}  metrics http://{}/metrics\n\n\
         try:\n  \
         grpcurl -plaintext {catalog} list\n  \
         grpcurl -plaintext {catalog} describe meshmart.catalog.v1.CatalogService\n  \
         grpcurl -plaintext -d '{{\"name\": \"products/espresso-cup\"}}' {catalog} meshmart.catalog.v1.CatalogService/GetProduct\n  \
         grpcurl -plaintext -d '{{\"page_size\": 3}}' {catalog} meshmart.catalog.v1.CatalogService/ListProducts\n  \
         grpcurl -plaintext -d '{{\"reservation_id\": \"demo-1\", \"items\": [{{\"product_id\": \"espresso-cup\", \"quantity\": 2}}]}}' {inventory} meshmart.inventory.v1.InventoryService/ReserveStock\n  \
         grpcurl -plaintext -d '{{\"service\": \"meshmart.catalog.v1.CatalogService\"}}' {catalog} grpc.health.v1.Health/Check\n\n\
         press Ctrl-C to stop.\n",
        "catalog",
        options.metrics_addr(&catalog::SERVICE),
        "inventory",
        options.metrics_addr(&inventory::SERVICE),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let parsed =
            Options::parse(&args(&["--data-dir", "/tmp/x", "--port-offset", "100"])).unwrap();
        assert_eq!(parsed.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(
            parsed.grpc_addr(&catalog::SERVICE),
            "127.0.0.1:50151".parse().unwrap()
        );
        assert_eq!(
            parsed.metrics_addr(&inventory::SERVICE),
            "127.0.0.1:9152".parse().unwrap()
        );
        assert!(Options::parse(&args(&["--port-offset", "x"])).is_err());
        assert!(Options::parse(&args(&["--data-dir"])).is_err());
        assert!(Options::parse(&args(&["--verbose"])).is_err());
    }
}
