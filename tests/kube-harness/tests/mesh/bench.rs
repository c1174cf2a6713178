//! The mesh's cost, measured (`scripts/bench-mesh.sh`, not a test: timings belong in a
//! report): the same calls to the same processes with and without the proxies on their
//! path, paced below the gateway's rate limit, with the CPU the proxies and the services
//! spent per call (from /proc, per process group: pilot-agent and its Envoy are one) and
//! the proxies' memory. Writes the report's section as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use kube_harness::mesh::Shop;
use meshmart::proto::catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient};
use meshmart::proto::inventory::{
    GetStockRequest, inventory_service_client::InventoryServiceClient,
};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::edge::PRODUCT;
use super::support::{authorized, edge, fail, inside, through_sidecar, token};

/// Calls per run, at [`RATE`] a second: 20 s each.
const CALLS: usize = 800;
/// Below the gateway's rate limit (50 a second, bucket 100), so every call is answered.
const RATE: u32 = 40;
/// Calls before each run, not measured (connections, caches).
const WARM_UP: usize = 50;
/// The kernel's clock ticks per second (`getconf CLK_TCK`), for /proc's CPU times.
const TICKS_PER_SECOND: f64 = 100.0;
/// How long the idle CPU of every process group is measured, to take it off each run's.
const IDLE: Duration = Duration::from_secs(10);

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    name: &'static str,
    path: &'static str,
    latencies: Vec<Duration>,
    errors: usize,
    /// CPU per call, µs, of the proxies and of the services (idle CPU taken off).
    proxy_cpu_us: f64,
    service_cpu_us: f64,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return 0.0;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a list of at most a few thousand"
        )]
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1000.0
    }
}

/// CPU seconds used so far by each process group (utime + stime of every process in it).
fn group_cpu() -> BTreeMap<u32, f64> {
    let mut cpu = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, ..., utime (14th
        // field of the line), stime (15th).
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(pgrp), Some(utime), Some(stime)) = (
            fields.get(2).and_then(|f| f.parse::<u32>().ok()),
            fields.get(11).and_then(|f| f.parse::<f64>().ok()),
            fields.get(12).and_then(|f| f.parse::<f64>().ok()),
        ) else {
            continue;
        };
        *cpu.entry(pgrp).or_default() += (utime + stime) / TICKS_PER_SECOND;
    }
    cpu
}

/// The mesh's process groups split into proxies and programs (istiod aside).
fn groups(shop: &Shop) -> (Vec<u32>, Vec<u32>) {
    let mut proxies = Vec::new();
    let mut programs = Vec::new();
    for (name, pgid) in shop.process_groups() {
        if name == "istiod" {
            continue;
        }
        if name.starts_with("sidecar-") || name.starts_with("gateway-") {
            proxies.push(pgid);
        } else {
            programs.push(pgid);
        }
    }
    (proxies, programs)
}

fn total(cpu: &BTreeMap<u32, f64>, groups: &[u32]) -> f64 {
    groups.iter().filter_map(|g| cpu.get(g)).sum()
}

