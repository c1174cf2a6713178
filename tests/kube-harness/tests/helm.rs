//! Helm's own lifecycle of the chart against a real API server with the Istio CRDs
//! (src/lib.rs): what `helm install`, `upgrade` and `uninstall` do, not only what
//! `helm template` renders. No Pod ever runs (no kubelet, no scheduler), so every command is
//! `--no-hooks` and none waits; Helm 4 applies server-side. Each test has a cluster of its own.
//!
//! - [`install_deploys_every_object_and_the_hooks_are_accepted`]: `helm install` as the README
//!   says (the defaults and a registry) succeeds with no warning from the server (and the check
//!   sees one when there is one: a throwaway chart with a deprecated field); `helm status` and
//!   `helm list` say deployed, revision 1; every object of `helm get manifest` is on the server,
//!   owned by the release. Then the release's hooks (`helm get hooks`, the same objects as the
//!   documents of `helm template` with a `helm.sh/hook` annotation: the PostgreSQL setup Job and
//!   the `helm test` ServiceAccount, AuthorizationPolicy and Pod; the test fails on any other
//!   set, none included), which `--no-hooks` did not create, are applied on their own: every one
//!   accepted, with no warning.
//! - [`install_with_each_ci_values_file`]: the same install with each
//!   helm/meshmart/ci/*-values.yaml, each release in a namespace of its own.
//! - [`upgrade_then_uninstall_leaves_nothing`]: `helm upgrade` with changed values changes the
//!   server's objects (inventory gets fixed replicas and loses its HorizontalPodAutoscaler,
//!   catalog's RUST_LOG changes), and a second upgrade adding a service (`reviews`, an edge
//!   service that calls catalog) creates its objects and lets it call catalog; revisions go
//!   1, 2, 3. `helm uninstall` then leaves no object with the chart's marks (its
//!   `app.kubernetes.io/part-of` label, Helm's `meta.helm.sh/release-name` annotation) of any
//!   listable type in any namespace or at cluster scope, and no release Secret. (No hook was
//!   applied by hand in this cluster: what is left would be the release's.)
//! - [`a_second_release_in_another_namespace`] and [`two_releases_on_a_shared_gateway`]: a second
//!   release (`shop2`) beside the first, with their own gateways and on the shared one in
//!   istio-system, installs with no conflict; no object of one has the other's name; removing
//!   `shop2` leaves every object of `meshmart` in place. On the shared gateway the names there
//!   carry the release's namespace too, so a second release named `meshmart` (in a third
//!   namespace) installs beside the first, and removing it leaves the first's objects as they
//!   were.
//!
//! Without the binaries the tests say so and pass, unless MESHMART_REQUIRE_KUBE is set
//! (scripts/test.sh sets it).

use std::collections::BTreeSet;
use std::time::Duration;

use kube_harness::{Cluster, Error, Output, repo_root};
use serde_json::Value;
use tokio::time::Instant;

/// The one value the chart requires, as the README's `helm install` sets it.
const REGISTRY: &str = "--set=image.registry=registry.example.com";

/// How long objects may take to go after `helm uninstall` (they have no finalizers: at once).
const GONE_TIMEOUT: Duration = Duration::from_secs(60);

macro_rules! start {
    ($name:literal) => {
        match Cluster::start($name, &["helm"]).await? {
            Some(cluster) => cluster,
            None => return Ok(()),
        }
    };
}

fn chart() -> String {
    repo_root()
        .join("helm/meshmart")
        .to_string_lossy()
        .into_owned()
}

/// The server's warnings in a command's stderr: kubectl prints `Warning: ...`; Helm 4 logs
/// each through klog, `I1201 15:21:41.610028 17643 warnings.go:107] "Warning: ..."`.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("Warning:") || l.contains("warnings.go:"))
        .collect()
}

fn assert_no_warning(what: &str, out: &Output) {
    let found = warnings(&out.stderr);
    assert!(
        found.is_empty(),
        "{what}: the server warned:\n{}",
        found.join("\n")
    );
}

fn parse(what: &str, json: &str) -> Result<Value, Error> {
    serde_json::from_str(json)
        .map_err(|e| Error::Failed(format!("{what}: not JSON ({e}):\n{json}")))
}

