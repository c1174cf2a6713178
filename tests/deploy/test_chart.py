"""The chart: it lints strictly, renders with default and non-default values, rejects values
it does not know, refuses references between services that cannot work, and is the one
source of the committed k8s/ and istio/ (which must not drift from it)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import deploylib
import jsonschema
import pytest
import render
import yaml
from conftest import CHART_VALUES, INGRESS_PRINCIPAL, target
from deploylib import CHART, ROOT


@pytest.mark.parametrize("values", sorted(CHART_VALUES))
def test_helm_lint_strict(values):
    cmd = [deploylib.tool("helm"), "lint", "--strict", str(CHART), "--namespace", deploylib.NAMESPACE]
    for path in CHART_VALUES[values]:
        cmd += ["--values", str(path)]
    proc = deploylib.run(cmd, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", sorted(CHART_VALUES))
def test_helm_template_renders(values):
    docs = target(f"chart-{values}").docs
    kinds = {d.kind for d in docs}
    assert {
        "Deployment",
        "Service",
        "ServiceAccount",
        "VirtualService",
        "DestinationRule",
        "AuthorizationPolicy",
    } <= kinds
    assert all(d.namespace for d in docs if d.kind != "Namespace"), "every object names its namespace"


def test_the_non_default_values_change_what_they_say():
    docs = target("chart-external").docs
    deployments = {d.name: d for d in docs if d.kind == "Deployment"}
    image = deployments["catalog-v2"].spec["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/meshmart/catalog:1.5.0-rc.1"
    assert deployments["inventory-v1"].spec["replicas"] == 3
    assert not any(d.kind == "StatefulSet" for d in docs), "external PostgreSQL and NATS: none bundled"
    peer = next(d for d in docs if d.kind == "PeerAuthentication")
    assert peer.spec["mtls"]["mode"] == "PERMISSIVE"
    rule = next(d for d in docs if d.kind == "RequestAuthentication").spec["jwtRules"][0]
    assert rule["jwksUri"] == "https://login.example.com/.well-known/jwks.json" and "jwks" not in rule
    gateway = next(d for d in docs if d.kind == "Gateway").spec["servers"][0]
    assert gateway["tls"] == {"mode": "SIMPLE", "credentialName": "shop-example-com-tls"}
    assert not any(d.kind == "EnvoyFilter" and "ratelimit" in d.name for d in docs), "rate limit turned off"


def test_values_schema_is_valid_and_describes_the_values():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)


@pytest.mark.parametrize(
    "args,word",
    [
        (["--set", "services.catalog.replcias=2"], "replcias"),
        (["--set", "ingress.rateLimit.maxToken=5"], "maxToken"),
        (["--set", "mesh.mtlsMode=STRICKT"], "mtlsMode"),
        (["--set", "services.inventory.routes.reads.retryOn=unavailable\\,internal-error"], "retryOn"),
        (["--set", "services.inventory.routes.reads.retryOn=unavailable\\,cancelled"], "retryOn"),
        (["--set", "serviceDefaults.routes.writes.retryOn=deadline-exceeded"], "retryOn"),
        (["--set", "serviceDefaults.routes.other.perTryTimeout=1s"], "perTryTimeout"),
        (["--set", "serviceDefaults.resources.requests.cpu=lots"], "cpu"),
    ],
)
def test_a_misspelt_or_wrong_value_fails(args, word):
    proc = deploylib.run(
        [deploylib.tool("helm"), "template", "meshmart", str(CHART), "-n", deploylib.NAMESPACE, *args], check=False
    )
    assert proc.returncode != 0, f"helm accepted {args}"
    assert word in proc.stderr, proc.stderr


def test_a_misspelt_value_in_a_values_file_fails():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "values.yaml"
        path.write_text("services:\n  catalog:\n    canary:\n      wieght: 50\n")
        proc = deploylib.helm_template([path], check=False)
    assert proc.returncode != 0 and "wieght" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "sets,message",
    [
        (["services.inventory.allowedCallers={catalogue}"], "not an enabled service"),
        (["services.catalog.canary.version=v1"], "must differ from its version"),
        (["ingress.reflectionService=inventory"], "is not an enabled edge service"),
        (["services.catalog.database.password="], "needs a password or an existingSecret"),
        (["services.reviews.port=50058"], "grpcService is required"),
    ],
)
def test_references_that_cannot_work_fail(sets, message):
    proc = deploylib.helm_template(sets=sets, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "sets,message",
    [
        # attempts counts retries: 3 tries of 2500ms do not fit catalog's 5s at the edge, and 3
        # tries at catalog times inventory's 2 make 6 calls at inventory. Retries at catalog
        # inside the mesh multiply on orders' path: 1 x 2 x 2 + 1 x 2 = 6. Unclassified methods
        # may call anything: 2 tries at catalog x 4 at inventory is 8.
        (["services.catalog.edgeRoutes.reads.attempts=2"], "3 tries (attempts 2 + 1) x perTryTimeout 2500ms exceed"),
        (["services.catalog.edgeRoutes.reads.attempts=2"], "can cause 6 calls at inventory, over the bound of 4"),
        (["services.catalog.routes.reads.attempts=1"], "route 'orders-reads' can cause 6 calls at inventory"),
        (["serviceDefaults.routes.other.attempts=3"], "route 'catalog-other' can cause 8 calls at inventory"),
        (["services.inventory.routes.writes.perTryTimeout=1s"], "perTryTimeout 1s is never retried"),
    ],
)
def test_retry_values_the_checks_refuse(sets, message):
    """Values the schema cannot judge (they need the whole rendering): the rendered documents
    fail the cross-reference checks."""
    docs = deploylib.split_stream(deploylib.helm_template(sets=sets).stdout, "helm")
    errors = deploylib.crossref_errors(docs, external_principals=[INGRESS_PRINCIPAL])
    assert any(message in e for e in errors), f"{sets}: expected {message!r} in {errors}"


def test_attempts_zero_turns_retries_off():
    """Istio drops the whole retry policy for attempts 0, so the chart renders nothing else."""
    docs = deploylib.split_stream(
        deploylib.helm_template(sets=["services.inventory.routes.reads.attempts=0"]).stdout, "helm"
    )
    vs = next(d for d in docs if d.kind == "VirtualService" and d.name == "inventory")
    route = next(r for r in vs.spec["http"] if r["name"] == "inventory-reads")
    assert route["retries"] == {"attempts": 0} and route["timeout"] == "2s"


def test_disabling_a_default_works():
    """A value of false must win over a default of true (the chart merges maps itself)."""
    docs = deploylib.split_stream(
        deploylib.helm_template(sets=["services.inventory.autoscaling.enabled=false"]).stdout, "helm"
    )
    assert not any(d.kind == "HorizontalPodAutoscaler" and d.name == "inventory-v1" for d in docs)
    inventory = next(d for d in docs if d.kind == "Deployment" and d.name == "inventory-v1")
    assert inventory.spec["replicas"] == 1


def test_notes_show_the_grpcurl_commands():
    proc = deploylib.run(
        [deploylib.tool("helm"), "install", "meshmart", str(CHART), "-n", deploylib.NAMESPACE, "--dry-run=client"]
        + ["--values", str(deploylib.LOCAL_VALUES)]
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "helm test meshmart" in notes
    assert 'grpcurl -plaintext -H "authorization: Bearer $TOKEN" localhost:8080 list' in notes
    assert "-d '{\"pageSize\": 3}' localhost:8080 meshmart.catalog.v1.CatalogService/ListProducts" in notes
    assert "x-meshmart-canary: v2" in notes and "meshctl canary -n meshmart set catalog 50" in notes


def test_helm_test_checks_every_service():
    pod = next(d for d in target("chart-default").docs if d.kind == "Pod" and deploylib.is_hook(d))
    script = pod.body["spec"]["containers"][0]["args"][0]
    for service, port, grpc_service in (
        ("catalog", 50051, "meshmart.catalog.v1.CatalogService"),
        ("inventory", 50052, "meshmart.inventory.v1.InventoryService"),
        ("orders", 50053, "meshmart.orders.v1.OrderService"),
        ("payments", 50054, "meshmart.payments.v1.PaymentService"),
        ("fulfillment", 50055, "meshmart.fulfillment.v1.FulfillmentService"),
        ("notifications", 50056, "meshmart.notifications.v1.NotificationService"),
        ("orchestrator", 50057, "meshmart.orchestrator.v1.OrchestratorService"),
    ):
        assert f'check {service}:{port} ""' in script
        assert f"check {service}:{port} {grpc_service}" in script
    assert '"x-meshmart-canary: v2"' in script
    assert pod.body["metadata"]["annotations"]["helm.sh/hook"] == "test"


# --------------------------------------------------------------------------- one source of truth


def test_committed_manifests_are_the_chart_rendered():
    problems = render.drift()
    assert not problems, "\n\n".join(problems) + f"\n\n{render.REGENERATE}"


def test_drift_is_detected():
    expected = render.rendered_files()
    tampered = dict(expected)
    path = ROOT / "istio" / "canaryweights.yaml"
    tampered[path] = tampered[path].replace("weight: 10", "weight: 15", 1)
    tampered[ROOT / "istio" / "stray.yaml"] = "---\n"
    problems = render.compare(expected, tampered)
    assert any("weight: 15" in p for p in problems)
    assert any("stray.yaml" in p and "not rendered by the chart" in p for p in problems)


def test_fault_files_are_the_mesh_route_plus_a_fault():
    base = {d.name: d for d in target("committed").docs if d.kind == "VirtualService"}
    for path in sorted((ROOT / "istio" / "faults").glob("*.yaml")):
        (doc,) = deploylib.load_files([path])
        body = copy.deepcopy(doc.body)
        faults = [route.pop("fault") for route in body["spec"]["http"]]
        assert all(faults), f"{path.name}: every route carries the fault"
        assert body == base[doc.name].body, f"{path.name} differs from istio/virtualservices.yaml beyond its fault"
