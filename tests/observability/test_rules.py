"""The alert rules: promtool accepts the file, its unit tests (alerts-test.yaml) pass, the
unit tests fail when a rule is changed, and every metric the rules use is one the services
or Istio export."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

import promql
import stack
from test_dashboards import ISTIO_METRICS, exported_metrics

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "alerts-test.yaml"


def run_promtool(tool: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules(promtool):
    run = run_promtool(promtool, "check", "rules", stack.ALERTS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 3 rules found" in run.stdout


def test_the_alerts_fire_when_they_should_and_not_otherwise(promtool):
    run = run_promtool(promtool, "test", "rules", UNIT_TESTS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


# Each a change to one rule that the unit tests must notice.
MUTATIONS = {
    "outbox threshold": ("meshmart_outbox_lag_ms > 30000", "meshmart_outbox_lag_ms > 50000"),
    "outbox for": ("for: 2m", "for: 10m"),
    "dead letters: first ones missed": ("> 0\n              unless", "> 5\n              unless"),
    "dead letters: shrinking counts": ("> max by (consumer) (orchestrator_dead_letters offset 10m)",
                                       "!= max by (consumer) (orchestrator_dead_letters offset 10m)"),
    "errors: client mistakes counted": ('"2|4|12|13|14|15"', '"2|4|5|12|13|14|15"'),
    "errors: http 5xx missed": ('response_code=~"5.."', 'response_code=~"6.."'),
    "errors: callers' view counted": ('{reporter="destination", grpc_response_status=~', "{grpc_response_status=~"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_the_unit_tests_catch_a_changed_rule(promtool, tmp_path, name):
    old, new = MUTATIONS[name]
    rules = stack.ALERTS.read_text()
    assert old in rules, f"the mutation {name!r} no longer matches alerts.yaml"
    (tmp_path / "alerts.yaml").write_text(rules.replace(old, new, 1))
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "alerts.yaml")]
    (tmp_path / "alerts-test.yaml").write_text(yaml.safe_dump(tests))
    assert run_promtool(promtool, "check", "rules", tmp_path / "alerts.yaml").returncode == 0
    run = run_promtool(promtool, "test", "rules", tmp_path / "alerts-test.yaml")
    assert run.returncode != 0, f"the unit tests pass with {name!r}:\n{run.stdout}"


def test_the_rules_use_only_exported_metrics():
    rules = yaml.safe_load(stack.ALERTS.read_text())
    known = exported_metrics() | ISTIO_METRICS
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = promql.metric_names(rule["expr"])
            assert names, rule["alert"]
            assert names <= known, f"{rule['alert']}: {sorted(names - known)} is exported by nobody"