/// `helm VERB RELEASE <chart> -n NAMESPACE --no-hooks FLAGS... VALUES...`, which must
/// succeed with no warning.
async fn release_command(
    cluster: &Cluster,
    verb: &str,
    flags: &[&str],
    release: &str,
    namespace: &str,
    values: &[&str],
) -> Result<Output, Error> {
    let chart = chart();
    let mut args = vec![
        verb,
        release,
        &chart,
        "--namespace",
        namespace,
        "--no-hooks",
    ];
    args.extend_from_slice(flags);
    args.extend_from_slice(values);
    let out = cluster.helm(&args).await?;
    assert_no_warning(&format!("helm {verb} {release}"), &out);
    Ok(out)
}

/// `helm install RELEASE <chart> -n NAMESPACE --no-hooks --create-namespace VALUES...`.
async fn install(
    cluster: &Cluster,
    release: &str,
    namespace: &str,
    values: &[&str],
) -> Result<Output, Error> {
    let flags = ["--create-namespace"];
    release_command(cluster, "install", &flags, release, namespace, values).await
}

/// `helm upgrade RELEASE <chart> -n NAMESPACE --no-hooks --reuse-values VALUES...`.
async fn upgrade(
    cluster: &Cluster,
    release: &str,
    namespace: &str,
    values: &[&str],
) -> Result<Output, Error> {
    let flags = ["--reuse-values"];
    release_command(cluster, "upgrade", &flags, release, namespace, values).await
}

/// `helm status` and `helm list` both say the release is deployed at `revision`.
async fn assert_deployed(
    cluster: &Cluster,
    release: &str,
    namespace: &str,
    revision: u64,
) -> Result<(), Error> {
    let status = cluster
        .helm(&["status", release, "--namespace", namespace, "--output=json"])
        .await?;
    let status = parse("helm status", &status.stdout)?;
    assert_eq!(
        status["info"]["status"], "deployed",
        "helm status {release}: {status}"
    );
    assert_eq!(
        status["version"].as_u64(),
        Some(revision),
        "helm status {release}: {status}"
    );
    let list = cluster
        .helm(&["list", "--namespace", namespace, "--output=json"])
        .await?;
    let list = parse("helm list", &list.stdout)?;
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == release))
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["status"], "deployed", "helm list: {list}");
    // `helm list` gives the revision as a string.
    assert_eq!(
        entry["revision"].as_str(),
        Some(revision.to_string().as_str()),
        "helm list: {list}"
    );
    Ok(())
}

/// An object by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Object {
    kind: String,
    namespace: String,
    name: String,
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The documents of a YAML stream that have a kind.
fn documents(yaml: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| d.lines().any(|l| l.starts_with("kind:")));
    docs
}

/// A document's kind, metadata.namespace (else `namespace`) and metadata.name, read from its
/// top-level `kind:` and the two-space-indented keys of its `metadata:`.
fn object(doc: &str, namespace: &str) -> Object {
    let mut kind = String::new();
    let mut ns = namespace.to_owned();
    let mut name = String::new();
    let mut in_metadata = false;
    let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_owned();
    for line in doc.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_metadata = line.trim_end() == "metadata:";
            if let Some(v) = line.strip_prefix("kind:") {
                kind = unquote(v);
            }
        } else if in_metadata {
            if let Some(v) = line.strip_prefix("  name:") {
                name = unquote(v);
            } else if let Some(v) = line.strip_prefix("  namespace:") {
                ns = unquote(v);
            }
        }
    }
    Object {
        kind,
        namespace: ns,
        name,
    }
}

fn from_json(item: &Value) -> Object {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Object {
        kind: text(&item["kind"]),
        namespace: text(&item["metadata"]["namespace"]),
        name: text(&item["metadata"]["name"]),
    }
}

/// The items of `kubectl get -o json`: a List, or one object.
fn items(list: Value) -> Vec<Value> {
    match list {
        Value::Object(mut map) if map.contains_key("items") => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        Value::Object(map) if map.is_empty() => Vec::new(),
        Value::Object(map) => vec![Value::Object(map)],
        _ => Vec::new(),
    }
}

