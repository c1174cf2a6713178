//! istiod and the proxies: their settings, and how each is started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{HOST_IP, Netns, OTLP_PORT, Procs, Spawn, XDS_PORT, http_status, wait_for};
use crate::{Error, bin_dir, io, write};

/// pilot-agent renders Envoy's bootstrap from Istio's template, a file of the Istio source
/// tree (tools/packaging/common/envoy_bootstrap.json) that the binary does not embed;
/// scripts/install-go-tools.sh links it into the tools folder.
pub const BOOTSTRAP_TEMPLATE: &str = "envoy_bootstrap_tmpl.json";

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
# The tracing provider the chart's Telemetry names (`tracing.provider: otel` in the mesh's
# values): OpenTelemetry over gRPC to the harness's collector (mesh::Collector, behind the
# ServiceEntry that mesh::shop applies), with W3C trace context.
extensionProviders:
- name: otel
  opentelemetry:
    service: {COLLECTOR_HOST}
    port: {OTLP_PORT}
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:{XDS_PORT}
  binaryPath: {envoy}
  # Istio keeps few of Envoy's stats; the tests count each cluster's connections (a TCP
  # hop to PostgreSQL or NATS shows in no access log until its connection closes) and the
  # faults the fault files inject.
  proxyStatsMatcher:
    inclusionSuffixes: [upstream_cx_total, delays_injected, aborts_injected]
",
        envoy = envoy.display()
    )
}

/// The trace collector's name in the mesh (a ServiceEntry for [`HOST_IP`]).
pub const COLLECTOR_HOST: &str = "otel-collector.istio-system.svc.cluster.local";

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

/// What a proxy is: a workload's sidecar, or a gateway (`pilot-agent proxy router`), which
/// serves the Gateway resources that select its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sidecar,
    Router,
}

/// One proxy's identity, as istioctl's `x workload entry configure` writes it for a VM.
#[derive(Debug)]
pub struct Identity<'a> {
    /// The workload's name (the proxy's id is `<name>.<namespace>`).
    pub name: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// The workload's labels, as a JSON object: the Sidecar, Gateway, policy and telemetry
    /// selectors match the proxy by them.
    pub labels_json: &'a str,
    pub netns: &'a Netns,
    pub mode: Mode,
    /// The pod's `proxy.istio.io/config` annotation (ProxyConfig as JSON), which Istio's
    /// injector hands the proxy as PROXY_CONFIG, over the mesh's defaultConfig.
    pub proxy_config: Option<&'a str>,
}

/// Prepares `home`, the proxy's working directory, with the paths pilot-agent reads
/// relative to it (pkg/istio-agent, pkg/security, pkg/bootstrap):
/// `var/run/secrets/tokens/istio-token` (the JWT it trades for a certificate),
/// `var/run/secrets/istio/root-cert.pem` (the root istiod's xDS certificate chains to),
/// `etc/istio/config/mesh` (its mesh config), `var/lib/istio/envoy/envoy_bootstrap_tmpl.json`
/// (the bootstrap template); Envoy's config lands in `etc/istio/proxy`. Starts pilot-agent
/// in the workload's namespace; returns its log (Envoy's is in it).
pub fn start_proxy(
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
    let mut envs = envs;
    if let Some(config) = id.proxy_config {
        envs.push(("PROXY_CONFIG", config.to_owned()));
    }
    let (prefix, kind) = match id.mode {
        Mode::Sidecar => ("sidecar", "sidecar"),
        Mode::Router => ("gateway", "router"),
    };
    procs.spawn(
        &Spawn {
            name: &format!("{prefix}-{}", id.name),
            program: &bin_dir().join("pilot-agent"),
            args: &[
                "proxy".to_owned(),
                kind.to_owned(),
                "--proxyLogLevel=warning".to_owned(),
            ],
            envs: &envs,
            cwd: home,
            netns: Some(&id.netns.name),
        },
        logs,
    )
}
