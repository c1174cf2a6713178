//! The deployment files as a user applies them, against a real API server with the Istio
//! CRDs installed (src/lib.rs): `kubectl apply --server-side` of each kustomize overlay, of
//! istio/, and of the chart rendered by `helm template` with its defaults and with each
//! helm/meshmart/ci/*-values.yaml. Every object must be accepted, with no warning from the
//! server either (a deprecated API, a Pod Security violation of the namespace's level).
//!
//! Each test has a cluster of its own (about 10-20 s to start). Without the binaries the
//! tests say so and pass, unless MESHMART_REQUIRE_KUBE is set (scripts/test.sh sets it).

use kube_harness::{Cluster, Error, Output, ci_values_files, namespaces_in, repo_root, run};

/// `helm template meshmart helm/meshmart --namespace meshmart [-f VALUES]`, as
/// `helm install` would render it (the `helm test` hooks included: they are applied too).
/// Without a values file it sets the one value the chart requires, as the README's
/// `helm install` does: a registry.
async fn helm_template(cluster: &Cluster, values: Option<&str>) -> Result<String, Error> {
    let chart = repo_root().join("helm/meshmart");
    let chart = chart.to_string_lossy().into_owned();
    let mut args = vec![
        "template".to_owned(),
        "meshmart".to_owned(),
        chart,
        "--namespace=meshmart".to_owned(),
    ];
    match values {
        Some(values) => args.push(format!("--values={}", repo_root().join(values).display())),
        None => args.push("--set=image.registry=registry.example.com".to_owned()),
    }
    Ok(run(&cluster.tool("helm"), &args, None).await?.stdout)
}

/// The number of objects in a YAML stream, and an error if kubectl's answer does not name
/// that many or the server warned.
fn accepted(yaml: &str, out: &Output) -> usize {
    let objects = yaml
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .count();
    let applied = out
        .stdout
        .lines()
        .filter(|l| l.ends_with(" serverside-applied"))
        .count();
    assert_eq!(
        applied, objects,
        "kubectl applied {applied} of {objects} objects:\n{}",
        out.stdout
    );
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect();
    assert!(
        warnings.is_empty(),
        "the server warned:\n{}",
        warnings.join("\n")
    );
    applied
}

macro_rules! start {
    ($name:literal, $tools:expr) => {
        match Cluster::start($name, $tools).await? {
            Some(cluster) => cluster,
            None => return Ok(()),
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kind_overlay_is_accepted() -> Result<(), Error> {
    let cluster = start!("the_kind_overlay_is_accepted", &[]);
    let yaml = cluster.kustomize("k8s/overlays/kind").await?;
    let out = cluster.apply(&yaml).await?;
    assert!(accepted(&yaml, &out) > 20, "{}", out.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minikube_overlay_is_accepted() -> Result<(), Error> {
    let cluster = start!("the_minikube_overlay_is_accepted", &[]);
    let yaml = cluster.kustomize("k8s/overlays/minikube").await?;
    let out = cluster.apply(&yaml).await?;
    assert!(accepted(&yaml, &out) > 20, "{}", out.stdout);
    Ok(())
}

/// istio/ after k8s/, as its kustomization.yaml says, in a cluster where Istio's own
/// install made istio-system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istio_resources_are_accepted() -> Result<(), Error> {
    let cluster = start!("the_istio_resources_are_accepted", &[]);
    cluster.create_namespaces(&["istio-system"]).await?;
    let k8s = cluster.kustomize("k8s/overlays/kind").await?;
    cluster.apply(&k8s).await?;
    let istio = cluster.kustomize("istio").await?;
    let out = cluster.apply(&istio).await?;
    assert!(accepted(&istio, &out) > 10, "{}", out.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_with_its_defaults_is_accepted() -> Result<(), Error> {
    let cluster = start!("the_chart_with_its_defaults_is_accepted", &["helm"]);
    cluster
        .create_namespaces(&["meshmart", "istio-system"])
        .await?;
    let yaml = helm_template(&cluster, None).await?;
    let out = cluster.apply(&yaml).await?;
    assert!(accepted(&yaml, &out) > 30, "{}", out.stdout);
    Ok(())
}

/// Each values file helm/meshmart/ci/ has (chart-testing's convention), each in a cluster of
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_with_each_ci_values_file_is_accepted() -> Result<(), Error> {
    let files = ci_values_files()?;
    for file in files {
        let cluster = start!("the_chart_with_each_ci_values_file_is_accepted", &["helm"]);
        let values = format!("helm/meshmart/ci/{file}");
        let yaml = helm_template(&cluster, Some(&values)).await?;
        // The release's, and the gateway's wherever the values put it.
        let mut names = namespaces_in(&yaml);
        names.push("meshmart".to_owned());
        cluster.create_namespaces(&names).await?;
        let out = cluster.apply(&yaml).await?;
        let n = accepted(&yaml, &out);
        eprintln!("{values}: {n} objects accepted");
    }
    Ok(())
}

/// The controller manager runs: a deleted namespace goes away with what was in it
/// (the namespace controller empties it, and its finalizer is then removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_goes_away() -> Result<(), Error> {
    let cluster = start!("a_deleted_namespace_goes_away", &[]);
    cluster
        .apply(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: doomed\n",
        )
        .await?;
    cluster
        .kubectl(
            &[
                "delete",
                "namespace",
                "doomed",
                "--wait=true",
                "--timeout=90s",
            ],
            None,
        )
        .await?;
    let out = cluster
        .kubectl(&["get", "namespace", "doomed", "--ignore-not-found"], None)
        .await?;
    assert!(out.stdout.trim().is_empty(), "{}", out.stdout);
    Ok(())
}
