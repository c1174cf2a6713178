"""Every document, rendered or committed, is valid for its kind, strictly: core kinds against
Kubernetes' schemas (kubernetes-validate --strict), Istio kinds against Istio's CRD schemas
with unknown fields rejected, and EnvoyFilter patches against Envoy's own API. The negative
tests feed misspellings in and watch them fail."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import deploylib
import pytest
import yaml
from conftest import TARGETS, target
from deploylib import ROOT, Doc


def test_documents_match_their_schemas(any_target):
    assert any_target.docs, f"{any_target.name} has no documents"
    errors = [e for doc in any_target.docs for e in deploylib.schema_errors(doc)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "name", ["chart-default", "chart-external", "chart-catalog-only", "chart-observability", "committed", "overlay-kind"]
)
def test_kubernetes_validate_cli_accepts_the_core_kinds(name):
    """The same check as the tool itself runs it, on the core documents (it only warns about
    kinds it has no schema for, so the Istio ones are checked by the test above)."""
    core = [d for d in target(name).docs if not d.is_istio]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all([d.body for d in core]))
        proc = deploylib.run(
            [deploylib.tool("kubernetes-validate"), "--strict", "-k", deploylib.KUBE_VERSION, str(path)], check=False
        )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert output.count("passed for resource") == len(core), output
    assert "Couldn't find schema" not in output, output


# --------------------------------------------------------------------------- negative tests


def _doc(name: str, kind: str, doc_name: str | None = None) -> Doc:
    return next(d for d in target(name).docs if d.kind == kind and (doc_name is None or d.name == doc_name))


def _mutated(doc: Doc, mutate) -> Doc:
    body = copy.deepcopy(doc.body)
    mutate(body)
    return Doc(doc.origin, body)


MISSPELLINGS = {
    "VirtualService retries.retryon": (
        "VirtualService/meshmart-edge",
        lambda b: (r := next(r["retries"] for r in b["spec"]["http"] if "retries" in r)).update(retryon=r.pop("retryOn")),
        "retryon",
    ),
    "VirtualService spec.htttp": ("VirtualService", lambda b: b["spec"].update(htttp=b["spec"].pop("http")), "htttp"),
    "VirtualService match uri.exactt": (
        "VirtualService/meshmart-edge",
        lambda b: b["spec"]["http"][0]["match"][0]["uri"].update(exactt="/x"),
        "exactt",
    ),
    "VirtualService metadata.lables": ("VirtualService", lambda b: b["metadata"].update(lables={"a": "b"}), "lables"),
    "DestinationRule subset lables": (
        "DestinationRule",
        lambda b: b["spec"]["subsets"][0].update(lables=b["spec"]["subsets"][0].pop("labels")),
        "lables",
    ),
    "DestinationRule outlierDetection typo": (
        "DestinationRule",
        lambda b: b["spec"]["trafficPolicy"]["outlierDetection"].update(consecutive5xxError=5),
        "consecutive5xxError",
    ),
    "AuthorizationPolicy source.principal": (
        "AuthorizationPolicy",
        lambda b: b["spec"].update(rules=[{"from": [{"source": {"principal": ["x"]}}]}]),
        "principal",
    ),
    "PeerAuthentication mtls.mdoe": ("PeerAuthentication", lambda b: b["spec"]["mtls"].update(mdoe="STRICT"), "mdoe"),
    "Telemetry tracing typo": (
        "Telemetry",
        lambda b: b["spec"]["tracing"][0].update(randomSamplingPercent=5),
        "randomSamplingPercent",
    ),
    "EnvoyFilter token_buckt (inside the Envoy patch)": (
        "EnvoyFilter/meshmart-ingress-ratelimit",
        lambda b: (c := b["spec"]["configPatches"][1]["patch"]["value"]["typed_per_filter_config"]).update(
            {k: {**v, "token_buckt": v.pop("token_bucket")} for k, v in c.items()}
        ),
        "token_buckt",
    ),
    "EnvoyFilter denominator enum": (
        "EnvoyFilter/meshmart-ingress-ratelimit",
        lambda b: [
            v["filter_enabled"]["default_value"].update(denominator="HUNDERD")
            for v in b["spec"]["configPatches"][1]["patch"]["value"]["typed_per_filter_config"].values()
        ],
        "HUNDERD",
    ),
    "Deployment readinessprobe": (
        "Deployment",
        lambda b: b["spec"]["template"]["spec"]["containers"][0].update(
            readinessprobe=b["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
        ),
        "readinessprobe",
    ),
    "Deployment metadata.lables": ("Deployment", lambda b: b["metadata"].update(lables={"a": "b"}), "lables"),
    "StatefulSet volumeClaimTemplate typo": (
        "StatefulSet",
        lambda b: b["spec"]["volumeClaimTemplates"][0]["spec"].update(accesModes=["ReadWriteOnce"]),
        "accesModes",
    ),
    "Service appProtocl": ("Service", lambda b: b["spec"]["ports"][0].update(appProtocl="grpc"), "appProtocl"),
    "EnvoyFilter Lua inline_strng": (
        "EnvoyFilter/meshmart-strip-customer-header",
        lambda b: b["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["default_source_code"].update(
            inline_strng=b["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["default_source_code"].pop(
                "inline_string"
            )
        ),
        "inline_strng",
    ),
}


@pytest.mark.parametrize("case", sorted(MISSPELLINGS))
def test_a_misspelt_field_is_rejected(case):
    kind, mutate, word = MISSPELLINGS[case]
    kind, _, name = kind.partition("/")
    # Telemetry is rendered only with a tracing provider (chart-external names one).
    doc = _doc("chart-external" if kind == "Telemetry" else "committed", kind, name or None)
    assert not deploylib.schema_errors(doc), "the unmutated document must be valid"
    errors = deploylib.schema_errors(_mutated(doc, mutate))
    assert errors and word in "\n".join(errors), f"{case} was accepted: {errors}"


def test_a_wrong_type_is_rejected():
    vs = _doc("committed", "VirtualService", "catalog-weights")
    errors = deploylib.schema_errors(_mutated(vs, lambda b: b["spec"]["http"][0]["route"][0].update(weight="ninety")))
    assert errors and "weight" in errors[0]


def test_an_unknown_kind_is_an_error_not_a_skip():
    for real, typo in (("VirtualService", "VirtualServce"), ("Deployment", "Deploymnet")):
        body = copy.deepcopy(_doc("committed", real).body)
        body["kind"] = typo
        assert deploylib.schema_errors(Doc("test", body))


@pytest.mark.parametrize(
    "path,good,bad",
    [
        ("istio/virtualservices.yaml", "perTryTimeout:", "perTryTimout:"),
        ("istio/destinationrules.yaml", "outlierDetection:", "outlierDetecton:"),
        ("k8s/base/deployments.yaml", "readinessProbe:", "readinesProbe:"),
    ],
)
def test_a_misspelling_in_a_committed_file_fails(path, good, bad):
    """The whole path, from the file's text: one edited word makes the checks fail."""
    text = (ROOT / path).read_text()
    assert good in text
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / Path(path).name
        broken.write_text(text.replace(good, bad, 1))
        errors = [e for d in deploylib.load_files([broken]) for e in deploylib.schema_errors(d)]
    assert errors and bad.rstrip(":") in "\n".join(errors)


