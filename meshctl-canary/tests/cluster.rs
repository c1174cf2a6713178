//! The built meshctl-canary binary against a real API server (tests/kube-harness: etcd,
//! kube-apiserver and the Istio CRDs; no kubelet, so no pod is ever ready): what it sets is
//! what the server keeps, under meshctl's field manager; a dry run changes nothing; and a
//! `helm upgrade` of the chart keeps the weights meshctl set.
//!
//! Each test has a cluster of its own. Without the binaries the tests say so and pass,
//! unless MESHMART_REQUIRE_KUBE is set (scripts/test.sh sets it).

use std::path::Path;
use std::process::ExitStatus;

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube_harness::{Cluster, Error, Output, repo_root, run_any};
use meshctl_canary::delegate::{self, Delegate};

macro_rules! start {
    ($name:literal, $tools:expr) => {
        match Cluster::start($name, $tools).await? {
            Some(cluster) => cluster,
            None => return Ok(()),
        }
    };
}

/// What the chart renders for catalog with its canary, as Helm would have applied it
/// (field manager helm): the namespace, the delegate at 90/10, a mesh VirtualService whose
/// routes pin and delegate, and a Deployment per version.
const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: meshmart
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: catalog-weights
  namespace: meshmart
  labels:
    app.kubernetes.io/part-of: meshmart
    app.kubernetes.io/component: canary-weights
    app: catalog
spec:
  http:
    - name: weights
      route:
        - destination: {host: catalog.meshmart.svc.cluster.local, subset: v1, port: {number: 50051}}
          weight: 90
        - destination: {host: catalog.meshmart.svc.cluster.local, subset: v2, port: {number: 50051}}
          weight: 10
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: catalog
  namespace: meshmart
  labels:
    app: catalog
spec:
  hosts: [catalog.meshmart.svc.cluster.local]
  gateways: [mesh]
  http:
    - name: catalog-other-v2-pinned
      match:
        - headers:
            x-meshmart-canary: {exact: v2}
      route:
        - destination: {host: catalog.meshmart.svc.cluster.local, subset: v2, port: {number: 50051}}
    - name: catalog-other
      delegate: {name: catalog-weights, namespace: meshmart}
      retries: {attempts: 0}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: catalog-v1
  namespace: meshmart
  labels: {app: catalog, version: v1}
spec:
  replicas: 2
  selector:
    matchLabels: {app: catalog, version: v1}
  template:
    metadata:
      labels: {app: catalog, version: v1}
    spec:
      containers:
        - name: catalog
          image: registry.example.com/catalog:test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: catalog-v2
  namespace: meshmart
  labels: {app: catalog, version: v2}
spec:
  replicas: 1
  selector:
    matchLabels: {app: catalog, version: v2}
  template:
    metadata:
      labels: {app: catalog, version: v2}
    spec:
      containers:
        - name: catalog
          image: registry.example.com/catalog:test
"#;

/// `meshctl-canary --kubeconfig <the cluster's> args...`: its exit status and output.
async fn canary(cluster: &Cluster, args: &[&str]) -> Result<(ExitStatus, Output), Error> {
    let binary = Path::new(env!("CARGO_BIN_EXE_meshctl-canary"));
    let kubeconfig = cluster.kubeconfig().to_string_lossy().into_owned();
    let all = ["--kubeconfig", kubeconfig.as_str()]
        .into_iter()
        .chain(args.iter().copied());
    let (_, status, output) = run_any(binary, all, None).await?;
    Ok((status, output))
}

/// Like [`canary`], and it must succeed: its stdout.
async fn canary_ok(cluster: &Cluster, args: &[&str]) -> Result<String, Error> {
    let (status, output) = canary(cluster, args).await?;
    assert!(
        status.success(),
        "meshctl-canary {args:?}: {status}\n--- stdout\n{}\n--- stderr\n{}",
        output.stdout,
        output.stderr
    );
    Ok(output.stdout)
}

