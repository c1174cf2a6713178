//! The whole shop in the mesh: the chart installed into the harness's API server as a user
//! installs it, and each of its Deployments and StatefulSets run the way Istio runs a VM
//! workload: the real program (a service, PostgreSQL, nats-server) in a network namespace
//! of its own, with pilot-agent and Envoy beside it, registered by a WorkloadEntry that
//! carries the pod template's labels and service account, so that the chart's Services,
//! subsets, policies and principals select it as they select its pods in a cluster.
//!
//! What the harness adds to the chart's objects, and why:
//! - a WorkloadEntry per workload (what `istioctl x workload entry configure` has an
//!   operator create for a VM);
//! - a Sidecar per workload with explicit listeners (`captureMode: NONE`): nothing
//!   redirects traffic (no iptables), so the inbound listener binds the workload's address
//!   and forwards to the program on the namespace's loopback, and the outbound listeners
//!   bind [`EGRESS_IP`], one per port of the mesh's Services, where the namespace's
//!   /etc/hosts sends every Service name;
//! - the programs' listen addresses moved to loopback (the chart's `0.0.0.0`), so that the
//!   sidecar is the one way in, as the redirection makes it in a pod.
//!
//! Everything else (ConfigMaps, Secrets, VirtualServices, DestinationRules, policies,
//! EnvoyFilters, the Gateway) is the chart's, read back from the API server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodTemplateSpec, Secret, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};

use super::{
    COLLECTOR_HOST, Collector, EGRESS_IP, HOST_IP, Identity, Mode, Net, Netns, OTLP_PORT, Procs,
    Span, Spawn, http_status, mesh_ready, service_bin_dir, start_istiod, start_proxy, wait_for,
};
use crate::{Cluster, Error, bin_dir, io, repo_root, run_any, write};

/// The release's namespace, as the README installs it.
pub const NAMESPACE: &str = "meshmart";
/// The release's name.
const RELEASE: &str = "meshmart";
/// The shop's services: the binaries the mesh runs (`cargo build` puts them in
/// [`service_bin_dir`]).
pub const SERVICES: &[&str] = &[
    "catalog",
    "inventory",
    "orders",
    "payments",
    "fulfillment",
    "notifications",
    "orchestrator",
];
/// PostgreSQL 15 from Debian, as scripts/with-postgres.sh installs it.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long the whole shop may take to come up (proxies, databases, migrations).
const START_TIMEOUT: Duration = Duration::from_secs(150);
/// The clients the tests call from inside the mesh: a workload with a service account no
/// policy names, and one with orders' own, for the callers the policies list.
pub const CLIENTS: &[(&str, &str)] =
    &[("client-intruder", "intruder"), ("client-orders", "orders")];

/// What a workload runs beside its proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// One of the shop's services: the binary named after the `app` label.
    Service,
    Postgres,
    Nats,
    /// The proxy only: the ingress gateway (a router), or a client the tests call from.
    None,
}

/// One workload of the mesh.
#[derive(Debug)]
pub struct Workload {
    /// The Deployment's or StatefulSet's name (`catalog-v1`), or the client's.
    pub name: String,
    /// The pod template's labels.
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub program: Program,
    /// The pod template's `proxy.istio.io/config` annotation.
    proxy_config: Option<String>,
    /// The container's ports by name (`grpc`, `http-metrics`).
    pub ports: BTreeMap<String, u16>,
    /// The container's environment, resolved from its ConfigMaps and Secrets.
    env: Vec<(String, String)>,
    pub netns: Netns,
    /// pilot-agent's log, with Envoy's (and its access log) in it.
    pub proxy_log: PathBuf,
    /// The program's log.
    pub log: Option<PathBuf>,
    /// The program's folder (its working directory).
    pub dir: PathBuf,
}

impl Workload {
    /// The `app` label.
    pub fn app(&self) -> &str {
        self.labels.get("app").map_or("", String::as_str)
    }

    /// The faults file a service reads on every call (`meshmart::fault::faults`, in builds
    /// with the `fault-injection` feature): a test writes it to make this workload fail.
    pub fn faults_file(&self) -> PathBuf {
        self.dir.join("faults")
    }

