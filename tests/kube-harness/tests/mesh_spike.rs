//! The mesh on one machine (docs/deploy.md, section 11): istiod against the harness's API
//! server, and the real catalog service behind a real pilot-agent + upstream Envoy sidecar,
//! registered the way Istio registers a VM (a WorkloadEntry), in a network namespace of
//! its own; then a second namespace with a client sidecar calling it through its outbound
//! listener, with mTLS STRICT between the two.
//!
//! Needs root (network namespaces), pilot-discovery, pilot-agent, envoy, grpcurl and Istio's
//! bootstrap template in the tools folder, and the catalog and inventory binaries
//! (`cargo build -p catalog -p inventory`); without them it says so and passes, unless
//! MESHMART_REQUIRE_MESH is set.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube_harness::mesh::{
    Identity, Net, Procs, Spawn, hosts_file, mesh_ready, rejections, service_bin_dir, start_istiod,
    start_sidecar, wait_for,
};
use kube_harness::{Cluster, Error, Output, run_any};

/// How long a sidecar may take from start to a call through it (certificate, xDS, Envoy).
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(90);

/// The mesh's objects for the catalog: what `istioctl x workload entry configure` and a
/// VM's Istio docs have an operator create, plus a Sidecar with explicit listeners, since
/// nothing captures traffic (no iptables: `captureMode: NONE`, Envoy binds the addresses
/// itself and nothing on the host is rewritten).
const CATALOG_OBJECTS: &str = "apiVersion: v1
kind: ServiceAccount
metadata: {name: catalog, namespace: meshmart}
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: meshmart, labels: {app: catalog}}
spec:
  selector: {app: catalog}
  ports:
  - {name: grpc, port: 50051, targetPort: 50051, appProtocol: grpc}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-vm, namespace: meshmart}
spec:
  address: 10.233.0.2
  serviceAccount: catalog
  # security.istio.io/tlsMode=istio: what the injector puts on a Pod; without it a client's
  # auto mTLS sends plaintext to this endpoint (and STRICT refuses it).
  labels: {app: catalog, version: v1, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: catalog, namespace: meshmart}
