//! The delegate VirtualService `<service>-weights` that holds a canary's weights, and
//! setting them.
//!
//! A VirtualService's `http` list is atomic under server-side apply: whoever applies it owns
//! all of it. So meshctl never writes the chart's VirtualServices (their matches, timeouts
//! and retries stay the chart's); the chart's weighted routes delegate to this object, which
//! has nothing but the split, and meshctl applies that with its own field manager, forced,
//! marking it `meshmart.dev/weights-owner: meshctl`. On `helm upgrade` the chart looks the
//! live delegate up and, seeing the mark, renders the live weights, so Helm applies the same
//! list: no conflict and no revert.
//!
//! The stable version is the delegate's first destination and the canary its second, the
//! order the chart renders them in.

use std::io::Write;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::error::Error;

/// The field manager of meshctl's server-side applies.
pub const FIELD_MANAGER: &str = "meshctl";
/// The annotation that tells the chart meshctl owns the weights now.
pub const OWNER_ANNOTATION: &str = "meshmart.dev/weights-owner";
/// The label the chart gives every delegate.
pub const COMPONENT_SELECTOR: &str = "app.kubernetes.io/component=canary-weights";

/// Istio's VirtualService, networking.istio.io/v1.
pub fn virtual_service() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

/// The VirtualServices of a namespace.
pub fn virtual_services(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &virtual_service())
}

/// The name of a service's delegate.
pub fn delegate_name(service: &str) -> String {
    format!("{service}-weights")
}

/// One version's share of the calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The DestinationRule subset, which is the version (`v1`).
    pub subset: String,
    /// Percent of calls.
    pub weight: u32,
}

/// A canary's delegate as it is live.
#[derive(Debug, Clone)]
pub struct Delegate {
    pub service: String,
    pub namespace: String,
    pub stable: Share,
    pub canary: Share,
    /// Who set the weights last: `meshctl` once it has, else none (the chart's values).
    pub owner: Option<String>,
    /// The live `spec.http`, whose destinations a change keeps.
    http: Vec<Value>,
}

impl Delegate {
    /// The delegate of `service` in `namespace`; [`Error::NoCanary`] if there is none.
    pub async fn get(client: &kube::Client, namespace: &str, service: &str) -> Result<Self, Error> {
        let name = delegate_name(service);
        let object = virtual_services(client, namespace)
            .get_opt(&name)
            .await
            .map_err(Error::api(format!("get VirtualService {namespace}/{name}")))?;
        match object {
            Some(object) => Delegate::parse(service, namespace, &object),
            None => Err(Error::NoCanary {
                service: service.to_owned(),
                namespace: namespace.to_owned(),
            }),
        }
    }

    /// Reads the split out of a delegate: one http route with two destinations, each a
    /// subset.
    pub fn parse(service: &str, namespace: &str, object: &DynamicObject) -> Result<Self, Error> {
        let malformed = |reason: String| Error::MalformedDelegate {
            namespace: namespace.to_owned(),
            name: delegate_name(service),
            reason,
        };
        let http = object
            .data
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("it has no spec.http list".to_owned()))?;
        let [route] = http.as_slice() else {
            return Err(malformed(format!(
                "expected one http route, found {}",
                http.len()
            )));
        };
        let destinations = route
            .get("route")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("its http route has no route list".to_owned()))?;
        let [stable, canary] = destinations.as_slice() else {
            return Err(malformed(format!(
                "expected two destinations (the stable version, then the canary), found {}",
                destinations.len()
            )));
        };
        let share = |destination: &Value| -> Result<Share, Error> {
            let subset = destination
                .pointer("/destination/subset")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("a destination has no subset".to_owned()))?;
            // Istio's default for an absent weight among several destinations is 0.
            let weight = match destination.get("weight") {
                None | Some(Value::Null) => 0,
                Some(weight) => weight
                    .as_u64()
                    .and_then(|w| u32::try_from(w).ok())
                    .ok_or_else(|| malformed(format!("the weight {weight} is not a number")))?,
            };
            Ok(Share {
                subset: subset.to_owned(),
                weight,
            })
        };
        let (stable, canary) = (share(stable)?, share(canary)?);
        if stable.subset == canary.subset {
            return Err(malformed(format!(
                "both destinations are the subset {}",
                stable.subset
            )));
        }
        let owner = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OWNER_ANNOTATION))
            .cloned();
        Ok(Delegate {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            stable,
            canary,
            owner,
            http: http.clone(),
        })
    }

    /// What meshctl applies for a canary weight: apiVersion, kind, name, namespace, the
    /// owner annotation and the live `spec.http` with the new weights (summing to 100) and
    /// nothing else changed. Fields left out stay whoever's they are (Helm's labels).
    pub fn applied(&self, canary_weight: u8) -> Value {
        let canary = u32::from(canary_weight.min(100));
        let mut http = self.http.clone();
        let destinations = http
            .first_mut()
            .and_then(|route| route.get_mut("route"))
            .and_then(Value::as_array_mut);
        if let Some(destinations) = destinations {
            for (destination, weight) in destinations.iter_mut().zip([100 - canary, canary]) {
                if let Some(destination) = destination.as_object_mut() {
                    destination.insert("weight".to_owned(), json!(weight));
                }
            }
        }
        let resource = virtual_service();
        json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {
                "name": delegate_name(&self.service),
                "namespace": self.namespace,
                "annotations": { OWNER_ANNOTATION: FIELD_MANAGER },
            },
            "spec": { "http": http },
        })
    }

    /// `catalog: v1 90 -> 50, v2 10 -> 50`.
    pub fn change(&self, canary_weight: u8) -> String {
        let canary = u32::from(canary_weight.min(100));
        format!(
            "{}: {} {} -> {}, {} {} -> {}",
            self.service,
            self.stable.subset,
            self.stable.weight,
            100 - canary,
            self.canary.subset,
            self.canary.weight,
            canary
        )
    }
}