    /// The `grpc` port, where a service listens.
    pub fn grpc_port(&self) -> Option<u16> {
        self.ports.get("grpc").copied()
    }
}

/// One port of one of the mesh's Services.
#[derive(Debug, Clone)]
struct ServicePort {
    service: String,
    selector: BTreeMap<String, String>,
    name: String,
    port: u16,
    target: Option<IntOrString>,
    /// Istio's protocol name (GRPC, HTTP2, TCP), from appProtocol or the port's name.
    protocol: &'static str,
}

/// The shop, up in the mesh; dropping it stops every process, then removes the network,
/// then the cluster (the fields drop in this order).
pub struct Shop {
    procs: Procs,
    collector: Collector,
    /// Held for its Drop only: the namespaces and the bridge go once the processes have.
    _net: Net,
    cluster: Cluster,
    workloads: Vec<Workload>,
    gateway: String,
    root: PathBuf,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop")
            .field("gateway", &self.gateway)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Shop {
    /// Starts the cluster, istiod, the chart and every workload; `None` (after a loud
    /// warning) when this machine cannot run the mesh, an error instead when
    /// MESHMART_REQUIRE_MESH is set.
    pub async fn start(test: &str) -> Result<Option<Shop>, Error> {
        // The services, and meshctl (its `canary` command runs meshctl-canary beside it).
        let binaries: Vec<&str> = SERVICES
            .iter()
            .copied()
            .chain(["meshctl", "meshctl-canary"])
            .collect();
        let postgres: Vec<PathBuf> = ["initdb", "postgres", "pg_isready", "psql"]
            .iter()
            .map(|b| Path::new(PG_BIN).join(b))
            .collect();
        let other: Vec<(&Path, &str)> = postgres
            .iter()
            .map(|p| {
                (
                    p.as_path(),
                    "PostgreSQL 15: scripts/with-postgres.sh installs it",
                )
            })
            .collect();
        if !mesh_ready(test, &binaries, &other)? {
            return Ok(None);
        }
        postgres_user()?;
        let Some(cluster) = Cluster::start(test, &["helm"]).await? else {
            if crate::set("MESHMART_REQUIRE_MESH") {
                return Err(Error::Missing(
                    "MESHMART_REQUIRE_MESH is set but the cluster's tools are missing".to_owned(),
                ));
            }
            return Ok(None);
        };
        let root = cluster.dir().join("mesh");
        let logs = cluster.dir().join("logs");
        std::fs::create_dir_all(&root).map_err(io(format!("create {}", root.display())))?;
        eprintln!("mesh: logs in {}", logs.display());
        // What the harness starts and makes outside the cluster's folder, the cluster's
        // watchdog undoes if this process is killed outright.
        let mut procs = Procs::watched_by(&cluster);
        let mut net = Net::new(&cluster)?;
        let collector = Collector::start().await?;

        cluster
            .create_namespaces(&["istio-system", NAMESPACE])
            .await?;
        start_istiod(
            &mut procs,
            cluster.kubeconfig(),
            &root.join("istiod"),
            &logs,
        )
        .await?;
        let root_cert = root_cert(&cluster, &mut procs).await?;
        install_chart(&cluster).await?;
        cluster.apply(&collector_entry()).await?;

        let client = cluster.client().clone();
        let services = service_ports(&client).await?;
        let mut specs = workload_specs(&client).await?;
        // The clients stand in for the chart's workloads, so their proxies get the proxy
        // config the chart gives its services' pods (Envoy's runtime guards among it).
        let chart_proxy_config = specs
            .iter()
            .find(|s| s.program == Program::Service)
            .and_then(|s| s.proxy_config.clone());
        // The clients' accounts the chart does not make (orders' it does).
        let extra_accounts: String = CLIENTS
            .iter()
            .filter(|(_, sa)| !specs.iter().any(|s| s.service_account == *sa))
            .map(|(_, sa)| {
                format!(
                    "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {NAMESPACE}}}\n---\n"
                )
            })
            .collect();
        cluster.apply(&extra_accounts).await?;
        for (name, sa) in CLIENTS {
            specs.push(Spec {
                name: (*name).to_owned(),
                labels: BTreeMap::from([("app".to_owned(), (*name).to_owned())]),
                service_account: (*sa).to_owned(),
                program: Program::None,
                proxy_config: chart_proxy_config.clone(),
                ports: BTreeMap::new(),
                env: Vec::new(),
            });
        }

        let hosts = hosts(&services);
        let mut workloads = Vec::new();
        let mut objects = String::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let octet = u8::try_from(10 + index)
                .map_err(|_| Error::Failed("more workloads than the range holds".to_owned()))?;
            let netns = net.add(&spec.name, octet, &hosts)?;
            objects.push_str(&workload_entry(&spec, &netns.ip));
            // A gateway's listeners come from its Gateway resources, not a Sidecar.
            if !is_gateway(&spec.labels) {
                objects.push_str(&sidecar(&spec, &netns.ip, &services));
            }
            let dir = root.join(&spec.name).join("program");
            workloads.push(Workload {
                name: spec.name,
                labels: spec.labels,
                service_account: spec.service_account,
                program: spec.program,
                proxy_config: spec.proxy_config,
                ports: spec.ports,
                env: spec.env,
                netns,
                proxy_log: PathBuf::new(),
                log: None,
                dir,
            });
        }
        cluster.apply(&objects).await?;

        // The proxies first, as native sidecars start before the app: a service connects
        // to PostgreSQL through its sidecar as it starts.
        for w in &mut workloads {
            let mode = if is_gateway(&w.labels) {
                Mode::Router
            } else {
                Mode::Sidecar
            };
            let labels = serde_json::to_string(&w.labels)
                .map_err(|e| Error::Failed(format!("labels of {}: {e}", w.name)))?;
            w.proxy_log = start_proxy(
                &mut procs,
                &root.join(&w.name).join("proxy"),
                &Identity {
                    name: &w.name,
                    namespace: NAMESPACE,
                    service_account: &w.service_account,
                    labels_json: &labels,
                    netns: &w.netns,
                    mode,
                    proxy_config: w.proxy_config.as_deref(),
                },
                &token(&cluster, &w.service_account).await?,
                &root_cert,
                &logs,
            )?;
        }
        for w in &workloads {
            let ready = format!("{}:15021", w.netns.ip);
            let log = w.proxy_log.clone();
            wait_for(
                &format!("the proxy of {} ready", w.name),
                START_TIMEOUT,
                &mut procs,
                || super::rejections(&log).map(|r| format!("envoy rejected istiod's config:\n{r}")),
                || async {
                    match http_status(&ready, "/healthz/ready").await {
                        Some(200) => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await?;
        }

        for w in workloads
            .iter_mut()
            .filter(|w| w.program == Program::Postgres)
        {
            w.log = Some(start_postgres(&cluster, &mut procs, w, &root, &logs).await?);
        }
        for w in workloads.iter_mut().filter(|w| w.program == Program::Nats) {
            w.log = Some(start_nats(&mut procs, w, &logs)?);
        }
        for w in workloads
            .iter_mut()
            .filter(|w| w.program == Program::Service)
        {
            w.log = Some(start_service(&mut procs, w, &logs)?);
        }
        for w in workloads.iter().filter(|w| w.program == Program::Service) {
            wait_serving(&cluster, &mut procs, w).await?;
        }
        let gateway = workloads
            .iter()
            .find(|w| is_gateway(&w.labels))
            .ok_or_else(|| Error::Failed("the chart rendered no ingress gateway".to_owned()))?;
        let gateway = gateway_address(&mut procs, gateway).await?;
        eprintln!("mesh: the shop is up; the gateway at {gateway}");
        Ok(Some(Shop {
            procs,
            collector,
            _net: net,
            cluster,
            workloads,
            gateway,
            root,
        }))
    }

    /// The ingress gateway's gRPC listener, `http://<address>:<port>`, reachable from the
    /// host (the harness's client outside the mesh).
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// The spans the services and the proxies have sent to the harness's collector.
    pub async fn spans(&self) -> Vec<Span> {
        self.collector.spans().await
    }

    /// The workload called `name`.
    pub fn workload(&self, name: &str) -> Result<&Workload, Error> {
        self.workloads
            .iter()
            .find(|w| w.name == name)
            .ok_or_else(|| Error::Failed(format!("no workload {name} in the mesh")))
    }

    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The mesh's files (each workload's folder, istiod's).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a copy of the program of the service workload `of`, with its environment
    /// and `overrides`, in the namespace of the workload `beside`, listening on
    /// `127.0.0.1:port` there, and waits until it is SERVING: for the benchmark's baseline
    /// without proxies (scripts/bench-mesh.sh). It stops with the shop.
    pub async fn start_copy(
        &mut self,
        of: &str,
        beside: &str,
        name: &str,
        port: u16,
        overrides: &[(&str, String)],
    ) -> Result<(), Error> {
        let source = self.workload(of)?;
        let program = service_bin_dir().join(source.app());
        let source_env = source.env.clone();
        let mut envs: Vec<(&str, String)> = source_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .collect();
        envs.push(("GRPC_ADDR", format!("127.0.0.1:{port}")));
        envs.extend(overrides.iter().map(|(k, v)| (*k, v.clone())));
        let host = self.workload(beside)?;
        let (ns, dir) = (host.netns.name.clone(), host.dir.join(name));
        std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
        let logs = self.cluster.dir().join("logs");
        let log = self.procs.spawn(
            &Spawn {
                name,
                program: &program,
                args: &[],
                envs: &envs,
                cwd: &dir,
                netns: Some(&ns),
            },
            &logs,
        )?;
        wait_serving_at(&self.cluster, &mut self.procs, name, &ns, port, &log).await
    }

    /// The mesh's processes by name (`istiod`, `sidecar-<workload>`, `gateway-<workload>`,
    /// `<workload>` for its program), each with its process group's id.
    pub fn process_groups(&self) -> Vec<(String, u32)> {
        self.procs.groups()
    }
}

/// Whether a workload with these pod labels is an ingress gateway: Istio's gateways (the
/// chart's own among them) carry the `istio` label their Gateway resources select.
fn is_gateway(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key("istio")
}

/// The `postgres` user, made if missing: the server refuses to run as root (as
/// scripts/with-postgres.sh does).
fn postgres_user() -> Result<(), Error> {
    let has_user = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_user {
        let out = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/false",
                "postgres",
            ])
            .output()
            .map_err(io("useradd postgres"))?;
        if !out.status.success() {
            return Err(Error::Failed(format!(
                "useradd postgres: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(())
}

/// `helm install` of the chart as the README has users install it on kind (the defaults
/// and ci/local-values.yaml), without its hooks: the PostgreSQL setup Job and the test Pod
/// need a kubelet; the harness runs the setup script itself ([`start_postgres`]).
///
/// Tracing is the one change: the services export their spans to the harness's collector
/// (`tracing.otlpEndpoint`), and the chart's Telemetry has every proxy sample every call
/// to the mesh config's `otel` provider.
async fn install_chart(cluster: &Cluster) -> Result<(), Error> {
    let chart = repo_root().join("helm/meshmart");
    let values = chart.join("ci/local-values.yaml");
    let chart = chart.to_string_lossy();
    let values = values.to_string_lossy();
    let otlp = format!("tracing.otlpEndpoint=http://{HOST_IP}:{OTLP_PORT}");
    cluster
        .helm(&[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            NAMESPACE,
            "--values",
            &values,
            "--set",
            "tracing.provider=otel",
            "--set",
            "tracing.samplingPercentage=100",
            "--set",
            &otlp,
            "--no-hooks",
        ])
        .await
        .map(drop)
}

/// The trace collector as the mesh knows it: outside the mesh (no sidecar, plaintext), at
/// the host's end of the bridge.
fn collector_entry() -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: otel-collector, namespace: istio-system}}
spec:
  hosts: [{COLLECTOR_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {OTLP_PORT}, name: grpc-otlp, protocol: GRPC}}]
  endpoints: [{{address: {HOST_IP}}}]
"
    )
}

/// The root certificate istiod publishes in the release's namespace (ConfigMap
/// istio-ca-root-cert), once it is there.
pub async fn root_cert(cluster: &Cluster, procs: &mut Procs) -> Result<String, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), NAMESPACE);
    wait_for(
        "istio-ca-root-cert in the release's namespace",
        Duration::from_secs(60),
        procs,
        || None,
        || async {
            match maps.get_opt("istio-ca-root-cert").await {
                Ok(Some(cm)) => cm
                    .data
                    .and_then(|mut d| d.remove("root-cert.pem"))
                    .ok_or_else(|| "no root-cert.pem".to_owned()),
                Ok(None) => Err("not yet".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// A token for `sa` with audience istio-ca (the TokenRequest API, through `kubectl create
/// token`): what pilot-agent trades for its certificate.
pub async fn token(cluster: &Cluster, sa: &str) -> Result<String, Error> {
    let out = cluster
        .kubectl(
            &[
                "create",
                "token",
                sa,
                &format!("--namespace={NAMESPACE}"),
                "--audience=istio-ca",
                "--duration=2h",
            ],
            None,
        )
        .await?;
    Ok(out.stdout.trim().to_owned())
}

/// What the harness runs for one Deployment or StatefulSet (or client).
#[derive(Debug)]
struct Spec {
    name: String,
    labels: BTreeMap<String, String>,
    service_account: String,
    program: Program,
    proxy_config: Option<String>,
    ports: BTreeMap<String, u16>,
    env: Vec<(String, String)>,
}

/// One [`Spec`] per Deployment and StatefulSet of the release's namespace.
async fn workload_specs(client: &kube::Client) -> Result<Vec<Spec>, Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let mut templates: Vec<(String, PodTemplateSpec)> = Vec::new();
    for d in deployments.list(&ListParams::default()).await?.items {
        if let Some(name) = d.metadata.name {
            templates.push((name, d.spec.template));
        }
    }
    for s in sets.list(&ListParams::default()).await?.items {
        if let Some(name) = s.metadata.name {
            templates.push((name, s.spec.template));
        }
    }
    let mut specs = Vec::new();
    for (name, template) in templates {
        let metadata = template.metadata.unwrap_or_default();
        let labels = metadata.labels.unwrap_or_default();
        let proxy_config = metadata
            .annotations
            .and_then(|mut a| a.remove("proxy.istio.io/config"));
        let pod = template
            .spec
            .ok_or_else(|| Error::Failed(format!("{name} has no pod spec")))?;
        let container = pod
            .containers
            .first()
            .ok_or_else(|| Error::Failed(format!("{name} has no container")))?;
        let program = match container.name.as_str() {
            "istio-proxy" => Program::None,
            "postgres" => Program::Postgres,
            "nats" => Program::Nats,
            _ => Program::Service,
        };
        let ports = container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect();
        specs.push(Spec {
            env: environment(client, container).await?,
            name,
            labels,
            service_account: pod.service_account_name.unwrap_or_default(),
            program,
            proxy_config,
            ports,
        });
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// A container's environment as the kubelet would give it: its `envFrom` ConfigMaps and
/// Secrets, then its `env` (values, and keys of Secrets and ConfigMaps).
async fn environment(
    client: &kube::Client,
    container: &Container,
) -> Result<Vec<(String, String)>, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let mut env = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            env.extend(maps.get(&r.name).await?.data.unwrap_or_default());
        }
        if let Some(r) = &from.secret_ref {
            env.extend(secret_data(secrets.get(&r.name).await?));
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            env.push((var.name.clone(), value.clone()));
        } else if let Some(key) = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            let data = secret_data(secrets.get(&key.name).await?);
            if let Some(value) = data.get(&key.key) {
                env.push((var.name.clone(), value.clone()));
            }
        }
    }
    Ok(env)
}

fn secret_data(secret: Secret) -> BTreeMap<String, String> {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// Every port of every Service of the release's namespace that the workloads call: not the
/// headless ones (their names are the pods'), not the gateway's (nothing in the mesh
/// calls it).
async fn service_ports(client: &kube::Client) -> Result<Vec<ServicePort>, Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let mut ports = Vec::new();
    for s in services.list(&ListParams::default()).await?.items {
        let (Some(name), Some(spec)) = (s.metadata.name, s.spec) else {
            continue;
        };
        let selector = spec.selector.unwrap_or_default();
        if spec.cluster_ip.as_deref() == Some("None") || is_gateway(&selector) {
            continue;
        }
        for p in spec.ports.unwrap_or_default() {
            let port_name = p.name.unwrap_or_default();
            let protocol = match (p.app_protocol.as_deref(), port_name.as_str()) {
                (Some("grpc"), _) => "GRPC",
                (Some("http2"), _) => "HTTP2",
                (_, n) if n.starts_with("grpc") => "GRPC",
                _ => "TCP",
            };
            ports.push(ServicePort {
                service: name.clone(),
                selector: selector.clone(),
                name: port_name,
                port: u16::try_from(p.port)
                    .map_err(|_| Error::Failed(format!("{name}: port {} out of range", p.port)))?,
                target: p.target_port,
                protocol,
            });
        }
    }
    Ok(ports)
}

/// Each workload namespace's /etc/hosts: every Service's names at [`EGRESS_IP`], istiod's
/// at [`HOST_IP`].
fn hosts(services: &[ServicePort]) -> String {
    let mut names: Vec<String> = Vec::new();
    for s in services {
        for name in [
            s.service.clone(),
            format!("{}.{NAMESPACE}", s.service),
            format!("{}.{NAMESPACE}.svc", s.service),
            format!("{}.{NAMESPACE}.svc.cluster.local", s.service),
        ] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    format!(
        "127.0.0.1 localhost\n{EGRESS_IP} {}\n{HOST_IP} istiod.istio-system.svc\n",
        names.join(" ")
    )
}

/// The WorkloadEntry of a workload: its address, account, labels and named ports.
fn workload_entry(spec: &Spec, address: &str) -> String {
    let mut labels = spec.labels.clone();
    // What the injector puts on a pod: without it a client's auto mTLS sends plaintext.
    labels.insert("security.istio.io/tlsMode".to_owned(), "istio".to_owned());
    let entry = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": spec.name, "namespace": NAMESPACE},
        "spec": {
            "address": address,
            "serviceAccount": spec.service_account,
            "labels": labels,
            "ports": spec.ports,
        },
    });
    format!("{entry}\n---\n")
}

