//! `istioctl analyze` against a real API server holding what a user applies: k8s/ then
//! istio/ (the committed rendering), and the chart with each ci values file. It must report
//! no error and no warning, except what tests/kube-harness/analyze-allowed.txt lists (each
//! with the reason it cannot hold in a cluster without running pods or an Istio install),
//! and every entry there must still be needed.

use std::collections::BTreeSet;

use kube_harness::{Cluster, Error, ci_values_files, namespaces_in, repo_root, run, run_any};

/// `(code, origin)` pairs the allow-list accepts.
fn allowed() -> Result<BTreeSet<(String, String)>, Error> {
    let path = repo_root().join("tests/kube-harness/analyze-allowed.txt");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        what: format!("read {}", path.display()),
        source,
    })?;
    let mut set = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (entry, reason) = line.split_once(" -- ").unwrap_or((line, ""));
        assert!(
            !reason.trim().is_empty(),
            "{}: `{line}` has no reason (CODE ORIGIN -- reason)",
            path.display()
        );
        let (code, origin) = entry.trim().split_once(' ').unwrap_or((entry, ""));
        set.insert((code.to_owned(), origin.trim().to_owned()));
    }
    Ok(set)
}

/// The warnings and errors `istioctl analyze --all-namespaces` reports, as
/// `(code, origin, message)`.
async fn analyze(cluster: &Cluster) -> Result<Vec<(String, String, String)>, Error> {
    let kubeconfig = format!("--kubeconfig={}", cluster.kubeconfig().display());
    let (shown, status, out) = run_any(
        &cluster.tool("istioctl"),
        [
            "analyze",
            kubeconfig.as_str(),
            "--all-namespaces",
            "--output=json",
            "--output-threshold=Warning",
            "--failure-threshold=Error",
        ],
        None,
    )
    .await?;
    // 0: nothing at the failure threshold; 79: analyzers found an error. Anything else is
    // istioctl failing to run.
    assert!(
        matches!(status.code(), Some(0 | 79)),
        "{shown}: {status}\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let json = out.stdout.trim();
    if json.is_empty() {
        return Ok(Vec::new());
    }
    let messages: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::Failed(format!("{shown}: not JSON ({e}):\n{json}")))?;
    let field = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_owned();
    Ok(messages
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        field(m, "code"),
                        field(m, "origin"),
                        format!("{}: {}", field(m, "level"), field(m, "message")),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Whether an allow-list origin matches: exactly, or by prefix when it ends with `*`.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    pattern
        .strip_suffix('*')
        .map_or(pattern == origin, |prefix| origin.starts_with(prefix))
}

/// The messages the allow-list does not cover; `used` collects the entries that matched.
fn judge(
    messages: &[(String, String, String)],
    allowed: &BTreeSet<(String, String)>,
    used: &mut BTreeSet<(String, String)>,
) -> Vec<String> {
    messages
        .iter()
        .filter_map(|(code, origin, message)| {
            let entry = allowed
                .iter()
                .find(|(c, pattern)| c == code && origin_matches(pattern, origin));
            if let Some(entry) = entry {
                used.insert(entry.clone());
                None
            } else {
                Some(format!("{code} {origin} -- {message}"))
            }
        })
        .collect()
}

/// The committed files (k8s/overlays/kind, then istio/), then the chart with each ci values
/// file (the gateway elsewhere, one service only), each in a cluster of its own. One test, so
/// that every allow-list entry must be needed by at least one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istioctl_analyze_finds_nothing_but_the_allow_list() -> Result<(), Error> {
    let allowed = allowed()?;
    let mut used = BTreeSet::new();
    let Some(cluster) = start().await? else {
        return Ok(());
    };
    cluster.create_namespaces(&["istio-system"]).await?;
    cluster
        .apply(&cluster.kustomize("k8s/overlays/kind").await?)
        .await?;
    cluster.apply(&cluster.kustomize("istio").await?).await?;
    let left = judge(&analyze(&cluster).await?, &allowed, &mut used);
    assert!(
        left.is_empty(),
        "istioctl analyze (k8s/overlays/kind + istio/):\n{}",
        left.join("\n")
    );
    drop(cluster);

    let dir = repo_root().join("helm/meshmart/ci");
    for file in ci_values_files()? {
        let Some(cluster) = start().await? else {
            return Ok(());
        };
        let chart = repo_root().join("helm/meshmart");
        let values = dir.join(&file);
        let yaml = run(
            &cluster.tool("helm"),
            [
                "template".to_owned(),
                "meshmart".to_owned(),
                chart.to_string_lossy().into_owned(),
                "--namespace=meshmart".to_owned(),
                "--skip-tests".to_owned(),
                format!("--values={}", values.display()),
            ],
            None,
        )
        .await?
        .stdout;
        let mut namespaces = namespaces_in(&yaml);
        namespaces.push("meshmart".to_owned());
        cluster.create_namespaces(&namespaces).await?;
        cluster.apply(&yaml).await?;
        let left = judge(&analyze(&cluster).await?, &allowed, &mut used);
        assert!(
            left.is_empty(),
            "istioctl analyze (chart with ci/{file}):\n{}",
            left.join("\n")
        );
    }
    let unused: Vec<_> = allowed.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "analyze-allowed.txt entries nothing matched (remove them): {unused:?}"
    );
    Ok(())
}

async fn start() -> Result<Option<Cluster>, Error> {
    Cluster::start(
        "istioctl_analyze_finds_nothing_but_the_allow_list",
        &["istioctl", "helm"],
    )
    .await
}
