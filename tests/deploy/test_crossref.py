"""The documents fit together: every VirtualService host and destination is a Service,
every subset is defined by a DestinationRule and selects pods, every AuthorizationPolicy
principal is a ServiceAccount a workload runs as, Service ports are named for gRPC, probes
hit the gRPC port, and retries are safe for the methods they retry, fit their timeouts and
multiply to a bounded number of calls per call at the edge. Each rule is shown to fire on a
document broken for it."""

from __future__ import annotations

import copy
import re

import deploylib
import pytest
from conftest import INGRESS_PRINCIPAL, target
from deploylib import ROOT, Doc


def _crossref(t, docs=None) -> list[str]:
    return deploylib.crossref_errors(
        t.docs if docs is None else docs,
        external_principals=t.external_principals,
        external_secrets=t.external_secrets,
    )


def test_documents_fit_together(any_target):
    errors = _crossref(any_target)
    assert not errors, "\n".join(errors)


# The calls of the order flow (docs/deploy.md, section 7; helm/meshmart/values.yaml): who may
# call whom, and nothing else. "gateway" is the ingress gateway's identity.
FLOW_CALLS = {
    "catalog": {"gateway", "orders"},
    "inventory": {"catalog", "orders", "orchestrator"},
    "orders": {"gateway"},
    "notifications": {"gateway"},
    # Every service owns a database; the five services of the order flow use the broker.
    # ...and the setup Job creates the roles and databases (a Helm hook).
    "postgres": {
        "catalog",
        "inventory",
        "orders",
        "payments",
        "fulfillment",
        "notifications",
        "orchestrator",
        "meshmart-postgres-setup",
    },
    "nats": {"orders", "payments", "fulfillment", "notifications", "orchestrator"},
}
# What the gateway may reach, by service: its public gRPC API (and reflection on catalog).
PUBLIC_PATHS = {
    "catalog": {
        "/meshmart.catalog.v1.CatalogService/*",
        "/grpc.reflection.v1.ServerReflection/*",
        "/grpc.reflection.v1alpha.ServerReflection/*",
    },
    "orders": {"/meshmart.orders.v1.OrderService/*"},
    "notifications": {"/meshmart.notifications.v1.NotificationService/*"},
}


def _allowed(docs) -> dict[str, set[str]]:
    """Policy name -> the accounts its rules allow ("gateway" for the ingress gateway's)."""
    out: dict[str, set[str]] = {}
    for policy in (d for d in docs if d.kind == "AuthorizationPolicy" and d.namespace == "meshmart"):
        if deploylib.is_hook(policy):
            continue  # helm test's own identity, which may call Health/Check only
        for rule in policy.spec.get("rules") or []:
            for source in rule.get("from") or []:
                for principal in source["source"].get("principals") or []:
                    name = "gateway" if principal == INGRESS_PRINCIPAL else principal.rpartition("/")[2]
                    out.setdefault(policy.name, set()).add(name)
    return out


def test_only_the_order_flow_s_calls_are_allowed():
    """Every AuthorizationPolicy of the namespace together allow exactly FLOW_CALLS: the
    gateway the public APIs, each service the services it calls, PostgreSQL and NATS their
    clients; payments, fulfillment and the orchestrator no caller at all (operators reach
    them by port-forward); the rest is denied by default."""
    docs = target("committed").docs
    policies = {d.name: d for d in docs if d.kind == "AuthorizationPolicy" and d.namespace == "meshmart"}
    assert policies["deny-by-default"].spec == {}
    assert _allowed(docs) == FLOW_CALLS
    # ...and the release's own gateway takes calls from outside, for the public paths only.
    assert set(policies) == {"deny-by-default", "meshmart-gateway", "meshmart-require-jwt", *FLOW_CALLS}
    # The public APIs (REST calls too: the transcoder runs first, so RBAC sees their gRPC
    # paths), and a GET of the OpenAPI, which the gateway answers itself.
    rule, openapi = policies["meshmart-gateway"].spec["rules"]
    assert "from" not in rule and {p for t in rule["to"] for p in t["operation"]["paths"]} == set().union(
        *PUBLIC_PATHS.values()
    )
    assert openapi == {"to": [{"operation": {"ports": ["8080"], "methods": ["GET"], "paths": ["/openapi.yaml"]}}]}
    for name in ("postgres", "nats"):
        assert [t["operation"]["ports"] for r in policies[name].spec["rules"] for t in r["to"]] == [
            ["5432" if name == "postgres" else "4222"]
        ]
    # The gateway reaches the public APIs only; the callers inside the mesh a service's own API.
    for name, paths in PUBLIC_PATHS.items():
        (rule,) = [r for r in policies[name].spec["rules"] if INGRESS_PRINCIPAL in r["from"][0]["source"]["principals"]]
        assert {p for t in rule["to"] for p in t["operation"]["paths"]} == paths
    assert not any(
        "DeadLetterService" in str(d.body) or "/meshmart.orchestrator." in str(d.body)
        for d in docs
        if d.kind == "AuthorizationPolicy" or d.name == "meshmart-edge"
    ), "the orchestrator's APIs are for operators: no policy allows them, no edge route leads there"