/// The Sidecar of a workload (see the module's docs): an inbound listener on its address
/// for each port of each Service that selects it, and an outbound listener on
/// [`EGRESS_IP`] for each port of the mesh's Services.
fn sidecar(spec: &Spec, address: &str, services: &[ServicePort]) -> String {
    let selector: BTreeMap<&str, &str> = ["app", "version"]
        .iter()
        .filter_map(|k| Some((*k, spec.labels.get(*k)?.as_str())))
        .collect();
    let mut ingress = Vec::new();
    for s in services.iter().filter(|s| {
        s.selector
            .iter()
            .all(|(k, v)| spec.labels.get(k) == Some(v))
    }) {
        let target = match &s.target {
            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
            Some(IntOrString::String(name)) => spec.ports.get(name).copied(),
            None => Some(s.port),
        };
        let Some(target) = target else { continue };
        ingress.push(serde_json::json!({
            "port": {"number": target, "protocol": s.protocol, "name": s.name},
            "bind": address,
            "defaultEndpoint": format!("127.0.0.1:{target}"),
            "captureMode": "NONE",
        }));
    }
    let mut by_port: BTreeMap<(u16, &str), Vec<String>> = BTreeMap::new();
    for s in services {
        by_port
            .entry((s.port, s.protocol))
            .or_default()
            .push(format!("./{}.{NAMESPACE}.svc.cluster.local", s.service));
    }
    // The trace collector: a Sidecar's egress hosts are all the clusters its proxy gets,
    // and the tracer needs the collector's.
    by_port
        .entry((OTLP_PORT, "GRPC"))
        .or_default()
        .push(format!("istio-system/{COLLECTOR_HOST}"));
    let egress: Vec<serde_json::Value> = by_port
        .into_iter()
        .map(|((port, protocol), hosts)| {
            serde_json::json!({
                "port": {"number": port, "protocol": protocol,
                         "name": format!("{}-{port}", protocol.to_lowercase())},
                "bind": EGRESS_IP,
                "captureMode": "NONE",
                "hosts": hosts,
            })
        })
        .collect();
    let object = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": spec.name, "namespace": NAMESPACE},
        "spec": {
            "workloadSelector": {"labels": selector},
            "ingress": ingress,
            "egress": egress,
        },
    });
    format!("{object}\n---\n")
}

