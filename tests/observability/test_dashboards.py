"""The committed Grafana dashboards: every query parses (promtool checks them as recording
rules), the shop dashboard uses only metrics the services' code registers, and the golden
signals only Istio's standard ones."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import promql
import stack

# Istio's standard metrics (istio.io/latest/docs/reference/config/metrics), with the
# series names a Prometheus histogram adds.
ISTIO_METRICS = {
    "istio_requests_total",
    "istio_request_messages_total",
    "istio_response_messages_total",
    *(f"istio_{m}_{s}" for m in ("request_duration_milliseconds", "request_bytes", "response_bytes")
      for s in ("bucket", "sum", "count")),
}

DASHBOARDS = sorted(stack.DASHBOARDS.glob("*.json"))


def exported_metrics() -> set[str]:
    """What the services register (registry.register("name", ...), and the outbox lag's
    constant), with the suffixes prometheus-client adds: _total for a counter, _info for an
    info metric. Loose on purpose (a gauge would pass as name_total): the live test asks
    Prometheus for every query's data."""
    names = set()
    for rs in [*(stack.ROOT / "src").rglob("*.rs"), *(stack.ROOT / "services").glob("*/src/**/*.rs")]:
        text = rs.read_text()
        names |= set(re.findall(r'registry\.register\(\s*"([a-z_:]+)"', text))
        names |= set(re.findall(r'pub const LAG_METRIC: &str = "([a-z_:]+)"', text))
    return {n + suffix for n in names for suffix in ("", "_total", "_info")}


def recording_rules(exprs: list[tuple[str, str]]) -> str:
    rules = [{"record": f"dashboard:query_{i}", "expr": promql.substitute(e)} for i, (_, e) in enumerate(exprs)]
    return json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=2)


def check_parses(promtool: Path, tmp_path: Path, exprs: list[tuple[str, str]]) -> subprocess.CompletedProcess:
    rules = tmp_path / "dashboards.rules.json"
    rules.write_text(recording_rules(exprs))
    return subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)


def test_there_are_the_two_dashboards():
    assert {d.name for d in DASHBOARDS} == {"golden-signals.json", "shop.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_a_dashboard_is_grafana_json(path):
    d = json.loads(path.read_text())
    assert d["schemaVersion"] >= 39 and d["uid"] and d["title"]
    for where, _ in promql.dashboard_exprs(path):
        assert where
    for panel in d["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_parses(promtool, tmp_path, path):
    exprs = promql.dashboard_exprs(path)
    assert exprs
    run = check_parses(promtool, tmp_path, exprs)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in run.stdout


def test_the_check_rejects_a_broken_query(promtool, tmp_path):
    run = check_parses(promtool, tmp_path, [("broken", "sum by (state) (rate(orders_transitions_total[$__rate_interval])")])
    assert run.returncode != 0, run.stdout


def test_the_shop_dashboard_uses_only_metrics_the_services_register():
    known = exported_metrics()
    assert "orders_transitions_total" in known and "meshmart_outbox_lag_ms" in known
    for where, expr in promql.dashboard_exprs(stack.DASHBOARDS / "shop.json"):
        names = promql.metric_names(expr)
        assert names, where
        assert names <= known, f"{where}: {sorted(names - known)} is registered by no service"


def test_the_golden_signals_use_only_istio_metrics():
    for where, expr in promql.dashboard_exprs(stack.DASHBOARDS / "golden-signals.json"):
        names = promql.metric_names(expr)
        assert names and names <= ISTIO_METRICS, f"{where}: {sorted(names - ISTIO_METRICS)}"


def test_metric_names_are_found_in_an_expression():
    expr = 'max by (service) (meshmart_outbox_lag_ms * on (job, instance) group_left (service) meshmart_build_info{a="b"}[5m] offset 1m) * 60 > 1e3'
    assert promql.metric_names(expr) == {"meshmart_outbox_lag_ms", "meshmart_build_info"}