def test_the_call_graph_is_the_documented_one():
    """The mesh-level call graph that the retry checks follow (from the AuthorizationPolicies)
    is the table of calls in docs/deploy.md, section 7."""
    graph = {caller: callees for caller, callees in deploylib.call_graph(target("committed").docs).items() if callees}
    assert graph == {
        "catalog": {"inventory"},
        "orders": {"catalog", "inventory"},
        "orchestrator": {"inventory"},
        # The release's own ingress gateway: the edge.
        "meshmart-gateway": {"catalog", "orders", "notifications"},
    }
    documented = set(re.findall(r"^\| `([a-z-]+) → ([a-z]+)` \|", (ROOT / "docs" / "deploy.md").read_text(), re.MULTILINE))
    expected = {(caller, callee) for callee, callers in FLOW_CALLS.items() for caller in callers}
    expected = {("meshmart-gateway" if caller == "gateway" else caller, callee) for caller, callee in expected}
    assert documented == expected, "docs/deploy.md's table of calls is the AuthorizationPolicies' list"


def test_every_flow_service_has_nats_and_its_database():
    """The five services of the order flow get NATS_URL, every service its DATABASE_URL from
    its own Secret, and each caller the addresses of what it calls (and no other)."""
    docs = target("committed").docs
    config = {d.name: d.body["data"] for d in docs if d.kind == "ConfigMap"}
    secrets = {d.name: d.body["stringData"] for d in docs if d.kind == "Secret"}
    for deployment in (d for d in docs if d.kind == "Deployment" and d.name != "meshmart-gateway"):
        service = deployment.body["metadata"]["labels"]["app"]
        container = deployment.spec["template"]["spec"]["containers"][0]
        refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
        assert refs == [f"{service}-database"], deployment
        url = secrets[f"{service}-database"]["DATABASE_URL"]
        assert url.startswith(f"postgres://{service}:") and url.endswith(f"@postgres:5432/{service}?sslmode=disable")
        addrs = {k for k in config[service] if k.endswith("_ADDR") and k not in ("GRPC_ADDR", "METRICS_ADDR")}
        calls = {callee for callee, callers in FLOW_CALLS.items() if service in callers and callee not in ("postgres", "nats")}
        assert addrs == {f"{c.upper()}_ADDR" for c in calls}, service
        if service in FLOW_CALLS["nats"]:
            assert config[service]["NATS_URL"] == "nats://nats:4222"
        else:
            assert "NATS_URL" not in config[service]
    assert config["orders"]["CATALOG_ADDR"] == "http://catalog:50051"
    assert config["orders"]["INVENTORY_ADDR"] == "http://inventory:50052"
    assert config["orchestrator"]["INVENTORY_ADDR"] == "http://inventory:50052"