spec:
  workloadSelector: {labels: {app: catalog}}
  ingress:
  # Envoy binds the workload's address; the service listens on the namespace's loopback.
  - port: {number: 50051, protocol: GRPC, name: grpc}
    bind: 10.233.0.2
    defaultEndpoint: 127.0.0.1:50051
    captureMode: NONE
  egress:
  - hosts: [istio-system/*]
    captureMode: NONE
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: PERMISSIVE}
";

/// The client: an identity and an outbound listener on its loopback for the catalog.
const CLIENT_OBJECTS: &str = "apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: meshmart}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client-vm, namespace: meshmart}
spec:
  address: 10.233.0.3
  serviceAccount: client
  labels: {app: client, security.istio.io/tlsMode: istio}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: meshmart}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 50051, protocol: GRPC, name: grpc}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: [./catalog.meshmart.svc.cluster.local]
";

const STRICT: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: meshmart}
spec:
  mtls: {mode: STRICT}
";

/// A token for `sa` in meshmart with audience istio-ca (the TokenRequest API, through
/// `kubectl create token`): what pilot-agent trades for its certificate.
async fn token(cluster: &Cluster, sa: &str) -> Result<String, Error> {
    let out = cluster
        .kubectl(
            &[
                "create",
                "token",
                sa,
                "--namespace=meshmart",
                "--audience=istio-ca",
                "--duration=1h",
            ],
            None,
        )
        .await?;
    Ok(out.stdout.trim().to_owned())
}

/// The root certificate istiod publishes in each namespace (ConfigMap istio-ca-root-cert),
/// once it is there.
async fn root_cert(cluster: &Cluster, procs: &mut Procs) -> Result<String, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), "meshmart");
    wait_for(
        "istio-ca-root-cert in meshmart",
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

/// One grpcurl call: from the namespace `netns` (or the host), to `target`.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    netns: Option<&'a str>,
    target: &'a str,
    method: &'a str,
    data: &'a str,
}

/// What a call should come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// An answer.
    Answer,
    /// PERMISSION_DENIED (an AuthorizationPolicy, Envoy's RBAC filter).
    Denied,
    /// Any failure (a refused connection, a TLS listener spoken to in plaintext).
    Failure,
}

/// `[ip netns exec NS] grpcurl -plaintext -d DATA TARGET METHOD`: its status and output.
async fn grpcurl(cluster: &Cluster, call: Call<'_>) -> Result<(bool, Output), Error> {
    let grpcurl = cluster.tool("grpcurl");
    let shown = grpcurl.to_string_lossy();
    let mut args: Vec<&str> = Vec::new();
    // In a namespace: `ip netns exec NS grpcurl ...`; on the host: grpcurl itself.
    let program = match call.netns {
        Some(ns) => {
            args.extend(["netns", "exec", ns, shown.as_ref()]);
            Path::new("ip")
        }
        None => grpcurl.as_path(),
    };
    args.extend([
        "-plaintext",
        "-max-time=5",
        "-d",
        call.data,
        call.target,
        call.method,
    ]);
    let (_, status, out) = run_any(program, &args, None).await?;
    Ok((status.success(), out))
}

/// Calls until the call comes to `want` (istiod pushes within seconds; a sidecar needs its
/// certificate and listener first), failing early on a NACK in `sidecar_log`; the last
/// call's output.
async fn call_until(
    cluster: &Cluster,
    procs: &mut Procs,
    sidecar_log: &Path,
    call: Call<'_>,
    want: Want,
) -> Result<String, Error> {
    wait_for(
        &format!("{} at {} to come to {want:?}", call.method, call.target),
        SIDECAR_TIMEOUT,
        procs,
        || rejections(sidecar_log).map(|r| format!("envoy rejected istiod's config:\n{r}")),
        || async {
            let (ok, out) = grpcurl(cluster, call).await.map_err(|e| e.to_string())?;
            let came = match (ok, out.stderr.contains("PermissionDenied")) {
                (true, _) => Want::Answer,
                (false, true) => Want::Denied,
                (false, false) => Want::Failure,
            };
            let text = if ok { out.stdout } else { out.stderr };
            if came == want || (want == Want::Failure && came == Want::Denied) {
                Ok(text)
            } else {
                Err(format!("{came:?}: {}", text.trim()))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_behind_an_envoy_sidecar_configured_by_istiod() -> Result<(), Error> {
    const TEST: &str = "catalog_behind_an_envoy_sidecar_configured_by_istiod";
    if !mesh_ready(TEST, &["catalog", "inventory"])? {
        return Ok(());
    }
    let Some(cluster) = Cluster::start(TEST, &[]).await? else {
        if std::env::var("MESHMART_REQUIRE_MESH").is_ok_and(|v| !v.is_empty() && v != "0") {
            return Err(Error::Missing(
                "MESHMART_REQUIRE_MESH is set but the cluster's tools are missing".to_owned(),
            ));
        }
        return Ok(());
    };
    let root = cluster.dir().join("mesh");
    let logs = cluster.dir().join("logs");
    eprintln!("mesh test: logs in {}", logs.display());

    // Declared before the processes: dropped after them, once nothing runs inside.
    let mut net = Net::new()?;
    let catalog_ns = net.add("catalog", 2, &hosts_file(""))?;
    // The client reaches catalog through its sidecar's outbound listener on its loopback.
    let client_ns = net.add(
        "client",
        3,
        &hosts_file("catalog catalog.meshmart catalog.meshmart.svc.cluster.local"),
    )?;
    let mut procs = Procs::default();

    cluster
        .apply(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: meshmart}\n",
        )
        .await?;
    start_istiod(
        &mut procs,
        cluster.kubeconfig(),
        &root.join("istiod"),
        &logs,
    )
    .await?;
    let root_cert = root_cert(&cluster, &mut procs).await?;
    cluster.apply(CATALOG_OBJECTS).await?;

    // catalog and its inventory, on the namespace's loopback only: the sidecar is the one
    // way in from outside.
    let services = service_bin_dir();
    let data = root.join("catalog/data");
    std::fs::create_dir_all(&data).map_err(|source| Error::Io {
        what: "create the catalog's data folder".to_owned(),
        source,
    })?;
    for (name, grpc, metrics) in [
        ("inventory", "127.0.0.1:50052", "127.0.0.1:9452"),
        ("catalog", "127.0.0.1:50051", "127.0.0.1:9451"),
    ] {
        let envs = [
            ("GRPC_ADDR", grpc.to_owned()),
            ("METRICS_ADDR", metrics.to_owned()),
            ("DATA_DIR", data.display().to_string()),
            ("INVENTORY_ADDR", "http://127.0.0.1:50052".to_owned()),
            ("SEED_DEMO_DATA", "true".to_owned()),
        ];
        procs.spawn(
            &Spawn {
                name,
                program: &services.join(name),
                args: &[],
                envs: &envs,
                cwd: &data,
                netns: Some(&catalog_ns.name),
            },
            &logs,
        )?;
    }

    let catalog_home = root.join("catalog/sidecar");
    let catalog_log = start_sidecar(
        &mut procs,
        &catalog_home,
        &Identity {
            name: "catalog-vm",
            namespace: "meshmart",
            service_account: "catalog",
            labels_json: r#"{"app":"catalog","version":"v1","security.istio.io/tlsMode":"istio"}"#,
            netns: &catalog_ns,
        },
        &token(&cluster, "catalog").await?,
        &root_cert,
        &logs,
    )?;

    // 1. From the host, plaintext (PERMISSIVE), to the sidecar's inbound listener.
    let target = format!("{}:50051", catalog_ns.ip);
    let from_host = Call {
        netns: None,
        target: &target,
        method: "grpc.health.v1.Health/Check",
        data: r#"{"service":"meshmart.catalog.v1.CatalogService"}"#,
    };
    let health = call_until(&cluster, &mut procs, &catalog_log, from_host, Want::Answer).await?;
    assert!(health.contains("SERVING"), "health through envoy: {health}");

    // 2. A client sidecar, and STRICT mTLS in meshmart.
    cluster.apply(CLIENT_OBJECTS).await?;
    cluster.apply(STRICT).await?;
    let client_log = start_sidecar(
        &mut procs,
        &root.join("client/sidecar"),
        &Identity {
            name: "client-vm",
            namespace: "meshmart",
            service_account: "client",
            labels_json: r#"{"app":"client","security.istio.io/tlsMode":"istio"}"#,
            netns: &client_ns,
        },
        &token(&cluster, "client").await?,
        &root_cert,
        &logs,
    )?;
    let list = Call {
        netns: Some(&client_ns.name),
        target: "catalog:50051",
        method: "meshmart.catalog.v1.CatalogService/ListProducts",
        data: r#"{"page_size":2}"#,
    };
    let products = call_until(&cluster, &mut procs, &client_log, list, Want::Answer).await?;
    assert!(
        products.contains("products/"),
        "ListProducts through both sidecars: {products}"
    );

    // 3. STRICT: the host's plaintext call is refused now (the inbound listener has only
    // the mesh's TLS filter chain).
    call_until(&cluster, &mut procs, &catalog_log, from_host, Want::Failure).await?;

    // 4. The peer's identity from its certificate, checked by Envoy's RBAC filter: an
    // AuthorizationPolicy for another service account denies the client, one for its own
    // lets it through.
    let policy = |sa: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: catalog, namespace: meshmart}}
spec:
  selector: {{matchLabels: {{app: catalog}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/meshmart/sa/{sa}]}}}}]
"
        )
    };
    cluster.apply(&policy("orders")).await?;
    call_until(&cluster, &mut procs, &catalog_log, list, Want::Denied).await?;
    cluster.apply(&policy("client")).await?;
    call_until(&cluster, &mut procs, &catalog_log, list, Want::Answer).await?;

    // The catalog sidecar's access log: the client's call came in over mTLS, with the SNI
    // istiod's outbound cluster sets.
    let log = std::fs::read_to_string(&catalog_log).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("ListProducts")
            && l.contains("inbound|50051||")
            && l.contains("outbound_.50051_._.catalog.meshmart.svc.cluster.local")),
        "no mTLS ListProducts in the catalog sidecar's access log {}",
        catalog_log.display()
    );
    hold(&[&catalog_ns.name, &client_ns.name], &root).await;
    Ok(())
}

/// With MESHMART_MESH_HOLD_SECS=N (at most an hour), keeps the mesh up N seconds after a
/// pass, to look at it by hand (`ip netns exec NS curl -s localhost:15000/config_dump`).
async fn hold(namespaces: &[&str], root: &Path) {
    let secs: u64 = std::env::var("MESHMART_MESH_HOLD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(3600);
    if secs > 0 {
        eprintln!(
            "mesh test: holding {secs}s; namespaces {}; files in {}",
            namespaces.join(" "),
            root.display()
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}