def test_strict_schemas_close_every_object():
    """The strictness is real: in every served Istio schema, each object that declares
    properties also declares what else it accepts (nothing, unless Istio says otherwise)."""
    open_objects = []

    def walk(node, path, in_combinator=False):
        if isinstance(node, dict):
            if "properties" in node and not in_combinator and "additionalProperties" not in node:
                if not node.get("x-kubernetes-preserve-unknown-fields"):
                    open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}", in_combinator or key in ("allOf", "anyOf", "oneOf", "not"))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]", in_combinator)

    validators = deploylib.istio_validators()
    assert len(validators) >= 15
    for (api_version, kind), validator in validators.items():
        walk(validator.schema, f"{kind}@{api_version}")
    assert not open_objects, open_objects[:10]


def test_every_target_is_checked():
    assert set(TARGETS) >= {"chart-default", "chart-external", "committed", "overlay-kind", "overlay-minikube"}


def test_the_vendored_istio_crds_are_the_recorded_version():
    """The vendored file is byte for byte what tests/deploy/schemas/refresh.sh fetched."""
    import hashlib

    recorded = dict(line.split(" ", 1) for line in (deploylib.SCHEMAS / "VERSION").read_text().splitlines())
    actual = hashlib.sha256((deploylib.SCHEMAS / "istio-crds.gen.yaml").read_bytes()).hexdigest()
    assert recorded["sha256"] == actual, "istio-crds.gen.yaml changed: re-vendor it with refresh.sh"
    # The same istio.io/api version that the pinned istioctl is built with (its go.mod's).
    installer = (deploylib.ROOT / "scripts" / "install-go-tools.sh").read_text()
    pinned = next(l.split("=", 1)[1] for l in installer.splitlines() if l.startswith("ISTIO_API_VERSION="))
    assert recorded["istio.io/api"] == pinned, "re-vendor with ISTIO_API_VERSION=<the installer's> refresh.sh"
    assert recorded["istio.io/api"].startswith("v1.31."), "the chart targets Istio 1.31"