def test_the_canary_splits_by_weight_and_pins_by_header():
    docs = target("committed").docs
    vs = next(d for d in docs if d.kind == "VirtualService" and d.name == "catalog")
    routes = {r["name"]: r for r in vs.spec["http"]}
    # The split is the delegate's (meshctl canary writes it); the route keeps its retries.
    assert routes["catalog-reads"]["delegate"] == {"name": "catalog-weights", "namespace": "meshmart"}
    assert "route" not in routes["catalog-reads"] and routes["catalog-reads"]["retries"]
    weights_vs = next(d for d in docs if d.kind == "VirtualService" and d.name == "catalog-weights")
    assert "hosts" not in weights_vs.spec and "gateways" not in weights_vs.spec
    [split] = weights_vs.spec["http"]
    weights = {d["destination"]["subset"]: d["weight"] for d in split["route"]}
    assert weights == {"v1": 90, "v2": 10}
    assert list(weights) == ["v1", "v2"], "the stable version first, the canary second"
    edge = next(d for d in docs if d.kind == "VirtualService" and d.name == "meshmart-edge")
    delegating = {r["name"] for r in edge.spec["http"] + vs.spec["http"] if r.get("delegate")}
    assert delegating == {f"catalog-{c}" for c in ("reads", "writes", "other")}
    pinned = routes["catalog-reads-v2-pinned"]
    assert all(m["headers"] == {"x-meshmart-canary": {"exact": "v2"}} for m in pinned["match"])
    assert [d["destination"]["subset"] for d in pinned["route"]] == ["v2"]
    canary = next(d for d in docs if d.kind == "Deployment" and d.name == "catalog-v2")
    container = canary.spec["template"]["spec"]["containers"][0]
    assert canary.spec["template"]["metadata"]["labels"]["version"] == "v2"
    assert {"name": "SERVICE_VERSION", "value": "v2"} in container["env"]


def test_turning_services_off_is_a_values_entry():
    """ci/catalog-only-values.yaml turns the order flow's five services off with no template
    change: their workloads, routes and policies go, and with no client NATS has no policy."""
    docs = target("chart-catalog-only").docs
    deployments = {d.name for d in docs if d.kind == "Deployment"}
    assert deployments == {"catalog-v1", "catalog-v2", "inventory-v1", "meshmart-gateway"}
    assert _allowed(docs) == {
        "catalog": {"gateway"},
        "inventory": {"catalog"},
        "postgres": {"catalog", "inventory", "meshmart-postgres-setup"},
    }
    assert {d.name for d in docs if d.kind == "StatefulSet"} == {"postgres", "nats"}


def test_retries_multiply_to_at_most_four_calls_per_edge_call():
    """`attempts` counts retries, and tries multiply along the calls: the edge route to catalog
    and inventory's routes retry once each, so one call at the edge makes at most 2 calls at
    catalog and 2 x 2 = 4 at inventory. orders calls catalog and inventory, and only
    inventory's routes retry there (catalog's mesh routes and orders' make one try):
    1 x 1 x 2 + 1 x 2 = 4 at inventory."""
    rows, problems = deploylib.edge_calls(target("committed").docs)
    assert not problems
    calls = {row.route: row.calls for row in rows}
    report = deploylib.amplification_report(rows)
    for klass in ("reads", "writes", "other"):
        assert calls[f"catalog-{klass}"] == {"catalog": 2, "inventory": 4}, report
        assert calls[f"catalog-{klass}-v2-pinned"] == {"catalog": 2, "inventory": 4}
    for klass in ("reads", "writes", "streams", "other"):
        assert calls[f"orders-{klass}"] == {"orders": 1, "catalog": 1, "inventory": 4}, report
    assert calls["notifications-reads"] == {"notifications": 2}
    assert calls["reflection"] == {"catalog": 3}
    assert max(n for row in rows for n in row.calls.values()) <= deploylib.MAX_CALLS_PER_EDGE_CALL


def test_catalog_retries_at_the_edge_and_not_for_orders():
    """edgeRoutes: the gateway's routes to catalog retry, catalog's mesh routes (orders' calls) do not."""
    docs = target("committed").docs
    edge = next(d for d in docs if d.kind == "VirtualService" and d.name == "meshmart-edge")
    mesh = next(d for d in docs if d.kind == "VirtualService" and d.name == "catalog")
    edge_reads = next(r for r in edge.spec["http"] if r["name"] == "catalog-reads")
    mesh_reads = next(r for r in mesh.spec["http"] if r["name"] == "catalog-reads")
    assert edge_reads["retries"]["attempts"] == 1 and edge_reads["retries"]["perTryTimeout"] == "2500ms"
    assert edge_reads["timeout"] == "5s"
    assert mesh_reads["retries"] == {"attempts": 0} and mesh_reads["timeout"] == "3s"