/// The server's copy of each object of a YAML stream (`kubectl get -f - -o json`); an error
/// if any is missing, unless `ignore_missing`.
async fn on_server(
    cluster: &Cluster,
    yaml: &str,
    ignore_missing: bool,
) -> Result<Vec<Value>, Error> {
    let mut args = vec!["get", "-f", "-", "--output=json"];
    if ignore_missing {
        args.push("--ignore-not-found");
    }
    let out = cluster.kubectl(&args, Some(yaml)).await?;
    if out.stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(items(parse("kubectl get -f -", &out.stdout)?))
}

/// Every object of `helm get manifest RELEASE` is on the server, annotated as the release's
/// own; its objects, sorted.
async fn release_on_server(
    cluster: &Cluster,
    release: &str,
    namespace: &str,
) -> Result<Vec<Object>, Error> {
    let manifest = cluster
        .helm(&["get", "manifest", release, "--namespace", namespace])
        .await?
        .stdout;
    let mut want: Vec<Object> = documents(&manifest)
        .iter()
        .map(|doc| object(doc, namespace))
        .collect();
    want.sort();
    assert!(
        want.len() > 30,
        "helm get manifest {release}: only {} objects:\n{manifest}",
        want.len()
    );
    let server = on_server(cluster, &manifest, false).await?;
    let mut got: Vec<Object> = server.iter().map(from_json).collect();
    got.sort();
    assert_eq!(
        got, want,
        "the server's objects are not those of helm get manifest {release}"
    );
    for item in &server {
        let annotations = &item["metadata"]["annotations"];
        assert!(
            annotations["meta.helm.sh/release-name"] == release
                && annotations["meta.helm.sh/release-namespace"] == namespace,
            "{} is not release {namespace}/{release}'s: {annotations}",
            from_json(item)
        );
    }
    Ok(want)
}

/// Whether an object carries the chart's label or Helm's release annotation.
fn marked(item: &Value) -> bool {
    item["metadata"]["labels"]["app.kubernetes.io/part-of"] == "meshmart"
        || item["metadata"]["annotations"]["meta.helm.sh/release-name"].is_string()
}

/// Every object, of every listable type, in every namespace and at cluster scope, that carries
/// the chart's label or Helm's release annotation.
async fn marked_objects(cluster: &Cluster) -> Result<Vec<Object>, Error> {
    let mut found = Vec::new();
    for namespaced in [true, false] {
        let flag = format!("--namespaced={namespaced}");
        let types = cluster
            .kubectl(
                &["api-resources", "--verbs=list", &flag, "--output=name"],
                None,
            )
            .await?
            .stdout;
        let types: Vec<&str> = types.lines().filter(|t| !t.trim().is_empty()).collect();
        assert!(types.len() > 10, "kubectl api-resources {flag}: {types:?}");
        let types = types.join(",");
        let mut args = vec!["get", types.as_str(), "--output=json"];
        if namespaced {
            args.push("--all-namespaces");
        }
        let out = cluster.kubectl(&args, None).await?;
        found.extend(
            items(parse("kubectl get", &out.stdout)?)
                .iter()
                .filter(|item| marked(item))
                .map(from_json),
        );
    }
    found.sort();
    Ok(found)
}

/// The release Secrets Helm keeps (`sh.helm.release.v1.<release>.v<revision>`), everywhere.
async fn release_secrets(cluster: &Cluster) -> Result<Vec<String>, Error> {
    let out = cluster
        .kubectl(
            &[
                "get",
                "secrets",
                "--all-namespaces",
                "--field-selector=type=helm.sh/release.v1",
                "--output=jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
            ],
            None,
        )
        .await?;
    Ok(out.stdout.lines().map(str::to_owned).collect())
}

/// One field of one object, by kubectl's jsonpath.
async fn field(
    cluster: &Cluster,
    namespace: &str,
    object: &str,
    path: &str,
) -> Result<String, Error> {
    let jsonpath = format!("--output=jsonpath={path}");
    Ok(cluster
        .kubectl(&["get", "--namespace", namespace, object, &jsonpath], None)
        .await?
        .stdout)
}

/// Whether an object exists.
async fn exists(cluster: &Cluster, namespace: &str, object: &str) -> Result<bool, Error> {
    let out = cluster
        .kubectl(
            &[
                "get",
                "--namespace",
                namespace,
                object,
                "--ignore-not-found",
                "--output=name",
            ],
            None,
        )
        .await?;
    Ok(!out.stdout.trim().is_empty())
}