/// The live delegate of catalog.
async fn live(cluster: &Cluster) -> Result<(DynamicObject, Delegate), Error> {
    let object = delegate::virtual_services(cluster.client(), "meshmart")
        .get("catalog-weights")
        .await?;
    let parsed = Delegate::parse("catalog", "meshmart", &object)
        .map_err(|e| Error::Failed(e.to_string()))?;
    Ok((object, parsed))
}

async fn live_weights(cluster: &Cluster) -> Result<(u32, u32), Error> {
    let (_, parsed) = live(cluster).await?;
    Ok((parsed.stable.weight, parsed.canary.weight))
}

/// The table's rows, split into words.
fn rows(table: &str) -> Vec<Vec<&str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_dry_run_promote_and_rollback_on_a_real_api_server() -> Result<(), Error> {
    let cluster = start!(
        "set_status_dry_run_promote_and_rollback_on_a_real_api_server",
        &[]
    );
    cluster
        .kubectl(
            &["apply", "--server-side", "--field-manager=helm", "-f", "-"],
            Some(FIXTURE),
        )
        .await?;

    let out = canary_ok(&cluster, &["set", "catalog", "50"]).await?;
    assert!(out.contains("catalog: v1 90 -> 50, v2 10 -> 50"), "{out}");
    let (object, parsed) = live(&cluster).await?;
    assert_eq!((parsed.stable.weight, parsed.canary.weight), (50, 50));
    assert_eq!(parsed.owner.as_deref(), Some("meshctl"));
    let managers: Vec<(String, String)> = object
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("meshctl".to_owned(), "Apply".to_owned())),
        "{managers:?}"
    );
    // The labels are still Helm's: meshctl applied only what it owns.
    assert_eq!(
        object
            .labels()
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("canary-weights")
    );

    let status = canary_ok(&cluster, &["status"]).await?;
    let table = rows(&status);
    // No kubelet: nothing is ever ready.
    assert!(
        table.contains(&vec!["v1", "stable", "50%", "0/2"]),
        "{status}"
    );
    assert!(
        table.contains(&vec!["v2", "canary", "50%", "0/1"]),
        "{status}"
    );
    assert!(
        table.contains(&vec![
            "catalog",
            "catalog-other",
            "delegate",
            "v1",
            "50%,",
            "v2",
            "50%"
        ]),
        "{status}"
    );
    assert!(
        table.contains(&vec![
            "catalog",
            "catalog-other-v2-pinned",
            "route",
            "v2",
            "100%"
        ]),
        "{status}"
    );
    let json = canary_ok(&cluster, &["status", "catalog", "-o", "json"]).await?;
    let json: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| Error::Failed(format!("{e}: {json}")))?;
    assert_eq!(json["services"][0]["weightsOwner"], "meshctl", "{json}");

    let out = canary_ok(&cluster, &["set", "catalog", "30", "--dry-run"]).await?;
    assert!(out.contains("catalog: v1 50 -> 70, v2 50 -> 30"), "{out}");
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(live_weights(&cluster).await?, (50, 50));

    canary_ok(&cluster, &["promote", "catalog"]).await?;
    assert_eq!(live_weights(&cluster).await?, (0, 100));
    canary_ok(&cluster, &["rollback", "catalog"]).await?;
    assert_eq!(live_weights(&cluster).await?, (100, 0));

    let (status, output) = canary(&cluster, &["set", "orders", "50"]).await?;
    assert_eq!(status.code(), Some(1), "{output:?}");
    assert!(
        output.stderr.contains(
            "orders has no canary in namespace meshmart (no VirtualService orders-weights; \
             set services.orders.canary.enabled)"
        ),
        "{output:?}"
    );
    Ok(())
}