def test_watch_order_is_a_stream_with_no_route_timeout():
    """WatchOrder streams until the order ends or the caller's deadline: its route has no
    timeout that would cut the stream (values' 0s renders as no field, Istio's default: the
    CRD refuses 0s), no per-try timeout and no retries."""
    docs = target("committed").docs
    for name in ("meshmart-edge", "orders"):
        vs = next(d for d in docs if d.kind == "VirtualService" and d.name == name)
        route = next(r for r in vs.spec["http"] if r["name"] == "orders-streams")
        assert [m["uri"]["exact"] for m in route["match"]] == ["/meshmart.orders.v1.OrderService/WatchOrder"]
        assert "timeout" not in route and route["retries"] == {"attempts": 0}


def test_tries_are_retries_plus_one():
    assert deploylib.route_tries({"retries": {"attempts": 1}}) == 2
    assert deploylib.route_tries({"retries": {"attempts": 0}}) == 1
    assert deploylib.route_tries({}) == deploylib.ISTIO_DEFAULT_ATTEMPTS + 1, "no retries: Istio's default policy"


# --------------------------------------------------------------------------- negative tests


def _break(kind: str, name: str, mutate) -> list[str]:
    t = target("committed")
    docs = []
    for doc in t.docs:
        if doc.kind == kind and doc.name == name:
            body = copy.deepcopy(doc.body)
            mutate(body)
            doc = Doc(doc.origin, body)
        docs.append(doc)
    return _crossref(t, docs)


def _route(body, name):
    return next(r for r in body["spec"]["http"] if r["name"] == name)


