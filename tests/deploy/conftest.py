"""What the deployment checks check: every way the manifests reach a cluster.

A target is one set of documents: the chart rendered with its defaults (values.yaml with
helm/meshmart/ci/local-values.yaml, the laptop's images: the chart requires a registry
otherwise) and with the other values files in helm/meshmart/ci/, the committed k8s/base and istio/, the kind and
minikube overlays as kustomize builds them, and the committed manifests with each opt-in
fault file in place of the VirtualService it replaces.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploylib  # noqa: E402
from deploylib import CHART, ROOT, Doc  # noqa: E402

# The release's own ingress gateway (ingress.gateway.create, the default).
INGRESS_PRINCIPAL = "cluster.local/ns/meshmart/sa/meshmart-gateway"


@dataclass
class Target:
    name: str
    docs: list[Doc]
    # Identities and Secrets that live outside what the target renders.
    external_principals: tuple[str, ...] = (INGRESS_PRINCIPAL,)
    external_secrets: tuple[str, ...] = ()
    # The laptop deployments must fit the request budget; real-cluster values need not.
    laptop: bool = True
    # Raw YAML as we write it (helm output), for yamllint; kustomize output is kubectl's.
    text: str | None = field(default=None, repr=False)


def _committed_files(*, faults: bool = False) -> list[Path]:
    files = sorted((ROOT / "k8s" / "base").glob("*.yaml")) + sorted((ROOT / "istio").glob("*.yaml"))
    if faults:
        files += sorted((ROOT / "istio" / "faults").glob("*.yaml"))
    return [f for f in files if f.name != "kustomization.yaml"]


def _chart(values: list[Path] | None = None) -> tuple[list[Doc], str]:
    text = deploylib.helm_template(values).stdout
    return deploylib.split_stream(text, "helm template"), text


def _with_fault(fault_file: Path) -> list[Doc]:
    """The committed manifests as they are after `kubectl apply -f` of one fault file."""
    fault_docs = deploylib.load_files([fault_file])
    replaced = {(d.kind, d.namespace, d.name) for d in fault_docs}
    base = [d for d in deploylib.load_files(_committed_files()) if (d.kind, d.namespace, d.name) not in replaced]
    return base + fault_docs


@functools.cache
def target(name: str) -> Target:
    if name == "chart-default":
        docs, text = _chart()
        return Target(name, docs, text=text)
    if name == "chart-external":
        docs, text = _chart([CHART / "ci" / "external-values.yaml"])
        return Target(
            name,
            docs,
            external_principals=("cluster.local/ns/shop-gateway/sa/shop-gateway",),
            external_secrets=("catalog-db-credentials",),
            laptop=False,
            text=text,
        )
    if name == "chart-catalog-only":
        docs, text = _chart([CHART / "ci" / "catalog-only-values.yaml"])
        return Target(name, docs, laptop=False, text=text)
    if name == "chart-observability":
        # The laptop with the observability stack on: over the shop's budget by the stack's own,
        # which test_budget.py checks apart.
        docs, text = _chart([CHART / "ci" / "observability-values.yaml"])
        return Target(name, docs, laptop=False, text=text)
    if name == "committed":
        return Target(name, deploylib.load_files(_committed_files()))
    if name.startswith("overlay-"):
        overlay = deploylib.kustomize_build(ROOT / "k8s" / "overlays" / name.removeprefix("overlay-"))
        istio = deploylib.kustomize_build(ROOT / "istio")
        return Target(name, deploylib.split_stream(overlay, name) + deploylib.split_stream(istio, "istio"))
    if name.startswith("fault-"):
        return Target(name, _with_fault(ROOT / "istio" / "faults" / f"{name.removeprefix('fault-')}.yaml"))
    raise KeyError(name)


TARGETS = [
    "chart-default",
    "chart-external",
    "chart-catalog-only",
    "chart-observability",
    "committed",
    "overlay-kind",
    "overlay-minikube",
    "fault-inventory-delay",
    "fault-inventory-abort",
]
LAPTOP_TARGETS = [t for t in TARGETS if t not in ("chart-external", "chart-catalog-only", "chart-observability")]
CHART_VALUES = {
    "default": [deploylib.LOCAL_VALUES],
    "external": [CHART / "ci" / "external-values.yaml"],
    "catalog-only": [CHART / "ci" / "catalog-only-values.yaml"],
    "observability": [CHART / "ci" / "observability-values.yaml"],
}


@pytest.fixture(params=TARGETS)
def any_target(request) -> Target:
    return target(request.param)
