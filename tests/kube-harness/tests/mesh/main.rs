//! The mesh carrying real calls (docs/deploy.md, section 11): the chart installed into the
//! harness's API server, translated by a real istiod, enforced by real Envoy proxies in
//! front of the real services, PostgreSQL and NATS JetStream, each workload in a network
//! namespace of its own (kube_harness::mesh::Shop). Each test below asserts what a user of
//! the shop would see, through the ingress gateway or from a workload inside the mesh.
//!
//! One mesh per machine (a fixed address range and istiod's port), so this is one test
//! binary with its own harness (libtest-mimic): the shop starts once, the tests run one at
//! a time against it, and it stops after the last. Without root, the mesh's tools or the
//! services' binaries, every test is reported ignored after a loud warning; with
//! MESHMART_REQUIRE_MESH set they fail instead.

mod bench;
mod canary;
mod edge;
mod resilience;
mod security;
mod support;
mod trace;

use std::process::ExitCode;
use std::sync::Arc;

use kube_harness::mesh::Shop;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // One at a time: the rate limit, the canary's weights and the fault files are the
    // mesh's, shared by every test.
    args.test_threads = Some(1);
    let names: Vec<(&str, support::Test)> = [
        edge::TESTS,
        canary::TESTS,
        security::TESTS,
        resilience::TESTS,
        trace::TESTS,
    ]
    .concat();
    let selected = names.iter().any(|(name, _)| would_run(&args, name));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mesh: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if kube_harness::set("MESHMART_MESH_UP") {
        return runtime.block_on(mesh_up());
    }
    if let Some(out) = std::env::var_os("MESHMART_MESH_BENCH").filter(|o| !o.is_empty()) {
        return runtime.block_on(mesh_bench(std::path::PathBuf::from(out)));
    }
    let shop = if args.list || !selected {
        Ok(None)
    } else {
        runtime.block_on(Shop::start("mesh"))
    };
    let shop = match shop {
        Ok(shop) => Ok(shop.map(Arc::new)),
        Err(e) => Err(e.to_string()),
    };
    let handle = runtime.handle().clone();
    let trials = names
        .iter()
        .map(|(name, test)| {
            let (shop, handle, test) = (shop.clone(), handle.clone(), *test);
            let ignored = matches!(shop, Ok(None));
            Trial::test(*name, move || match shop {
                Err(e) => Err(Failed::from(format!("the mesh did not start: {e}"))),
                Ok(None) => Ok(()),
                Ok(Some(shop)) => handle.block_on(test(shop)).map_err(Failed::from),
            })
            .with_ignored_flag(ignored && !args.list)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // The shop's processes, namespaces and cluster go now, inside the runtime.
    runtime.block_on(async { drop(shop) });
    conclusion.exit_code()
}

/// Whether the arguments' filters select the test `name` (libtest-mimic applies them
/// again itself; this only spares starting the mesh when none is selected).
fn would_run(args: &Arguments, name: &str) -> bool {
    let matches = |filter: &str| {
        if args.exact {
            name == filter
        } else {
            name.contains(filter)
        }
    };
    args.filter.as_deref().is_none_or(matches) && !args.skip.iter().any(|s| matches(s))
}

/// `make mesh-up`: the same shop, kept up for people to explore until Ctrl-C (at most
/// [`UP_HOURS`] hours), with how to call it printed.
#[allow(
    clippy::print_stdout,
    reason = "how to call the shop is this command's output"
)]
async fn mesh_up() -> ExitCode {
    const UP_HOURS: u64 = 8;
    let shop = match Shop::start("make mesh-up").await {
        Ok(Some(shop)) => shop,
        Ok(None) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mesh-up: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = shop.gateway().trim_start_matches("http://");
    let names: Vec<String> = shop
        .workloads()
        .iter()
        .map(|w| {
            format!(
                "  {:<18} {:<12} ip netns exec {}",
                w.name, w.netns.ip, w.netns.name
            )
        })
        .collect();
    println!(
        "\nThe shop is up in the mesh. Through the ingress gateway, with a token from the demo issuer:\n\n  \
         TOKEN=$(python3 scripts/mint-jwt.py)\n  \
         .tools/bin/grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {gateway} list\n  \
         .tools/bin/grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"name\":\"products/burr-grinder\"}}' \\\n      \
         {gateway} meshmart.catalog.v1.CatalogService/GetProduct\n  \
         curl -H \"authorization: Bearer $TOKEN\" http://{gateway}/v1/products/burr-grinder\n\n\
         The workloads (each a network namespace; its Envoy's admin is 127.0.0.1:15000 inside):\n{}\n\n\
         kubectl: .tools/bin/kubectl --kubeconfig {}\n\
         Files and logs: {}\n\nCtrl-C stops it all.",
        names.join("\n"),
        shop.cluster().kubeconfig().display(),
        shop.root().parent().map_or(shop.root(), |p| p).display(),
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("mesh-up: stopping"),
        () = tokio::time::sleep(std::time::Duration::from_secs(UP_HOURS * 3600)) => {
            eprintln!("mesh-up: {UP_HOURS} hours are up; stopping");
        }
    }
    drop(shop);
    ExitCode::SUCCESS
}

/// `scripts/bench-mesh.sh`: the same shop, measured (tests/mesh/bench.rs); the report's
/// section goes to `out`.
async fn mesh_bench(out: std::path::PathBuf) -> ExitCode {
    let mut shop = match Shop::start("scripts/bench-mesh.sh").await {
        Ok(Some(shop)) => shop,
        Ok(None) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-mesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let measured = bench::measure(&mut shop).await;
    drop(shop);
    match measured.map(|section| std::fs::write(&out, section)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("bench-mesh: write {}: {e}", out.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench-mesh: {e}");
            ExitCode::FAILURE
        }
    }
}