BREAKAGES = {
    "VirtualService host is no Service": (
        "VirtualService",
        "inventory",
        lambda b: b["spec"].update(hosts=["inventroy.meshmart.svc.cluster.local"]),
        "is not a Service",
    ),
    "destination is no Service": (
        "VirtualService",
        "catalog-weights",
        lambda b: _route(b, "weights")["route"][0]["destination"].update(host="catalogue"),
        "is not a Service",
    ),
    "subset no DestinationRule defines": (
        "VirtualService",
        "catalog-weights",
        lambda b: _route(b, "weights")["route"][1]["destination"].update(subset="v3"),
        "defined by no DestinationRule",
    ),
    "weights that do not add up": (
        "VirtualService",
        "catalog-weights",
        lambda b: _route(b, "weights")["route"][1].update(weight=20),
        "weights add up to 110",
    ),
    "route delegating to no delegate": (
        "VirtualService",
        "catalog",
        lambda b: _route(b, "catalog-reads")["delegate"].update(name="catalog-weight"),
        "which is not a delegate VirtualService",
    ),
    "destination port the Service lacks": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-reads")["route"][0]["destination"]["port"].update(number=50053),
        "is not a port of",
    ),
    "retrying a write on INTERNAL": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-writes")["retries"].update(retryOn="unavailable,internal"),
        "not safe for writes",
    ),
    "retrying an unclassified method on UNAVAILABLE": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-other")["retries"].update(retryOn="connect-failure,unavailable"),
        "not safe for other",
    ),
    # attempts counts retries: attempts 1 is 2 tries, and 2 x 1100ms is over the 2s timeout.
    "tries that overrun the timeout": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-reads")["retries"].update(perTryTimeout="1100ms"),
        "2 tries (attempts 1 + 1) x perTryTimeout 1100ms exceed timeout 2s",
    ),
    "retrying a read on CANCELLED": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-reads")["retries"].update(retryOn="unavailable,cancelled"),
        "retryOn cancelled: the caller has left",
    ),
    "retrying a read on DEADLINE_EXCEEDED": (
        "VirtualService",
        "meshmart-edge",
        lambda b: _route(b, "catalog-reads")["retries"].update(retryOn="reset,deadline-exceeded"),
        "retryOn deadline-exceeded: the caller's time is gone",
    ),
    "a route left to Istio's default retries": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-other").pop("retries"),
        "Istio's default policy applies",
    ),
    "a per-try timeout on an unclassified method": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-other")["retries"].update(perTryTimeout="1s"),
        "perTryTimeout 1s on a route of class other",
    ),
    "retrying an unclassified method after its per-try timeout": (
        "VirtualService",
        "meshmart-edge",
        lambda b: _route(b, "catalog-other")["retries"].update(
            perTryTimeout="1s", retryOn="connect-failure,refused-stream,reset"
        ),
        "perTryTimeout 1s on a route of class other",
    ),
    "a per-try timeout that nothing retries": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-writes")["retries"].update(perTryTimeout="1s"),
        "perTryTimeout 1s is never retried",
    ),
    # 3 tries at catalog, each calling inventory's reads route (2 tries): 6 calls at inventory.
    "retries that multiply past the bound": (
        "VirtualService",
        "meshmart-edge",
        lambda b: _route(b, "catalog-reads")["retries"].update(attempts=2, perTryTimeout="1600ms"),
        "one edge call on route 'catalog-reads' can cause 6 calls at inventory, over the bound of 4",
    ),
    "a downstream route whose retries multiply past the bound": (
        "VirtualService",
        "inventory",
        lambda b: _route(b, "inventory-writes")["retries"].update(attempts=2),
        "one edge call on route 'catalog-writes' can cause 6 calls at inventory",
    ),
    "a caller's try shorter than the callee's route": (
        "VirtualService",
        "catalog",
        lambda b: [_route(b, name).update(timeout="1500ms") for name in ("catalog-reads", "catalog-reads-v2-pinned")],
        "does not outlast inventory",
    ),
    "subset whose labels select no pod": (
        "DestinationRule",
        "catalog",
        lambda b: b["spec"]["subsets"][1]["labels"].update(version="v9"),
        "matches no pod",
    ),
    "DestinationRule without mTLS": (
        "DestinationRule",
        "inventory",
        lambda b: b["spec"]["trafficPolicy"]["tls"].update(mode="DISABLE"),
        "ISTIO_MUTUAL",
    ),
    "principal of no ServiceAccount": (
        "AuthorizationPolicy",
        "inventory",
        lambda b: b["spec"]["rules"][0]["from"][0]["source"].update(principals=["cluster.local/ns/meshmart/sa/reviews"]),
        "no ServiceAccount defined here",
    ),
    "calls allowed both ways": (
        "AuthorizationPolicy",
        "catalog",
        lambda b: b["spec"]["rules"][0]["from"][0]["source"]["principals"].append(
            "cluster.local/ns/meshmart/sa/inventory"
        ),
        "the allowed calls form a cycle (catalog -> inventory -> catalog)",
    ),
    "AuthorizationPolicy port no container has": (
        "AuthorizationPolicy",
        "inventory",
        lambda b: b["spec"]["rules"][0]["to"][0]["operation"].update(ports=["50051"]),
        "is no container port",
    ),
    "Service port not named for gRPC": (
        "Service",
        "catalog",
        lambda b: b["spec"]["ports"][0].update(name="http"),
        "not named for its appProtocol",
    ),
    "Service without appProtocol": (
        "Service",
        "inventory",
        lambda b: b["spec"]["ports"][0].pop("appProtocol"),
        "no appProtocol",
    ),
    "Service selecting no pod": (
        "Service",
        "inventory",
        lambda b: b["spec"]["selector"].update(app="inventroy"),
        "matches no workload",
    ),
    "probe off the gRPC port": (
        "Deployment",
        "inventory-v1",
        lambda b: b["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"].update(port=9090),
        "not the gRPC port",
    ),
    "liveness probe that is not gRPC health": (
        "Deployment",
        "catalog-v1",
        lambda b: b["spec"]["template"]["spec"]["containers"][0].update(
            livenessProbe={"tcpSocket": {"port": 50051}, "periodSeconds": 10}
        ),
        "not a gRPC health probe",
    ),
    "pods without the version label": (
        "Deployment",
        "inventory-v1",
        lambda b: b["spec"]["template"]["metadata"]["labels"].pop("version"),
        "'version' label",
    ),
    "a ServiceAccount that does not exist": (
        "Deployment",
        "catalog-v2",
        lambda b: b["spec"]["template"]["spec"].update(serviceAccountName="catalog-v2"),
        "is not defined",
    ),
    "a Secret that does not exist": (
        "Deployment",
        "inventory-v1",
        lambda b: b["spec"]["template"]["spec"]["containers"][0]["envFrom"][1]["secretRef"].update(name="inv-db"),
        "Secret 'inv-db' is not defined",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_a_broken_reference_is_reported(case):
    kind, name, mutate, message = BREAKAGES[case]
    assert not _crossref(target("committed")), "the unbroken documents must pass"
    errors = _break(kind, name, mutate)
    assert any(message in e for e in errors), f"{case}: expected {message!r} in {errors}"
