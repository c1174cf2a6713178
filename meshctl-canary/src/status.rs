//! `status`: each canary's weights per route and each version's replicas.

use std::io::Write;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};

use crate::cli::Format;
use crate::delegate::{self, Delegate, Share};
use crate::error::Error;

/// One version of a service with a canary.
#[derive(Debug)]
pub struct Version {
    /// `stable` or `canary`.
    pub role: &'static str,
    pub share: Share,
    /// How many Deployments are labelled app=<service>,version=<version> (normally 1).
    pub deployments: usize,
    pub ready: i32,
    pub desired: i32,
}

/// How a route decides its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The route delegates to `<service>-weights`: the delegate's weights.
    Delegate,
    /// The route's own destinations (the routes pinned to the canary).
    Route,
}

/// One VirtualService route that sends the service calls.
#[derive(Debug)]
pub struct Route {
    pub virtual_service: String,
    pub route: String,
    pub via: Via,
    /// Percent per subset.
    pub weights: Vec<(String, u32)>,
}

/// What `status` shows of one service.
#[derive(Debug)]
pub struct ServiceStatus {
    pub delegate: Delegate,
    pub versions: Vec<Version>,
    pub routes: Vec<Route>,
}

/// The status of `service`, or of every service with a canary in `namespace`.
pub async fn collect(
    client: &kube::Client,
    namespace: &str,
    service: Option<&str>,
) -> Result<Vec<ServiceStatus>, Error> {
    let all = delegate::virtual_services(client, namespace)
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("list VirtualServices in {namespace}")))?
        .items;
    let services: Vec<String> = match service {
        Some(service) => {
            let name = delegate::delegate_name(service);
            if !all.iter().any(|vs| vs.name_any() == name) {
                return Err(Error::NoCanary {
                    service: service.to_owned(),
                    namespace: namespace.to_owned(),
                });
            }
            vec![service.to_owned()]
        }
        None => {
            let mut names: Vec<String> = all.iter().filter_map(delegate_service).collect();
            names.sort();
            names
        }
    };
    let mut statuses = Vec::with_capacity(services.len());
    for service in services {
        let name = delegate::delegate_name(&service);
        let Some(object) = all.iter().find(|vs| vs.name_any() == name) else {
            continue;
        };
        let delegate = Delegate::parse(&service, namespace, object)?;
        let mut versions = Vec::with_capacity(2);
        for (role, share) in [("stable", &delegate.stable), ("canary", &delegate.canary)] {
            versions.push(version(client, namespace, &service, role, share).await?);
        }
        let routes = routes(&all, &delegate);
        statuses.push(ServiceStatus {
            delegate,
            versions,
            routes,
        });
    }
    Ok(statuses)
}

/// The service a delegate holds the weights of: the chart labels it (app, and its
/// component canary-weights) and names it `<service>-weights`.
fn delegate_service(object: &DynamicObject) -> Option<String> {
    let labels = object.labels();
    if labels
        .get("app.kubernetes.io/component")
        .map(String::as_str)
        != Some("canary-weights")
    {
        return None;
    }
    let name = object.name_any();
    let from_name = name.strip_suffix("-weights").map(str::to_owned);
    labels.get("app").cloned().or(from_name)
}

async fn version(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    role: &'static str,
    share: &Share,
) -> Result<Version, Error> {
    let selector = format!("app={service},version={}", share.subset);
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(format!(
            "list Deployments {selector} in {namespace}"
        )))?
        .items;
    // A Deployment without spec.replicas runs 1 (the API server's default); one that no
    // pod is ready for yet has no status.readyReplicas.
    let desired = deployments
        .iter()
        .map(|d| d.spec.replicas.unwrap_or(1))
        .sum();
    let ready = deployments
        .iter()
        .map(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum();
    Ok(Version {
        role,
        share: share.clone(),
        deployments: deployments.len(),
        ready,
        desired,
    })
}

/// Every route of the namespace's VirtualServices that sends the delegate's service calls:
/// those that delegate to it, and those with a destination of the service's host.
fn routes(all: &[DynamicObject], delegate: &Delegate) -> Vec<Route> {
    let delegate_name = delegate::delegate_name(&delegate.service);
    let mut routes = Vec::new();
    for vs in all {
        let vs_name = vs.name_any();
        if vs_name == delegate_name {
            continue;
        }
        let vs_namespace = vs.namespace().unwrap_or_else(|| delegate.namespace.clone());
        let http = vs.data.pointer("/spec/http").and_then(Value::as_array);
        for (index, route) in http.into_iter().flatten().enumerate() {
            let route_name = route
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{index}"), str::to_owned);
            let delegates_here = route.get("delegate").is_some_and(|d| {
                d.get("name").and_then(Value::as_str) == Some(&delegate_name)
                    && d.get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(&vs_namespace)
                        == delegate.namespace
            });
            let (via, weights) = if delegates_here {
                let weights = [&delegate.stable, &delegate.canary]
                    .map(|s| (s.subset.clone(), s.weight))
                    .to_vec();
                (Via::Delegate, weights)
            } else {
                let weights = own_weights(route, &delegate.service, &delegate.namespace);
                if weights.is_empty() {
                    continue;
                }
                (Via::Route, weights)
            };
            routes.push(Route {
                virtual_service: vs_name.clone(),
                route: route_name,
                via,
                weights,
            });
        }
    }
    routes
}

