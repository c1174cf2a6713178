"""Linters over what we write: checkov (security posture) on the rendered manifests, the chart
and the Dockerfile, with zero failures and every skip named with its reason where it applies;
yamllint on our YAML and on the chart's rendering; shellcheck and hadolint."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import deploylib
import pytest
import yaml
from conftest import TARGETS, target
from deploylib import CHART, ROOT


def _checkov(args: list[str], env: dict | None = None) -> dict:
    # --skip-download: no calls to Prisma Cloud for guidelines; the checks themselves are local.
    cmd = [deploylib.tool("checkov"), *args, "--skip-download", "--output", "json"]
    proc = deploylib.run(cmd, check=False, env=env)
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert reports and all("summary" in r for r in reports), proc.stdout[-2000:]
    return reports


def _assert_clean(reports: list[dict], *, min_passed: int) -> None:
    failures, unexplained, passed = [], [], 0
    for report in reports:
        summary = report["summary"]
        passed += summary["passed"]
        assert summary["parsing_errors"] == 0, f"{report['check_type']}: {report['results'].get('parsing_errors')}"
        for check in report["results"]["failed_checks"]:
            failures.append(
                f"{check['check_id']} {check['check_name']}: {check['resource']} "
                f"({check['file_path']}:{check['file_line_range']})"
            )
        for check in report["results"]["skipped_checks"]:
            if not (check.get("check_result", {}).get("suppress_comment") or "").strip():
                unexplained.append(f"{check['check_id']} skipped without a reason: {check['resource']}")
    assert not failures, "checkov failures:\n" + "\n".join(failures)
    assert not unexplained, "\n".join(unexplained)
    assert passed >= min_passed, f"only {passed} checks passed: did checkov scan anything?"


def test_checkov_on_the_rendered_manifests():
    """Everything that reaches a cluster: the chart rendered with each values file, and the
    kind and minikube overlays as kustomize builds them."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in TARGETS:
            t = target(name)
            if name.startswith("fault-"):
                continue  # the same workloads as `committed`; their VirtualService is checked by schema
            text = t.text or yaml.safe_dump_all([d.body for d in t.docs], sort_keys=False)
            (Path(tmp) / f"{name}.yaml").write_text(text)
        reports = _checkov(["--directory", tmp, "--framework", "kubernetes"])
    _assert_clean(reports, min_passed=1000)


def test_checkov_on_the_chart():
    # checkov renders the chart itself with the helm on PATH; HELM_NAMESPACE gives it the
    # namespace a user would install into.
    helm_dir = str(Path(deploylib.tool("helm")).parent)
    env = {"HELM_NAMESPACE": deploylib.NAMESPACE, "PATH": f"{helm_dir}:{os.environ['PATH']}"}
    # The chart requires image.registry or image.local: checkov renders it with the laptop's values.
    reports = _checkov(
        ["--directory", str(CHART), "--framework", "helm", "--var-file", str(deploylib.LOCAL_VALUES)], env=env
    )
    _assert_clean(reports, min_passed=300)


def test_checkov_on_the_dockerfile():
    reports = _checkov(["--file", str(ROOT / "Dockerfile"), "--framework", "dockerfile"])
    _assert_clean(reports, min_passed=20)


def _yaml_we_write() -> list[Path]:
    files = [ROOT / ".yamllint.yaml", CHART / "Chart.yaml", CHART / "values.yaml"]
    files += sorted((CHART / "ci").glob("*.yaml"))
    files += sorted((ROOT / "k8s").rglob("*.yaml")) + sorted((ROOT / "istio").rglob("*.yaml"))
    files += [p for p in (ROOT / ".checkov.yaml", ROOT / ".checkov.yml") if p.exists()]
    return files


def test_yamllint_on_the_yaml_we_write():
    files = _yaml_we_write()
    assert len(files) > 20
    proc = deploylib.run(
        [deploylib.tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), *map(str, files)], check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["chart-default", "chart-external", "chart-catalog-only", "chart-observability"])
def test_yamllint_on_the_chart_rendering(name):
    """Templates are not YAML until rendered, so their output is linted instead."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(target(name).text)
        proc = deploylib.run(
            [deploylib.tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(path)], check=False
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_catches_what_it_should():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bad.yaml"
        path.write_text("a: 1\na: 2\nb: yes\n")
        proc = deploylib.run(
            [deploylib.tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), str(path)], check=False
        )
    assert proc.returncode != 0 and "key-duplicates" in proc.stdout and "truthy" in proc.stdout


SCRIPTS = sorted(
    [
        *ROOT.glob("scripts/*.sh"),
        ROOT / ".ci" / "run",
    ]
)


def test_shellcheck_on_the_scripts():
    assert len(SCRIPTS) >= 6
    proc = deploylib.run([deploylib.tool("shellcheck"), "--external-sources", *map(str, SCRIPTS)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_on_the_dockerfile():
    proc = deploylib.run(
        [deploylib.tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")], check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