/// The chart as installed (Helm 4 applies server-side): meshctl's weights survive a
/// `helm upgrade` of an unrelated value, and one of `canary.weight` too, since the chart
/// renders the live weights once meshctl owns them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_upgrade_keeps_the_weights_meshctl_set() -> Result<(), Error> {
    let cluster = start!("helm_upgrade_keeps_the_weights_meshctl_set", &["helm"]);
    // The Istio gateway's namespace, which Istio's install makes.
    cluster.create_namespaces(&["istio-system"]).await?;
    let chart = repo_root().join("helm/meshmart");
    let chart = chart.to_string_lossy().into_owned();
    cluster
        .helm(&[
            "install",
            "meshmart",
            &chart,
            "-n",
            "meshmart",
            "--create-namespace",
            "--no-hooks",
            "--set",
            "image.registry=registry.example.com",
        ])
        .await?;
    assert_eq!(live_weights(&cluster).await?, (90, 10), "the values' 10%");
    let status = canary_ok(&cluster, &["status", "catalog"]).await?;
    eprintln!("meshctl-canary status catalog:\n{status}");
    let table = rows(&status);
    // The chart's routes delegate, in the mesh VirtualService and the edge one.
    for vs in ["catalog", "meshmart-edge"] {
        assert!(
            table
                .iter()
                .any(|row| row.first() == Some(&vs) && row.get(2) == Some(&"delegate")),
            "no route of {vs} delegates:\n{status}"
        );
    }
    assert!(
        table
            .iter()
            .any(|row| row.get(1).is_some_and(|r| r.ends_with("-v2-pinned"))
                && row.get(3..) == Some(&["v2", "100%"][..])),
        "no pinned route:\n{status}"
    );

    canary_ok(&cluster, &["set", "catalog", "50"]).await?;
    assert_eq!(live_weights(&cluster).await?, (50, 50));

    cluster
        .helm(&[
            "upgrade",
            "meshmart",
            &chart,
            "-n",
            "meshmart",
            "--no-hooks",
            "--reuse-values",
            "--set",
            "services.inventory.autoscaling.enabled=false",
            "--set",
            "services.inventory.replicas=2",
        ])
        .await?;
    let inventory = cluster
        .kubectl(
            &[
                "get",
                "deployment",
                "inventory-v1",
                "-n",
                "meshmart",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            None,
        )
        .await?;
    assert_eq!(inventory.stdout.trim(), "2", "the upgrade applied");
    assert_eq!(
        live_weights(&cluster).await?,
        (50, 50),
        "kept by the upgrade"
    );

    // meshctl owns the weights now: the values' weight no longer applies (docs/deploy.md).
    cluster
        .helm(&[
            "upgrade",
            "meshmart",
            &chart,
            "-n",
            "meshmart",
            "--no-hooks",
            "--reuse-values",
            "--set",
            "services.catalog.canary.weight=20",
        ])
        .await?;
    let (_, parsed) = live(&cluster).await?;
    assert_eq!((parsed.stable.weight, parsed.canary.weight), (50, 50));
    assert_eq!(parsed.owner.as_deref(), Some("meshctl"));
    Ok(())
}

/// The plain manifests (`kubectl apply -k istio/`, client-side, as scripts/kind-up.sh
/// does): meshctl's forced apply takes the weights over, and applying the committed file
/// again brings its weights back (docs/deploy.md, section 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_manifests_applied_again_bring_their_weights_back() -> Result<(), Error> {
    let cluster = start!(
        "the_committed_manifests_applied_again_bring_their_weights_back",
        &[]
    );
    cluster.create_namespaces(&["meshmart"]).await?;
    let committed = repo_root().join("istio/canaryweights.yaml");
    let committed = committed.to_string_lossy().into_owned();
    cluster.kubectl(&["apply", "-f", &committed], None).await?;
    let before = live_weights(&cluster).await?;
    assert_ne!(
        before,
        (50, 50),
        "the test needs the committed weights to differ"
    );

    canary_ok(&cluster, &["set", "catalog", "50"]).await?;
    assert_eq!(live_weights(&cluster).await?, (50, 50));

    cluster.kubectl(&["apply", "-f", &committed], None).await?;
    assert_eq!(live_weights(&cluster).await?, before);
    Ok(())
}