/// The weights per subset of a route's destinations that are the service's host; an
/// absent weight is 100 for a lone destination and 0 beside others, as in Istio.
fn own_weights(route: &Value, service: &str, namespace: &str) -> Vec<(String, u32)> {
    let destinations: Vec<&Value> = route
        .get("route")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let lone = destinations.len() == 1;
    let mut weights: Vec<(String, u32)> = Vec::new();
    for destination in destinations {
        let host = destination
            .pointer("/destination/host")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_service_host(host, service, namespace) {
            continue;
        }
        let subset = destination
            .pointer("/destination/subset")
            .and_then(Value::as_str)
            .unwrap_or("(all)");
        let weight = destination
            .get("weight")
            .and_then(Value::as_u64)
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(if lone { 100 } else { 0 });
        match weights.iter_mut().find(|(s, _)| s == subset) {
            Some((_, sum)) => *sum += weight,
            None => weights.push((subset.to_owned(), weight)),
        }
    }
    weights
}

/// `catalog`, `catalog.meshmart` and `catalog.meshmart.svc.<cluster domain>` are the
/// service's host for a VirtualService in its namespace.
fn is_service_host(host: &str, service: &str, namespace: &str) -> bool {
    let qualified = format!("{service}.{namespace}");
    host == service
        || host == qualified
        || host
            .strip_prefix(&qualified)
            .is_some_and(|rest| rest.starts_with(".svc."))
}

/// Prints the statuses as a table or as JSON.
pub fn print(
    statuses: &[ServiceStatus],
    namespace: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&to_json(statuses, namespace))
                .map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
        }
        Format::Table => {
            if statuses.is_empty() {
                writeln!(
                    out,
                    "no service has a canary in namespace {namespace} \
                     (no VirtualService labelled {})",
                    delegate::COMPONENT_SELECTOR
                )?;
            }
            for (i, status) in statuses.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                write_table(status, out)?;
            }
        }
    }
    Ok(())
}

fn write_table(status: &ServiceStatus, out: &mut dyn Write) -> Result<(), Error> {
    let delegate = &status.delegate;
    let owner = match delegate.owner.as_deref() {
        Some(owner) => format!("weights set by {owner}"),
        None => "weights from the chart's canary.weight".to_owned(),
    };
    writeln!(
        out,
        "{} (VirtualService {}/{}; {owner})",
        delegate.service,
        delegate.namespace,
        delegate::delegate_name(&delegate.service)
    )?;
    let mut versions = vec![row(["VERSION", "ROLE", "WEIGHT", "READY"])];
    for v in &status.versions {
        let ready = if v.deployments == 0 {
            "no Deployment".to_owned()
        } else {
            format!("{}/{}", v.ready, v.desired)
        };
        versions.push(row([
            v.share.subset.as_str(),
            v.role,
            &format!("{}%", v.share.weight),
            &ready,
        ]));
    }
    write_rows(&versions, out)?;
    let mut routes = vec![row(["VIRTUALSERVICE", "ROUTE", "VIA", "WEIGHTS"])];
    for r in &status.routes {
        let via = match r.via {
            Via::Delegate => "delegate",
            Via::Route => "route",
        };
        let weights: Vec<String> = r.weights.iter().map(|(s, w)| format!("{s} {w}%")).collect();
        routes.push(row([
            r.virtual_service.as_str(),
            &r.route,
            via,
            &weights.join(", "),
        ]));
    }
    if status.routes.is_empty() {
        writeln!(out, "  no VirtualService route sends it calls")?;
    } else {
        write_rows(&routes, out)?;
    }
    Ok(())
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Rows indented by two, each column as wide as its widest cell.
fn write_rows(rows: &[Vec<String>], out: &mut dyn Write) -> Result<(), Error> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(c).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn to_json(statuses: &[ServiceStatus], namespace: &str) -> Value {
    let services: Vec<Value> = statuses
        .iter()
        .map(|status| {
            let d = &status.delegate;
            let versions: Vec<Value> = status
                .versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.share.subset,
                        "role": v.role,
                        "weight": v.share.weight,
                        "deployments": v.deployments,
                        "readyReplicas": v.ready,
                        "replicas": v.desired,
                    })
                })
                .collect();
            let routes: Vec<Value> = status
                .routes
                .iter()
                .map(|r| {
                    let weights: serde_json::Map<String, Value> = r
                        .weights
                        .iter()
                        .map(|(s, w)| (s.clone(), json!(w)))
                        .collect();
                    json!({
                        "virtualService": r.virtual_service,
                        "route": r.route,
                        "via": match r.via { Via::Delegate => "delegate", Via::Route => "route" },
                        "weights": weights,
                    })
                })
                .collect();
            json!({
                "service": d.service,
                "delegate": delegate::delegate_name(&d.service),
                "weightsOwner": d.owner,
                "versions": versions,
                "routes": routes,
            })
        })
        .collect();
    json!({ "namespace": namespace, "services": services })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_host_is_short_or_qualified() {
        for host in [
            "catalog",
            "catalog.meshmart",
            "catalog.meshmart.svc.cluster.local",
        ] {
            assert!(is_service_host(host, "catalog", "meshmart"), "{host}");
        }
        for host in [
            "catalogue",
            "catalog.other",
            "inventory.meshmart.svc.cluster.local",
        ] {
            assert!(!is_service_host(host, "catalog", "meshmart"), "{host}");
        }
    }

    #[test]
    fn a_lone_destination_without_a_weight_gets_everything() {
        let pinned = json!({ "route": [{ "destination": { "host": "catalog", "subset": "v2" } }] });
        assert_eq!(
            own_weights(&pinned, "catalog", "meshmart"),
            vec![("v2".to_owned(), 100)]
        );
        let other =
            json!({ "route": [{ "destination": { "host": "inventory", "subset": "v1" } }] });
        assert!(own_weights(&other, "catalog", "meshmart").is_empty());
    }
}