/// The check for warnings is not vacuous: a chart whose Deployment uses a deprecated node
/// label makes the server warn, and [`warnings`] finds it in what helm printed.
async fn a_server_warning_is_seen(cluster: &Cluster) -> Result<(), Error> {
    let dir = cluster.dir().join("warning-chart");
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).map_err(|source| Error::Io {
        what: format!("create {}", templates.display()),
        source,
    })?;
    let files = [
        (
            dir.join("Chart.yaml"),
            "apiVersion: v2\nname: warned\nversion: 0.1.0\n",
        ),
        (
            templates.join("deployment.yaml"),
            "apiVersion: apps/v1
kind: Deployment
metadata:
  name: warned
spec:
  selector:
    matchLabels:
      app: warned
  template:
    metadata:
      labels:
        app: warned
    spec:
      nodeSelector:
        beta.kubernetes.io/arch: amd64
      containers:
        - name: c
          image: registry.example.com/c:1
",
        ),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|source| Error::Io {
            what: format!("write {}", path.display()),
            source,
        })?;
    }
    let chart = dir.to_string_lossy();
    let out = cluster
        .helm(&[
            "install",
            "warned",
            &chart,
            "--namespace",
            "warned",
            "--create-namespace",
            "--no-hooks",
        ])
        .await?;
    let found = warnings(&out.stderr);
    assert!(
        found.iter().any(|w| w.contains("beta.kubernetes.io/arch")),
        "helm install of a deprecated node label: no warning found in\n--- stderr\n{}",
        out.stderr
    );
    cluster
        .helm(&["uninstall", "warned", "--namespace", "warned", "--no-hooks"])
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_deploys_every_object_and_the_hooks_are_accepted() -> Result<(), Error> {
    let cluster = start!("install_deploys_every_object_and_the_hooks_are_accepted");
    a_server_warning_is_seen(&cluster).await?;
    cluster.create_namespaces(&["istio-system"]).await?;
    install(&cluster, "meshmart", "meshmart", &[REGISTRY]).await?;
    assert_deployed(&cluster, "meshmart", "meshmart", 1).await?;
    let objects = release_on_server(&cluster, "meshmart", "meshmart").await?;
    eprintln!(
        "helm install meshmart: {} objects on the server",
        objects.len()
    );

    // The hooks: stored in the release, not created by --no-hooks.
    let hooks = cluster
        .helm(&["get", "hooks", "meshmart", "--namespace", "meshmart"])
        .await?
        .stdout;
    let docs = documents(&hooks);
    for doc in &docs {
        assert!(
            doc.contains("helm.sh/hook:"),
            "helm get hooks gave a document without a helm.sh/hook annotation:\n{doc}"
        );
    }
    // The same as the chart renders with a helm.sh/hook annotation.
    let rendered = cluster
        .helm(&[
            "template",
            "meshmart",
            &chart(),
            "--namespace=meshmart",
            REGISTRY,
        ])
        .await?
        .stdout;
    let mut rendered: Vec<Object> = documents(&rendered)
        .iter()
        .filter(|d| d.contains("helm.sh/hook:"))
        .map(|d| object(d, "meshmart"))
        .collect();
    rendered.sort();
    let mut stored: Vec<Object> = docs.iter().map(|d| object(d, "meshmart")).collect();
    stored.sort();
    assert_eq!(
        stored, rendered,
        "helm get hooks is not what helm template renders as hooks"
    );
    let kinds: BTreeSet<String> = docs.iter().map(|d| object(d, "meshmart").kind).collect();
    let want: BTreeSet<String> = ["AuthorizationPolicy", "Job", "Pod", "ServiceAccount"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(kinds, want, "the chart's hook kinds:\n{hooks}");
    assert!(
        on_server(&cluster, &hooks, true).await?.is_empty(),
        "--no-hooks created hooks"
    );
    let out = cluster.apply(&hooks).await?;
    let applied = out
        .stdout
        .lines()
        .filter(|l| l.ends_with(" serverside-applied"))
        .count();
    assert_eq!(
        applied,
        docs.len(),
        "kubectl applied {applied} of {} hooks:\n{}",
        docs.len(),
        out.stdout
    );
    assert_no_warning("kubectl apply of the hooks", &out);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_with_each_ci_values_file() -> Result<(), Error> {
    let cluster = start!("install_with_each_ci_values_file");
    cluster.create_namespaces(&["istio-system"]).await?;
    for file in kube_harness::ci_values_files()? {
        let path = repo_root().join("helm/meshmart/ci").join(&file);
        let values = format!("--values={}", path.display());
        let namespace = format!("ci-{}", file.strip_suffix("-values.yaml").unwrap_or(&file));
        // The namespaces the values put objects in besides the release's (a shared gateway's).
        let rendered = cluster
            .helm(&[
                "template",
                "meshmart",
                &chart(),
                "--namespace",
                &namespace,
                &values,
            ])
            .await?
            .stdout;
        let mut others: Vec<String> = documents(&rendered)
            .iter()
            .map(|doc| object(doc, &namespace).namespace)
            .filter(|ns| *ns != namespace)
            .collect();
        others.sort();
        others.dedup();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        if !others.is_empty() {
            cluster.create_namespaces(&others).await?;
        }

        install(&cluster, "meshmart", &namespace, &[&values]).await?;
        assert_deployed(&cluster, "meshmart", &namespace, 1).await?;
        let objects = release_on_server(&cluster, "meshmart", &namespace).await?;
        eprintln!(
            "ci/{file}: {} objects in {namespace} and {others:?}",
            objects.len()
        );
    }
    Ok(())
}

/// A service added by values, as values.yaml says: an entry under `services`, and the
/// allowedCallers of the service it calls (catalog).
const REVIEWS: &str = "services:
  catalog:
    allowedCallers: [orders, reviews]
  reviews:
    port: 50058
    grpcService: meshmart.reviews.v1.ReviewService
    edge: true
    database:
      enabled: true
      password: demo-reviews-password
    methods:
      reads: [GetReview, ListReviews]
      writes: [CreateReview]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_then_uninstall_leaves_nothing() -> Result<(), Error> {
    let cluster = start!("upgrade_then_uninstall_leaves_nothing");
    cluster.create_namespaces(&["istio-system"]).await?;
    install(&cluster, "meshmart", "meshmart", &[REGISTRY]).await?;
    assert_deployed(&cluster, "meshmart", "meshmart", 1).await?;
    let ns = "meshmart";
    // Before: inventory scales by its HPA (no replicas of its own, the API server's default 1).
    assert_eq!(
        field(&cluster, ns, "deployment/inventory-v1", "{.spec.replicas}").await?,
        "1"
    );
    assert!(exists(&cluster, ns, "horizontalpodautoscaler/inventory-v1").await?);
    assert_eq!(
        field(&cluster, ns, "configmap/catalog", "{.data.RUST_LOG}").await?,
        "info"
    );

    // Changed values.
    upgrade(
        &cluster,
        "meshmart",
        ns,
        &[
            "--set=services.inventory.autoscaling.enabled=false",
            "--set=services.inventory.replicas=3",
            "--set=runtime.rustLog=debug",
        ],
    )
    .await?;
    assert_deployed(&cluster, "meshmart", ns, 2).await?;
    assert_eq!(
        field(&cluster, ns, "deployment/inventory-v1", "{.spec.replicas}").await?,
        "3"
    );
    assert!(
        !exists(&cluster, ns, "horizontalpodautoscaler/inventory-v1").await?,
        "helm upgrade left inventory's HPA, which the new values drop"
    );
    assert_eq!(
        field(&cluster, ns, "configmap/catalog", "{.data.RUST_LOG}").await?,
        "debug"
    );
    release_on_server(&cluster, "meshmart", ns).await?;

    // A service added.
    let reviews = cluster.dir().join("reviews-values.yaml");
    std::fs::write(&reviews, REVIEWS).map_err(|source| Error::Io {
        what: format!("write {}", reviews.display()),
        source,
    })?;
    let values = format!("--values={}", reviews.display());
    for object in [
        "deployment/reviews-v1",
        "service/reviews",
        "configmap/reviews",
        "virtualservice.networking.istio.io/reviews",
        "destinationrule.networking.istio.io/reviews",
        "authorizationpolicy.security.istio.io/reviews",
    ] {
        assert!(
            !exists(&cluster, ns, object).await?,
            "{object} before the upgrade"
        );
    }
    upgrade(&cluster, "meshmart", ns, &[&values]).await?;
    assert_deployed(&cluster, "meshmart", ns, 3).await?;
    let objects = release_on_server(&cluster, "meshmart", ns).await?;
    let reviews_objects: BTreeSet<(&str, &str)> = objects
        .iter()
        .filter(|o| o.name.starts_with("reviews"))
        .map(|o| (o.kind.as_str(), o.name.as_str()))
        .collect();
    let want: BTreeSet<(&str, &str)> = [
        ("AuthorizationPolicy", "reviews"),
        ("ConfigMap", "reviews"),
        ("Deployment", "reviews-v1"),
        ("DestinationRule", "reviews"),
        ("HorizontalPodAutoscaler", "reviews-v1"),
        ("PodDisruptionBudget", "reviews"),
        ("Secret", "reviews-database"),
        ("Service", "reviews"),
        ("ServiceAccount", "reviews"),
        ("VirtualService", "reviews"),
    ]
    .into_iter()
    .collect();
    assert_eq!(reviews_objects, want, "reviews' objects after the upgrade");
    // The earlier upgrade's values are kept (--reuse-values), and reviews may call catalog.
    assert_eq!(
        field(&cluster, ns, "deployment/inventory-v1", "{.spec.replicas}").await?,
        "3"
    );
    assert_eq!(
        field(&cluster, ns, "configmap/reviews", "{.data.CATALOG_ADDR}").await?,
        "http://catalog:50051"
    );
    let catalog_callers = field(
        &cluster,
        ns,
        "authorizationpolicy.security.istio.io/catalog",
        "{.spec.rules[*].from[*].source.principals}",
    )
    .await?;
    assert!(
        catalog_callers.contains("/ns/meshmart/sa/reviews"),
        "catalog's AuthorizationPolicy does not let reviews call: {catalog_callers}"
    );
    let history = cluster
        .helm(&["history", "meshmart", "--namespace", ns, "--output=json"])
        .await?;
    let history = parse("helm history", &history.stdout)?;
    let revisions: Vec<(u64, String)> = history
        .as_array()
        .map(|h| {
            h.iter()
                .map(|r| {
                    (
                        r["revision"].as_u64().unwrap_or_default(),
                        r["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        revisions,
        [
            (1, "superseded".to_owned()),
            (2, "superseded".to_owned()),
            (3, "deployed".to_owned()),
        ],
        "helm history: {history}"
    );
    let secrets = release_secrets(&cluster).await?;
    assert_eq!(secrets.len(), 3, "release Secrets: {secrets:?}");

    // Uninstall.
    let before = marked_objects(&cluster).await?;
    assert!(
        before.len() >= objects.len(),
        "only {} marked objects before uninstall",
        before.len()
    );
    let out = cluster
        .helm(&["uninstall", "meshmart", "--namespace", ns, "--no-hooks"])
        .await?;
    assert_no_warning("helm uninstall", &out);
    let list = cluster
        .helm(&["list", "--all-namespaces", "--short"])
        .await?;
    assert!(
        list.stdout.trim().is_empty(),
        "helm list after uninstall: {}",
        list.stdout
    );
    let deadline = Instant::now() + GONE_TIMEOUT;
    let left = loop {
        let left = marked_objects(&cluster).await?;
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let left: Vec<String> = left.iter().map(Object::to_string).collect();
    assert!(
        left.is_empty(),
        "helm uninstall left objects of the chart (after {GONE_TIMEOUT:?}):\n{}",
        left.join("\n")
    );
    let secrets = release_secrets(&cluster).await?;
    assert!(secrets.is_empty(), "release Secrets left: {secrets:?}");
    Ok(())
}

/// Releases `meshmart` in meshmart and `shop2` in shop2 with the same `values`: both install,
/// every object each made is its own, no two objects share a name, and uninstalling `shop2`
/// leaves every object of `meshmart`. The objects of each outside its namespace, sorted.
async fn two_releases(cluster: &Cluster, values: [&[&str]; 2]) -> Result<[Vec<Object>; 2], Error> {
    cluster.create_namespaces(&["istio-system"]).await?;
    install(cluster, "meshmart", "meshmart", values[0]).await?;
    install(cluster, "shop2", "shop2", values[1]).await?;
    assert_deployed(cluster, "meshmart", "meshmart", 1).await?;
    assert_deployed(cluster, "shop2", "shop2", 1).await?;
    let first = release_on_server(cluster, "meshmart", "meshmart").await?;
    let second = release_on_server(cluster, "shop2", "shop2").await?;
    let shared: Vec<String> = first
        .iter()
        .filter(|o| second.contains(o))
        .map(Object::to_string)
        .collect();
    assert!(shared.is_empty(), "objects of both releases: {shared:?}");

    let manifest = cluster
        .helm(&["get", "manifest", "shop2", "--namespace", "shop2"])
        .await?
        .stdout;
    let out = cluster
        .helm(&["uninstall", "shop2", "--namespace", "shop2", "--no-hooks"])
        .await?;
    assert_no_warning("helm uninstall shop2", &out);
    let deadline = Instant::now() + GONE_TIMEOUT;
    let left = loop {
        let left = on_server(cluster, &manifest, true).await?;
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let left: Vec<Object> = left.iter().map(from_json).collect();
    assert!(left.is_empty(), "helm uninstall shop2 left {left:?}");
    let kept = release_on_server(cluster, "meshmart", "meshmart").await?;
    assert_eq!(kept, first, "uninstalling shop2 changed meshmart's objects");
    assert_deployed(cluster, "meshmart", "meshmart", 1).await?;

    let outside = |objects: Vec<Object>, ns: &str| -> Vec<Object> {
        objects.into_iter().filter(|o| o.namespace != ns).collect()
    };
    Ok([outside(first, "meshmart"), outside(second, "shop2")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_release_in_another_namespace() -> Result<(), Error> {
    let cluster = start!("a_second_release_in_another_namespace");
    let [first, second] = two_releases(&cluster, [&[REGISTRY], &[REGISTRY]]).await?;
    // Each release brings its own gateway: nothing outside its namespace.
    assert!(first.is_empty(), "meshmart's objects elsewhere: {first:?}");
    assert!(second.is_empty(), "shop2's objects elsewhere: {second:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releases_on_a_shared_gateway() -> Result<(), Error> {
    let cluster = start!("two_releases_on_a_shared_gateway");
    let shared = "--set=ingress.gateway.create=false";
    let [first, second] = two_releases(
        &cluster,
        [
            &[REGISTRY, shared, "--set=ingress.hosts={shop.example.com}"],
            &[REGISTRY, shared, "--set=ingress.hosts={shop2.example.com}"],
        ],
    )
    .await?;
    // The gateway's policies (JWT, rate limit, header filters) in its namespace, named after
    // each release.
    for (release, objects) in [("meshmart", &first), ("shop2", &second)] {
        let kinds: BTreeSet<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
        assert!(
            objects.iter().all(|o| o.namespace == "istio-system")
                && kinds.contains("RequestAuthentication")
                && kinds.contains("AuthorizationPolicy")
                && kinds.contains("EnvoyFilter"),
            "{release}'s objects in the gateway's namespace: {objects:?}"
        );
    }

    // A release of the same name in a third namespace: what it puts beside the shared gateway
    // is named after its namespace too (meshmart.gatewayPrefix), so it installs beside the
    // first, and removing it leaves the first's objects there as they were.
    let third = install(
        &cluster,
        "meshmart",
        "shop3",
        &[REGISTRY, shared, "--set=ingress.hosts={shop3.example.com}"],
    )
    .await;
    assert!(
        third.is_ok(),
        "a second meshmart on the shared gateway: {third:?}"
    );
    let third_objects: Vec<Object> = release_on_server(&cluster, "meshmart", "shop3")
        .await?
        .into_iter()
        .filter(|o| o.namespace != "shop3")
        .collect();
    assert!(
        !third_objects.is_empty() && third_objects.iter().all(|o| !first.contains(o)),
        "shop3's meshmart shares objects with meshmart's: {third_objects:?}"
    );
    cluster
        .helm(&["uninstall", "meshmart", "--namespace=shop3", "--no-hooks"])
        .await?;
    let kept = release_on_server(&cluster, "meshmart", "meshmart").await?;
    assert_eq!(
        kept.into_iter()
            .filter(|o| o.namespace != "meshmart")
            .collect::<Vec<_>>(),
        first,
        "removing shop3's meshmart changed meshmart's objects in istio-system"
    );
    Ok(())
}