/// How the runs call: the gateway from the host, or a channel opened inside a namespace.
#[derive(Debug, Clone, Copy)]
enum Via {
    Gateway,
    /// Inside the workload's namespace, through its sidecar's outbound listener.
    Sidecar(&'static str),
    /// Inside the workload's namespace, straight to `127.0.0.1:<port>` (no proxy).
    Loopback(&'static str, u16),
}

/// `n` calls at [`RATE`] a second, each answered before the next is due or sent as soon as
/// it is answered: their latencies and how many failed.
async fn paced(
    channel: Channel,
    n: usize,
    call: CallKind,
    token: Option<String>,
) -> (Vec<Duration>, usize) {
    let interval = Duration::from_secs(1) / RATE;
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    let mut catalog = CatalogServiceClient::new(channel.clone());
    let mut inventory = InventoryServiceClient::new(channel);
    for i in 0..n {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let sent = Instant::now();
        let ok = match call {
            CallKind::GetProduct => catalog
                .get_product(authorized(
                    GetProductRequest {
                        name: PRODUCT.to_owned(),
                    },
                    token.as_deref(),
                ))
                .await
                .is_ok(),
            CallKind::GetStock => inventory
                .get_stock(authorized(
                    GetStockRequest {
                        product_id: "burr-grinder".to_owned(),
                    },
                    None,
                ))
                .await
                .is_ok(),
        };
        latencies.push(sent.elapsed());
        if !ok {
            errors += 1;
        }
    }
    (latencies, errors)
}

#[derive(Debug, Clone, Copy)]
enum CallKind {
    GetProduct,
    GetStock,
}

/// One run: a warm-up, then [`CALLS`] measured, with the CPU of every group around it.
async fn run(
    shop: &Shop,
    name: &'static str,
    path: &'static str,
    via: Via,
    call: CallKind,
    idle_rate: &BTreeMap<u32, f64>,
) -> Result<Run, String> {
    let (service, port) = match call {
        CallKind::GetProduct => ("catalog", 50051),
        CallKind::GetStock => ("inventory", 50052),
    };
    let (proxies, programs) = groups(shop);
    let before = group_cpu();
    let started = Instant::now();
    let (latencies, errors) = match via {
        Via::Gateway => {
            let channel = edge(shop).await?;
            let token = Some(token(&[])?);
            paced(channel.clone(), WARM_UP, call, token.clone()).await;
            paced(channel, CALLS, call, token).await
        }
        Via::Sidecar(workload) | Via::Loopback(workload, _) => {
            inside(shop, workload, move || async move {
                let channel = match via {
                    Via::Loopback(_, port) => {
                        Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                            .map_err(fail("address"))?
                            .connect()
                            .await
                            .map_err(fail("connect to the program"))?
                    }
                    _ => through_sidecar(service, port).await?,
                };
                paced(channel.clone(), WARM_UP, call, None).await;
                Ok(paced(channel, CALLS, call, None).await)
            })
            .await?
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let after = group_cpu();
    let used = |groups: &[u32]| -> f64 {
        let idle: f64 = groups.iter().filter_map(|g| idle_rate.get(g)).sum();
        (total(&after, groups) - total(&before, groups) - idle * elapsed).max(0.0)
    };
    #[allow(clippy::cast_precision_loss, reason = "a count of calls")]
    let calls = (CALLS + WARM_UP) as f64;
    Ok(Run {
        name,
        path,
        latencies,
        errors,
        proxy_cpu_us: used(&proxies) * 1e6 / calls,
        service_cpu_us: used(&programs) * 1e6 / calls,
    })
}

/// The resident memory (VmRSS, MiB) of each Envoy in the mesh.
fn envoy_rss_mib() -> Vec<f64> {
    let mut rss = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return rss;
    };
    for entry in entries.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "envoy" {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        {
            rss.push(kib / 1024.0);
        }
    }
    rss
}

/// The chart's Telemetry changed for the runs: no trace sampling and no access log, so that
/// the runs measure the proxies' own work and not the exporting of spans and log lines.
const QUIET_TELEMETRY: &str = r#"{"spec":{"tracing":[{"randomSamplingPercentage":0,"providers":[{"name":"otel"}]}],"accessLogging":[{"disabled":true}]}}"#;

/// The baseline's catalog and inventory: copies of the mesh's, with their environment, in
/// catalog-v1's namespace on these ports, catalog calling inventory straight (their
/// queries still go to PostgreSQL through catalog-v1's sidecar, as every run's do).
const DIRECT_CATALOG_PORT: u16 = 50061;
const DIRECT_INVENTORY_PORT: u16 = 50062;

/// The runs, in the order [`section`] reads them: a name, the call's path, how it is
/// called, and what.
const RUNS: &[(&str, &str, Via, CallKind)] = &[
    (
        "GetProduct through the gateway",
        "client → gateway → catalog's sidecar → catalog → its sidecar → inventory's sidecar → inventory",
        Via::Gateway,
        CallKind::GetProduct,
    ),
    (
        "GetProduct straight to catalog",
        "client → catalog → its sidecar → inventory's sidecar → inventory",
        Via::Loopback("catalog-v1", 50051),
        CallKind::GetProduct,
    ),
    (
        "GetProduct with no proxy",
        "client → catalog → inventory (copies of both, in one namespace)",
        Via::Loopback("catalog-v1", DIRECT_CATALOG_PORT),
        CallKind::GetProduct,
    ),
    (
        "GetStock through two sidecars",
        "client → its sidecar → inventory's sidecar → inventory",
        Via::Sidecar("client-orders"),
        CallKind::GetStock,
    ),
    (
        "GetStock straight to inventory",
        "client → inventory",
        Via::Loopback("inventory-v1", 50052),
        CallKind::GetStock,
    ),
];

/// Measures, and returns the report's section.
pub(crate) async fn measure(shop: &mut Shop) -> Result<String, String> {
    shop.start_copy(
        "inventory-v1",
        "catalog-v1",
        "direct-inventory",
        DIRECT_INVENTORY_PORT,
        &[("METRICS_ADDR", "127.0.0.1:9162".to_owned())],
    )
    .await
    .map_err(|e| e.to_string())?;
    shop.start_copy(
        "catalog-v1",
        "catalog-v1",
        "direct-catalog",
        DIRECT_CATALOG_PORT,
        &[
            ("METRICS_ADDR", "127.0.0.1:9161".to_owned()),
            (
                "INVENTORY_ADDR",
                format!("http://127.0.0.1:{DIRECT_INVENTORY_PORT}"),
            ),
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    let shop: &Shop = shop;
    shop.cluster()
        .kubectl(
            &[
                "patch",
                "telemetry",
                "meshmart",
                "--namespace=meshmart",
                "--type=merge",
                "--patch",
                QUIET_TELEMETRY,
            ],
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    // istiod pushes the change within seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Idle first: each group's CPU a second while nothing calls.
    let before = group_cpu();
    tokio::time::sleep(IDLE).await;
    let after = group_cpu();
    let idle_rate: BTreeMap<u32, f64> = after
        .iter()
        .map(|(g, t)| {
            (
                *g,
                (t - before.get(g).copied().unwrap_or(0.0)) / IDLE.as_secs_f64(),
            )
        })
        .collect();

    let mut runs = Vec::new();
    for (name, path, via, call) in RUNS {
        runs.push(run(shop, name, path, *via, *call, &idle_rate).await?);
    }
    Ok(section(&runs, &envoy_rss_mib()))
}

fn section(runs: &[Run], rss: &[f64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## The mesh's cost\n\n\
         Measured by `scripts/bench-mesh.sh` (as root) in the mesh of docs/deploy.md section 11: \
         the chart in a real istiod, upstream Envoy 1.40 as every proxy, the services' test \
         builds (unoptimised: their own CPU is not the release build's), the chart's Telemetry \
         patched for the runs to sample no traces and write no access log (so the runs \
         measure the proxies' own work, not the export of spans and log lines), and \
         PostgreSQL behind its sidecar: in every run the services' queries go \
         through their own sidecar and PostgreSQL's, so the runs without proxies on the \
         call's path still have proxies' CPU. Each run is {WARM_UP} calls of warm-up and {CALLS} measured, paced at \
         {RATE} a second (below the gateway's rate limit), one at a time; CPU is every \
         process group's user and system time from /proc during the run, less what each \
         used while idle, divided by the calls.\n"
    );
    let _ = writeln!(
        out,
        "| run | path | calls | errors | p50 ms | p90 ms | p99 ms | proxies' CPU µs/call | services' CPU µs/call |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} |",
            r.name,
            r.path,
            r.latencies.len(),
            r.errors,
            r.percentile(0.5),
            r.percentile(0.9),
            r.percentile(0.99),
            r.proxy_cpu_us,
            r.service_cpu_us
        );
    }
    let delta = |a: &Run, b: &Run, p: f64| a.percentile(p) - b.percentile(p);
    if let [gateway, catalog, none, two, direct] = runs {
        let per_sidecar_us = (two.proxy_cpu_us - direct.proxy_cpu_us) / 2.0;
        let mean_rss = if rss.is_empty() {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss, reason = "a count of proxies")]
            let n = rss.len() as f64;
            rss.iter().sum::<f64>() / n
        };
        let row = |what: &str, a: &Run, b: &Run| {
            format!(
                "| {what} | {:+.3} | {:+.3} | {:+.3} | {:.0} |\n",
                delta(a, b, 0.5),
                delta(a, b, 0.9),
                delta(a, b, 0.99),
                a.proxy_cpu_us - b.proxy_cpu_us
            )
        };
        let _ = writeln!(
            out,
            "\n| what the proxies add | p50 ms | p90 ms | p99 ms | proxies' CPU µs/call |\n\
             |---|---:|---:|---:|---:|\n{}{}{}",
            row(
                "GetProduct through the gateway, against the same call with no proxy",
                gateway,
                none
            ),
            row(
                "the gateway and catalog's inbound sidecar (GetProduct)",
                gateway,
                catalog
            ),
            row("two sidecars on one hop (GetStock)", two, direct),
        );
        let _ = writeln!(
            out,
            "Beside Istio's published figures (its performance and scalability page: about 0.20 \
             vCPU and 60 MB per sidecar per 1000 requests a second, and about +0.23 ms at p90 \
             for two sidecars): here one sidecar costs {per_sidecar_us:.0} µs of CPU per call, \
             {:.2} vCPU per 1000 calls a second; two sidecars add {:+.3} ms at p90; the {} \
             Envoys of the mesh hold {mean_rss:.0} MiB resident each on average, idle but for \
             these runs. At {RATE} calls a second a proxy's fixed work per call (timers, \
             stats) weighs more than at Istio's 1000, so the CPU here is an upper bound for a \
             loaded proxy.",
            per_sidecar_us / 1000.0,
            delta(two, direct, 0.9),
            rss.len()
        );
    }
    out
}
