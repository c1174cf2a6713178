"""The documents fit together: every VirtualService host and destination is a Service,
every subset is defined by a DestinationRule and selects pods, every AuthorizationPolicy
principal is a ServiceAccount a workload runs as, Service ports are named for gRPC, probes
hit the gRPC port, and retries are safe for the methods they retry, fit their timeouts and
multiply to a bounded number of calls per call at the edge. Each rule is shown to fire on a
document broken for it."""

from __future__ import annotations

import copy

import deploylib
import pytest
from conftest import target
from deploylib import Doc


def _crossref(t, docs=None) -> list[str]:
    return deploylib.crossref_errors(
        t.docs if docs is None else docs,
        external_principals=t.external_principals,
        external_secrets=t.external_secrets,
    )


def test_documents_fit_together(any_target):
    errors = _crossref(any_target)
    assert not errors, "\n".join(errors)


def test_only_the_architecture_s_calls_are_allowed():
    """catalog is called by the ingress gateway only, inventory by catalog only, PostgreSQL by
    the services that own a database; nothing else (deny by default)."""
    docs = target("committed").docs
    policies = {d.name: d for d in docs if d.kind == "AuthorizationPolicy" and d.namespace == "meshmart"}
    assert policies["deny-by-default"].spec == {}

    def principals(name):
        return sorted(p for r in policies[name].spec["rules"] for f in r["from"] for p in f["source"]["principals"])

    assert principals("catalog") == ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
    assert principals("inventory") == ["cluster.local/ns/meshmart/sa/catalog"]
    assert principals("postgres") == ["cluster.local/ns/meshmart/sa/catalog", "cluster.local/ns/meshmart/sa/inventory"]
    assert "nats" not in policies, "no service uses NATS yet, so nobody may call it"
    assert set(policies) == {"deny-by-default", "catalog", "inventory", "postgres"}


def test_the_canary_splits_by_weight_and_pins_by_header():
    docs = target("committed").docs
    vs = next(d for d in docs if d.kind == "VirtualService" and d.name == "catalog")
    routes = {r["name"]: r for r in vs.spec["http"]}
    weights = {d["destination"]["subset"]: d["weight"] for d in routes["catalog-reads"]["route"]}
    assert weights == {"v1": 90, "v2": 10}
    pinned = routes["catalog-reads-v2-pinned"]
    assert all(m["headers"] == {"x-meshmart-canary": {"exact": "v2"}} for m in pinned["match"])
    assert [d["destination"]["subset"] for d in pinned["route"]] == ["v2"]
    canary = next(d for d in docs if d.kind == "Deployment" and d.name == "catalog-v2")
    container = canary.spec["template"]["spec"]["containers"][0]
    assert canary.spec["template"]["metadata"]["labels"]["version"] == "v2"
    assert {"name": "SERVICE_VERSION", "value": "v2"} in container["env"]


def test_adding_a_service_is_a_values_entry():
    """ci/more-services-values.yaml adds five services with no template change: each gets its
    Service, Deployment, routes and policy, and its callers get its address."""
    docs = target("chart-more-services").docs
    names = {d.name for d in docs if d.kind == "Deployment"}
    assert {"orders-v1", "payments-v1", "fulfillment-v1", "notifications-v1", "orchestrator-v1"} <= names
    config = {d.name: d.body["data"] for d in docs if d.kind == "ConfigMap"}
    assert config["orders"]["CATALOG_ADDR"] == "http://catalog:50051"
    assert config["orders"]["INVENTORY_ADDR"] == "http://inventory:50052"
    assert config["orchestrator"]["ORDERS_ADDR"] == "http://orders:50053"
    assert config["payments"]["NATS_URL"] == "nats://nats:4222"
    nats = next(d for d in docs if d.kind == "AuthorizationPolicy" and d.name == "nats")
    allowed = {p.rpartition("/")[2] for r in nats.spec["rules"] for f in r["from"] for p in f["source"]["principals"]}
    assert allowed == {"orders", "payments", "fulfillment", "notifications", "orchestrator"}


def test_retries_multiply_to_at_most_four_calls_per_edge_call():
    """`attempts` counts retries, and tries multiply along the calls: the edge route to catalog
    and catalog's route to inventory retry once each, so one call at the edge makes at most 2
    calls at catalog and 2 x 2 = 4 at inventory. With more services, orders calls catalog and
    inventory, and only inventory's routes retry: 1 x 1 x 2 + 1 x 2 = 4 at inventory."""
    rows, problems = deploylib.edge_calls(target("committed").docs)
    assert not problems
    calls = {row.route: row.calls for row in rows}
    for klass in ("reads", "writes", "other"):
        assert calls[f"catalog-{klass}"] == {"catalog": 2, "inventory": 4}, deploylib.amplification_report(rows)
        assert calls[f"catalog-{klass}-v2-pinned"] == {"catalog": 2, "inventory": 4}
    assert calls["reflection"] == {"catalog": 3}
    rows, problems = deploylib.edge_calls(target("chart-more-services").docs)
    assert not problems
    calls = {row.route: row.calls for row in rows}
    assert calls["orders-writes"] == {"orders": 1, "catalog": 1, "inventory": 4}, deploylib.amplification_report(rows)
    assert calls["catalog-reads"] == {"catalog": 1, "inventory": 2}


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
        "catalog",
        lambda b: _route(b, "catalog-reads")["route"][0]["destination"].update(host="catalogue"),
        "is not a Service",
    ),
    "subset no DestinationRule defines": (
        "VirtualService",
        "catalog",
        lambda b: _route(b, "catalog-reads")["route"][1]["destination"].update(subset="v3"),
        "defined by no DestinationRule",
    ),
    "weights that do not add up": (
        "VirtualService",
        "catalog",
        lambda b: _route(b, "catalog-reads")["route"][1].update(weight=20),
        "weights add up to 110",
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
        lambda b: [
            _route(b, name)["retries"].update(perTryTimeout="1500ms")
            for name in ("catalog-reads", "catalog-reads-v2-pinned")
        ],
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
        lambda b: b["spec"]["rules"][0]["from"][0]["source"].update(principals=["cluster.local/ns/meshmart/sa/orders"]),
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
