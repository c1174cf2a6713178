//! The canary: the chart's weighted split of catalog between v1 and v2 (its default, 10% to
//! v2), the header pin, and `meshctl canary set` moving the split while calls flow.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube_harness::mesh::{Shop, service_bin_dir};
use meshmart::proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use tonic::Request;

use super::edge::PRODUCT;
use super::support::{
    Test, TestFuture, authorized, edge, ensure, fail, inside, through_sidecar, token,
};

pub(crate) const TESTS: &[(&str, Test)] =
    &[("canary_split_header_pin_and_meshctl_canary_set", canary)];

/// The header that pins a call to a version (the chart's canaryHeader), and the one each
/// service answers with its version.
const PIN: &str = "x-meshmart-canary";
const VERSION: &str = "x-meshmart-version";
/// How far a share may be from its weight: 4.5 standard deviations of the binomial count,
/// so a correct split fails about once in 150,000 runs.
const SIGMAS: f64 = 4.5;

/// Answers by version (`x-meshmart-version`) of `n` GetProduct calls.
type Versions = BTreeMap<String, usize>;

fn version_of<T>(reply: &tonic::Response<T>) -> String {
    reply
        .metadata()
        .get(VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

/// GetProduct of the demo product, with `token` (at the edge) and pinned to v2 or not.
fn get_product(token: Option<&str>, pinned: bool) -> Request<GetProductRequest> {
    let mut request = authorized(
        GetProductRequest {
            name: PRODUCT.to_owned(),
        },
        token,
    );
    if pinned {
        request
            .metadata_mut()
            .insert(PIN, tonic::metadata::MetadataValue::from_static("v2"));
    }
    request
}

/// `n` calls from the client with orders' identity, through its sidecar, to catalog.
async fn in_mesh(shop: &Shop, n: usize, pinned: bool) -> Result<Versions, String> {
    inside(shop, "client-orders", move || async move {
        let mut catalog = CatalogServiceClient::new(through_sidecar("catalog", 50051).await?);
        let mut versions = Versions::new();
        for _ in 0..n {
            let reply = catalog
                .get_product(get_product(None, pinned))
                .await
                .map_err(fail("GetProduct through the sidecar"))?;
            *versions.entry(version_of(&reply)).or_default() += 1;
        }
        Ok(versions)
    })
    .await
}

/// `n` calls through the gateway with `token`, paced below the gateway's rate limit (50 a
/// second), the pin header on when `pinned`.
async fn at_edge(shop: &Shop, n: usize, token: &str, pinned: bool) -> Result<Versions, String> {
    let mut catalog = CatalogServiceClient::new(edge(shop).await?);
    let mut versions = Versions::new();
    for _ in 0..n {
        let reply = catalog
            .get_product(get_product(Some(token), pinned))
            .await
            .map_err(fail("GetProduct through the gateway"))?;
        *versions.entry(version_of(&reply)).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(versions)
}

/// Whether v2's share of `versions` is within [`SIGMAS`] of `weight` percent, and nothing
/// but v1 and v2 answered.
fn split_is(versions: &Versions, weight: f64) -> bool {
    let n: usize = versions.values().sum();
    let v2 = versions.get("v2").copied().unwrap_or(0);
    let v1 = versions.get("v1").copied().unwrap_or(0);
    v1 + v2 == n && within(v2, n, weight)
}

/// Whether `count` of `n` is within [`SIGMAS`] standard deviations of `percent` percent of
/// `n` (a binomial count).
pub(crate) fn within(count: usize, n: usize, percent: f64) -> bool {
    #[allow(clippy::cast_precision_loss)]
    let (n, count) = (n as f64, count as f64);
    let p = percent / 100.0;
    (count - n * p).abs() <= SIGMAS * (n * p * (1.0 - p)).sqrt()
}

/// `meshctl canary --kubeconfig <the harness's> args...`, as a user runs it.
async fn meshctl_canary(shop: &Shop, args: &[&str]) -> Result<String, String> {
    let meshctl = service_bin_dir().join("meshctl");
    let kubeconfig = shop.cluster().kubeconfig().display().to_string();
    let out = tokio::process::Command::new(&meshctl)
        .arg("canary")
        .args(["--kubeconfig", &kubeconfig])
        .args(args)
        .output()
        .await
        .map_err(fail("run meshctl canary"))?;
    if !out.status.success() {
        return Err(format!(
            "meshctl canary {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Calls in the mesh until v2's share is `weight` (istiod pushes a change within seconds),
/// at most ten rounds of `n`; the last round.
async fn settle_at(shop: &Shop, n: usize, weight: f64) -> Result<Versions, String> {
    let mut last = Versions::new();
    for _ in 0..10 {
        last = in_mesh(shop, n, false).await?;
        if split_is(&last, weight) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "the split did not come to {weight}% to v2 within ten rounds of {n} calls (last: {last:?})"
    ))
}

fn canary(shop: Arc<Shop>) -> TestFuture {
    Box::pin(async move {
        // 1. The chart's weights, between sidecars and through the gateway.
        let mesh = in_mesh(&shop, 400, false).await?;
        ensure(split_is(&mesh, 10.0), || {
            format!("400 calls in the mesh with 10% to v2 answered {mesh:?}")
        })?;
        let plain = token(&[])?;
        let gateway = at_edge(&shop, 200, &plain, false).await?;
        ensure(split_is(&gateway, 10.0), || {
            format!("200 calls through the gateway with 10% to v2 answered {gateway:?}")
        })?;

        // 2. The pin: always v2 in the mesh; at the edge only with the canary claim (the
        // gateway drops the header from every other call).
        let pinned = in_mesh(&shop, 50, true).await?;
        ensure(pinned.get("v2") == Some(&50), || {
            format!("50 pinned calls in the mesh answered {pinned:?}")
        })?;
        let canary_token = token(&["--canary"])?;
        let pinned = at_edge(&shop, 30, &canary_token, true).await?;
        ensure(pinned.get("v2") == Some(&30), || {
            format!("30 pinned calls through the gateway with the canary claim answered {pinned:?}")
        })?;
        let unclaimed = at_edge(&shop, 40, &plain, true).await?;
        ensure(unclaimed.get("v1").is_some_and(|n| *n > 0), || {
            format!("40 calls pinning v2 without the canary claim all went to v2: {unclaimed:?}")
        })?;

        // 3. `meshctl canary set` while calls flow: none fails, and the split moves.
        let flow = {
            let shop = Arc::clone(&shop);
            tokio::spawn(async move { in_mesh(&shop, 1500, false).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        meshctl_canary(&shop, &["set", "catalog", "50"]).await?;
        let during = flow.await.map_err(fail("the calls during the change"))??;
        ensure(during.values().sum::<usize>() == 1500, || {
            format!("calls during `meshctl canary set`: {during:?}")
        })?;
        let moved = settle_at(&shop, 400, 50.0).await;
        // Back to the chart's weights for the tests after this one, whatever happened.
        let restored = meshctl_canary(&shop, &["set", "catalog", "10"]).await;
        moved?;
        restored?;
        settle_at(&shop, 400, 10.0).await.map(drop)
    })
}
