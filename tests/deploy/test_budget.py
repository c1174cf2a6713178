"""The whole shop plus its sidecars fits a laptop: all pods of the namespace together request
at most 0.5 CPU and 512Mi (the order flow's services, Postgres, NATS and the canary included), computed from the
manifests as they are applied."""

from __future__ import annotations

import copy

import deploylib
import pytest
from conftest import LAPTOP_TARGETS, target
from deploylib import Doc


# The laptop's long-running workloads, and the observability stack's.
SHOP_WORKLOADS = {
    "Deployment/meshmart-gateway",
    "Deployment/catalog-v1",
    "Deployment/catalog-v2",
    "Deployment/inventory-v1",
    "Deployment/orders-v1",
    "Deployment/payments-v1",
    "Deployment/fulfillment-v1",
    "Deployment/notifications-v1",
    "Deployment/orchestrator-v1",
    "StatefulSet/postgres",
    "StatefulSet/nats",
}
STACK_WORKLOADS = {
    f"Deployment/meshmart-{part}" for part in ("otel-collector", "jaeger", "prometheus", "loki", "grafana")
}


@pytest.mark.parametrize("name", LAPTOP_TARGETS)
def test_the_namespace_fits_the_budget(name):
    rows, errors = deploylib.requests(target(name).docs)
    report = deploylib.budget_report(rows)
    assert not errors, "\n".join(errors) + "\n" + report
    assert not deploylib.budget_errors(rows), "\n".join(deploylib.budget_errors(rows)) + "\n" + report
    # Every long-running workload is counted: eight service pods, the release's own ingress
    # gateway, Postgres and NATS (not the PostgreSQL setup Job, which ends).
    assert {r.workload for r in rows} == SHOP_WORKLOADS, report


def _with(docs: list[Doc], kind: str, name: str, mutate) -> list[Doc]:
    out = []
    for doc in docs:
        if doc.kind == kind and doc.name == name:
            body = copy.deepcopy(doc.body)
            mutate(body)
            doc = Doc(doc.origin, body)
        out.append(doc)
    return out


def test_going_over_the_budget_fails():
    docs = _with(target("committed").docs, "Deployment", "catalog-v2", lambda b: b["spec"].update(replicas=4))
    rows, errors = deploylib.requests(docs)
    assert not errors
    assert any("Mi, over the budget" in e for e in deploylib.budget_errors(rows)), deploylib.budget_report(rows)


def test_an_hpa_minimum_counts():
    docs = _with(
        target("committed").docs, "HorizontalPodAutoscaler", "inventory-v1", lambda b: b["spec"].update(minReplicas=3)
    )
    rows, _ = deploylib.requests(docs)
    assert next(r for r in rows if r.workload == "Deployment/inventory-v1").replicas == 3


def test_an_unsized_sidecar_is_an_error():
    def drop(body):
        del body["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/proxyMemory"]

    _, errors = deploylib.requests(_with(target("committed").docs, "StatefulSet", "nats", drop))
    assert any("does not size it" in e for e in errors)


def test_quantities_parse():
    assert deploylib.cpu_milli("20m") == 20 and deploylib.cpu_milli("0.5") == 500 and deploylib.cpu_milli(2) == 2000
    assert deploylib.memory_bytes("32Mi") == 32 * 2**20 and deploylib.memory_bytes("1G") == 10**9
    assert deploylib.seconds("600ms") == 0.6 and deploylib.seconds("1m30s") == 90
    with pytest.raises(ValueError):
        deploylib.memory_bytes("32MB")


def test_the_observability_stack_is_an_extra_of_its_own():
    """ci/observability-values.yaml: the shop's workloads still fit the shop's budget, and the
    stack's five are reported as an extra line against their own budget, not counted in it."""
    docs = target("chart-observability").docs
    rows, errors = deploylib.requests(docs)
    shop, stack = deploylib.split_observability(docs, rows)
    report = deploylib.budget_report(shop, stack)
    assert not errors, "\n".join(errors) + "\n" + report
    assert {r.workload for r in shop} == SHOP_WORKLOADS, report
    assert {r.workload for r in stack} == STACK_WORKLOADS, report
    assert not deploylib.budget_errors(shop, stack), "\n".join(deploylib.budget_errors(shop, stack)) + "\n" + report
    assert "+ observability stack (extra)" in report and "its own budget" in report
    # The shop is what it is without the stack: the same requests as the laptop's.
    laptop, _ = deploylib.requests(target("chart-default").docs)
    assert sorted((r.workload, r.cpu_milli, r.memory) for r in shop) == sorted(
        (r.workload, r.cpu_milli, r.memory) for r in laptop
    )
    # No sidecar is counted for the stack: it runs outside the mesh.
    for doc in docs:
        if f"{doc.kind}/{doc.name}" in STACK_WORKLOADS:
            assert deploylib.pod_labels(doc)["sidecar.istio.io/inject"] == "false", doc


def test_the_stack_going_over_its_budget_fails():
    def bigger(body):
        body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "400Mi"

    docs = _with(target("chart-observability").docs, "Deployment", "meshmart-prometheus", bigger)
    rows, _ = deploylib.requests(docs)
    shop, stack = deploylib.split_observability(docs, rows)
    errors = deploylib.budget_errors(shop, stack)
    assert any(e.startswith("the observability stack requests") and "over the budget" in e for e in errors), errors
    assert not deploylib.budget_errors(shop), "the shop's own budget is untouched"


def test_the_stated_stack_budget_is_the_checked_one():
    """values.yaml says what the stack may request: the numbers the test checks."""
    values = (deploylib.CHART / "values.yaml").read_text()
    cpu, mem = deploylib.OBSERVABILITY_BUDGET_CPU_MILLI, deploylib.OBSERVABILITY_BUDGET_MEMORY // 2**20
    assert f"the stack requests at most {cpu}m CPU and {mem}Mi" in values