/// Sets the canary's weight of `service` (the stable version gets the rest): prints the
/// change, and with `dry_run` the object too, which the API server then only validates.
pub async fn set_weight(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    canary_weight: u8,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let delegate = Delegate::get(client, namespace, service).await?;
    let applied = delegate.applied(canary_weight);
    writeln!(out, "{}", delegate.change(canary_weight))?;
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    if dry_run {
        params = params.dry_run();
        writeln!(
            out,
            "dry run: would apply (server-side, field manager {FIELD_MANAGER}, forced):"
        )?;
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&applied).map_err(std::io::Error::other)?
        )?;
    }
    let name = delegate_name(service);
    let live = virtual_services(client, namespace)
        .patch(&name, &params, &Patch::Apply(&applied))
        .await
        .map_err(Error::api(format!(
            "apply VirtualService {namespace}/{name}"
        )))?;
    if dry_run {
        writeln!(
            out,
            "dry run: the API server accepted it (dryRun=All); nothing changed"
        )?;
    } else {
        let now = Delegate::parse(service, namespace, &live)?;
        writeln!(
            out,
            "applied VirtualService {namespace}/{name}: {} {}, {} {}",
            now.stable.subset, now.stable.weight, now.canary.subset, now.canary.weight
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delegate(http: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": { "name": "catalog-weights", "namespace": "meshmart" },
            "spec": { "http": http },
        }))
        .unwrap()
    }

    fn destination(subset: &str, weight: u32) -> Value {
        json!({
            "destination": {
                "host": "catalog.meshmart.svc.cluster.local",
                "subset": subset,
                "port": { "number": 50051 },
            },
            "weight": weight,
        })
    }

    #[test]
    fn the_first_destination_is_stable_and_the_second_the_canary() {
        let object = delegate(json!([{
            "name": "weights",
            "route": [destination("v1", 90), destination("v2", 10)],
        }]));
        let parsed = Delegate::parse("catalog", "meshmart", &object).unwrap();
        assert_eq!(
            parsed.stable,
            Share {
                subset: "v1".into(),
                weight: 90
            }
        );
        assert_eq!(
            parsed.canary,
            Share {
                subset: "v2".into(),
                weight: 10
            }
        );
        assert_eq!(parsed.owner, None);
        assert_eq!(parsed.change(50), "catalog: v1 90 -> 50, v2 10 -> 50");
    }

    #[test]
    fn the_applied_object_changes_only_the_weights() {
        let object = delegate(json!([{
            "name": "weights",
            "route": [destination("v1", 90), destination("v2", 10)],
        }]));
        let parsed = Delegate::parse("catalog", "meshmart", &object).unwrap();
        let applied = parsed.applied(30);
        assert_eq!(
            applied,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {
                    "name": "catalog-weights",
                    "namespace": "meshmart",
                    "annotations": { "meshmart.dev/weights-owner": "meshctl" },
                },
                "spec": { "http": [{
                    "name": "weights",
                    "route": [destination("v1", 70), destination("v2", 30)],
                }]},
            })
        );
    }

    #[test]
    fn a_delegate_without_two_destinations_is_malformed() {
        let one = delegate(json!([{ "name": "weights", "route": [destination("v1", 100)] }]));
        let error = Delegate::parse("catalog", "meshmart", &one).unwrap_err();
        assert_eq!(
            error.to_string(),
            "VirtualService meshmart/catalog-weights is not a canary's weights: expected two \
             destinations (the stable version, then the canary), found 1"
        );
        let two_routes = delegate(json!([
            { "route": [destination("v1", 90), destination("v2", 10)] },
            { "route": [destination("v1", 90), destination("v2", 10)] },
        ]));
        assert!(Delegate::parse("catalog", "meshmart", &two_routes).is_err());
        let same = delegate(json!([{ "route": [destination("v1", 90), destination("v1", 10)] }]));
        assert!(Delegate::parse("catalog", "meshmart", &same).is_err());
    }
}