/// `w`'s program folder, made.
fn program_dir(w: &Workload) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(&w.dir).map_err(io(format!("create {}", w.dir.display())))?;
    Ok(w.dir.clone())
}

/// One of the shop's services, with its container's environment and its listen addresses
/// on the namespace's loopback (the sidecar forwards to them).
fn start_service(procs: &mut Procs, w: &Workload, logs: &Path) -> Result<PathBuf, Error> {
    let dir = program_dir(w)?;
    let mut envs: Vec<(&str, String)> =
        w.env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let local = |name: &str| w.ports.get(name).map(|p| format!("127.0.0.1:{p}"));
    for (key, value) in [
        ("GRPC_ADDR", local("grpc")),
        ("METRICS_ADDR", local("http-metrics")),
        ("DATA_DIR", Some(dir.display().to_string())),
        (
            "MESHMART_FAULTS",
            Some(w.faults_file().display().to_string()),
        ),
    ] {
        if let Some(value) = value {
            envs.retain(|(k, _)| *k != key);
            envs.push((key, value));
        }
    }
    procs.spawn(
        &Spawn {
            name: &w.name,
            program: &service_bin_dir().join(w.app()),
            args: &[],
            envs: &envs,
            cwd: &dir,
            netns: Some(&w.netns.name),
        },
        logs,
    )
}

/// nats-server with JetStream on the namespace's loopback (the chart's server listens on
/// every address of its pod; here the sidecar has the workload's address).
fn start_nats(procs: &mut Procs, w: &Workload, logs: &Path) -> Result<PathBuf, Error> {
    let dir = program_dir(w)?;
    let port = w.ports.get("client").copied().unwrap_or(4222);
    let args = [
        "--jetstream".to_owned(),
        format!("--store_dir={}", dir.display()),
        "--addr=127.0.0.1".to_owned(),
        format!("--port={port}"),
        "--server_name=nats-0".to_owned(),
    ];
    procs.spawn(
        &Spawn {
            name: &w.name,
            program: &bin_dir().join("nats-server"),
            args: &args,
            envs: &[],
            cwd: &dir,
            netns: Some(&w.netns.name),
        },
        logs,
    )
}

/// PostgreSQL 15 as the `postgres` user on the namespace's loopback, its superuser's
/// password the chart's Secret's, scram-sha-256; then the chart's own init script
/// (ConfigMap postgres-init, which the image runs on a first start) makes each service's
/// role and database.
async fn start_postgres(
    cluster: &Cluster,
    procs: &mut Procs,
    w: &Workload,
    root: &Path,
    logs: &Path,
) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = program_dir(w)?;
    // The server's user must reach its folder: the cluster's folder is root's (0700).
    for d in [cluster.dir(), root, &root.join(&w.name), &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {}", d.display())))?;
    }
    let env: BTreeMap<&str, &str> = w
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let password = env.get("POSTGRES_PASSWORD").ok_or_else(|| {
        Error::Failed("the postgres container has no POSTGRES_PASSWORD".to_owned())
    })?;
    let pwfile = dir.join("pwfile");
    write(&pwfile, password)?;
    let data = dir.join("data");
    let chown = run_any(
        Path::new("chown"),
        ["-R", "postgres:", &dir.to_string_lossy()],
        None,
    )
    .await?;
    if !chown.1.success() {
        return Err(Error::Failed(format!("chown: {}", chown.2.stderr)));
    }
    let initdb = format!("{PG_BIN}/initdb");
    let (shown, status, out) = run_any(
        Path::new("runuser"),
        [
            "-u",
            "postgres",
            "--",
            &initdb,
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            &format!("--pwfile={}", pwfile.display()),
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        None,
    )
    .await?;
    if !status.success() {
        return Err(Error::Failed(format!("{shown}: {status}\n{}", out.stderr)));
    }
    let port = w.ports.get("postgres").copied().unwrap_or(5432);
    let args = [
        "-u".to_owned(),
        "postgres".to_owned(),
        "--".to_owned(),
        format!("{PG_BIN}/postgres"),
        "-D".to_owned(),
        data.display().to_string(),
        "-c".to_owned(),
        "listen_addresses=127.0.0.1".to_owned(),
        "-p".to_owned(),
        port.to_string(),
        "-c".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
        "-c".to_owned(),
        "fsync=off".to_owned(),
    ];
    let log = procs.spawn(
        &Spawn {
            name: &w.name,
            program: Path::new("runuser"),
            args: &args,
            envs: &[],
            cwd: &dir,
            netns: Some(&w.netns.name),
        },
        logs,
    )?;
    let ns = w.netns.name.clone();
    let isready = format!("{PG_BIN}/pg_isready");
    let port_text = port.to_string();
    wait_for(
        "postgres accepting connections",
        START_TIMEOUT,
        procs,
        || None,
        || async {
            let (status, out) = in_netns(&ns, &isready, &["-h", "127.0.0.1", "-p", &port_text])
                .await
                .map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(out.stdout)
            }
        },
    )
    .await?;

    let maps: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), NAMESPACE);
    let init = maps
        .get("postgres-init")
        .await?
        .data
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".sh"))
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    for script in init {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &w.netns.name, "sh", "-c", &script])
            .envs(w.env.iter().map(|(k, v)| (k, v)))
            .env("POSTGRES_USER", "postgres")
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", &port_text)
            .env("PGPASSWORD", password)
            .env(
                "PATH",
                format!("{PG_BIN}:{}", std::env::var("PATH").unwrap_or_default()),
            );
        let out = command.output().map_err(io("run postgres-init"))?;
        if !out.status.success() {
            return Err(Error::Failed(format!(
                "postgres-init: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(log)
}

/// `ip netns exec NS program args...`: its exit status and output.
async fn in_netns(
    ns: &str,
    program: &str,
    args: &[&str],
) -> Result<(std::process::ExitStatus, crate::Output), Error> {
    let all = ["netns", "exec", ns, program]
        .into_iter()
        .chain(args.iter().copied());
    let (_, status, out) = run_any(Path::new("ip"), all, None).await?;
    Ok((status, out))
}

/// Waits for `w`'s gRPC server to report SERVING, asked on the namespace's loopback.
async fn wait_serving(cluster: &Cluster, procs: &mut Procs, w: &Workload) -> Result<(), Error> {
    let port = w
        .grpc_port()
        .ok_or_else(|| Error::Failed(format!("{} has no grpc port", w.name)))?;
    let log = w.log.clone().unwrap_or_default();
    wait_serving_at(cluster, procs, &w.name, &w.netns.name, port, &log).await
}

/// Waits for the gRPC server on `127.0.0.1:port` in the namespace `ns` to report SERVING.
async fn wait_serving_at(
    cluster: &Cluster,
    procs: &mut Procs,
    what: &str,
    ns: &str,
    port: u16,
    log: &Path,
) -> Result<(), Error> {
    let grpcurl = cluster.tool("grpcurl").display().to_string();
    let target = format!("127.0.0.1:{port}");
    wait_for(
        &format!("{what} SERVING"),
        START_TIMEOUT,
        procs,
        || None,
        || async {
            let (status, out) = in_netns(
                ns,
                &grpcurl,
                &[
                    "-plaintext",
                    "-max-time=2",
                    &target,
                    "grpc.health.v1.Health/Check",
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
            if status.success() && out.stdout.contains("SERVING") {
                Ok(())
            } else {
                let mut last = out.stderr;
                let _ = write!(last, " (log {})", log.display());
                Err(last)
            }
        },
    )
    .await
}

/// The gateway's gRPC listener: istiod maps the Gateway's port (80) to the gateway
/// Service's target port (8080) as in a cluster; waits until Envoy listens there.
async fn gateway_address(procs: &mut Procs, gateway: &Workload) -> Result<String, Error> {
    let ip = gateway.netns.ip.clone();
    let port = gateway.ports.get("http2").copied().unwrap_or(8080);
    let addr = format!("{ip}:{port}");
    wait_for(
        &format!("the gateway listening on {addr}"),
        START_TIMEOUT,
        procs,
        || None,
        || async {
            tokio::net::TcpStream::connect(&addr)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .await?;
    Ok(format!("http://{addr}"))
}
