"""What a release of the chart must get right beyond its own objects: that a second release
(another name, another namespace) collides with nothing, that its gateway serves its own hosts
and its tracing, resilience and drain settings do what they say, that the images come from a
registry that was named, that the namespace is Helm's, and that the bundled PostgreSQL gets
its roles and databases on every install and upgrade, not only on first start."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import deploylib
import pytest
from conftest import target
from deploylib import CHART, Doc


def _render(*sets: str, values: list[Path] | None = None, release: str = "meshmart", namespace: str = "meshmart"):
    text = deploylib.helm_template(values, sets, release=release, namespace=namespace).stdout
    return deploylib.split_stream(text, f"helm template {release}")


def _identity(doc: Doc) -> tuple[str, str, str, str]:
    return (doc.api_version, doc.kind, doc.namespace, doc.name)


# --------------------------------------------------------------------------- two releases


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param((), id="own-gateways"),
        # Both on the cluster's shared gateway: their policies share its namespace.
        pytest.param(
            ("ingress.gateway.create=false", "ingress.hosts[0]=HOST"),
            id="shared-gateway",
        ),
    ],
)
def test_two_releases_share_no_object(sets):
    """Two releases (other names, other namespaces) render no two objects with the same
    apiVersion, kind, namespace and name: what lives outside the release namespace (a shared
    gateway's JWT policies, rate limit and header filters) is named after the release."""
    seen: dict[tuple[str, str, str, str], str] = {}
    for release, namespace in (("meshmart", "meshmart"), ("shop2", "shop2")):
        host = f"{release}.example.com"
        docs = _render(*(s.replace("HOST", host) for s in sets), release=release, namespace=namespace)
        for doc in docs:
            key = _identity(doc)
            assert key not in seen, f"{key} is rendered by both {seen[key]} and {release}"
            seen[key] = release
        if sets:
            outside = [d for d in docs if d.namespace == "istio-system"]
            assert {d.kind for d in outside} >= {"RequestAuthentication", "AuthorizationPolicy", "EnvoyFilter"}
            assert all(d.name.startswith(f"{release}-") for d in outside), [d.name for d in outside]


def test_each_release_brings_its_own_gateway():
    """By default a release's Gateway selects a gateway Deployment of its own, in its own
    namespace, by a label no other release's pods carry; its JWT and rate-limit policies select
    the same pods, and nothing of it lands in istio-system."""
    selectors = []
    for release, namespace in (("meshmart", "meshmart"), ("shop2", "shop2")):
        docs = _render(release=release, namespace=namespace)
        assert not [d for d in docs if d.namespace != namespace], "everything in the release namespace"
        (gateway,) = [d for d in docs if d.kind == "Gateway"]
        selector = gateway.spec["selector"]
        deployments = [
            d for d in docs if d.kind == "Deployment" and deploylib.selects(selector, deploylib.pod_labels(d))
        ]
        assert [d.name for d in deployments] == [gateway.name], "the Gateway selects the release's gateway pods"
        (pod,) = deployments
        assert deploylib.pod_template(pod)["metadata"]["annotations"]["inject.istio.io/templates"] == "gateway"
        for doc in docs:
            if doc.kind in ("RequestAuthentication", "EnvoyFilter") or doc.name.endswith("-require-jwt"):
                selected = doc.spec.get("selector") or doc.spec.get("workloadSelector") or {}
                labels = selected.get("matchLabels") or selected.get("labels")
                assert labels == selector, doc
        selectors.append(selector)
    assert selectors[0] != selectors[1]


def _gateway_hosts(docs: list[Doc]) -> list[str]:
    return [h for d in docs if d.kind == "Gateway" for s in d.spec["servers"] for h in s["hosts"]]


@pytest.mark.parametrize("values", ["default", "external", "catalog-only"])
def test_no_shared_gateway_takes_every_host_unless_asked(values):
    """The release's own gateway serves every host that reaches it ("*": its pods are the
    release's alone); on a shared gateway the release serves only the hosts it names."""
    from conftest import CHART_VALUES

    docs = _render(values=CHART_VALUES[values])
    hosts = _gateway_hosts(docs)
    if values == "external":
        assert hosts and "*" not in hosts, hosts
    else:
        assert hosts == ["*"]
        (gateway,) = [d for d in docs if d.kind == "Gateway"]
        (deployment,) = [d for d in docs if d.kind == "Deployment" and d.name == "meshmart-gateway"]
        assert gateway.spec["selector"].items() <= deployment.spec["template"]["metadata"]["labels"].items()
    # Asked for, it is what it says; a shared gateway without hosts is refused.
    assert _gateway_hosts(_render("ingress.hosts[0]=*")) == ["*"]
    proc = deploylib.helm_template(sets=["ingress.gateway.create=false"], check=False)
    assert proc.returncode != 0 and "ingress.hosts is required with a shared gateway" in proc.stderr


# --------------------------------------------------------------------------- tracing


def test_no_telemetry_without_a_tracing_provider():
    """A Telemetry tracing entry that names no provider turns tracing off where the mesh has no
    default provider: none is rendered unless tracing.provider names one."""
    assert not [d for d in target("chart-default").docs if d.kind == "Telemetry"]
    assert not [d for d in target("committed").docs if d.kind == "Telemetry"]


def test_telemetry_covers_the_gateway():
    """With a provider: the release namespace's Telemetry covers its own gateway (in the same
    namespace, no selector); a shared gateway gets one in its namespace selecting its pods."""
    docs = _render("tracing.provider=otel")
    (telemetry,) = [d for d in docs if d.kind == "Telemetry"]
    (gateway,) = [d for d in docs if d.kind == "Deployment" and d.name == "meshmart-gateway"]
    assert telemetry.namespace == gateway.namespace and "selector" not in telemetry.spec
    assert telemetry.spec["tracing"] == [{"randomSamplingPercentage": 10, "providers": [{"name": "otel"}]}]

    docs = target("chart-external").docs
    telemetries = {d.namespace: d for d in docs if d.kind == "Telemetry"}
    assert set(telemetries) == {"meshmart", "shop-gateway"}
    shared = telemetries["shop-gateway"]
    assert shared.spec["selector"]["matchLabels"] == {"app": "shop-gateway"}
    assert shared.spec["tracing"][0]["providers"] == [{"name": "otel"}]


# --------------------------------------------------------------------------- outlier detection


def _subset_pods(docs: list[Doc]) -> dict[tuple[str, str], tuple[int, int]]:
    """(service, version) -> the fewest and most pods its Deployment runs (HPA or replicas)."""
    hpas = {d.spec["scaleTargetRef"]["name"]: d.spec for d in docs if d.kind == "HorizontalPodAutoscaler"}
    out = {}
    for d in docs:
        if d.kind != "Deployment" or "version" not in deploylib.pod_labels(d):
            continue
        labels = deploylib.pod_labels(d)
        hpa = hpas.get(d.name)
        counts = (hpa["minReplicas"], hpa["maxReplicas"]) if hpa else (d.spec.get("replicas", 1),) * 2
        out[(labels["app"], labels["version"])] = counts
    return out


@pytest.mark.parametrize("name", ["chart-default", "chart-external", "committed"])
def test_outlier_detection_can_eject_at_every_replica_count(name):
    """Gateway errors (502, 503, 504: down, refusing, overloaded), not every 5xx (an INTERNAL
    or UNIMPLEMENTED answer is the application's, not the pod's); and with the fewest pods a
    subset runs (one, for the canary or at an HPA's minimum) one pod can still be ejected,
    which Envoy allows only while the ejected share stays within maxEjectionPercent."""
    docs = target(name).docs
    pods = _subset_pods(docs)
    rules = [d for d in docs if d.kind == "DestinationRule" and d.spec.get("subsets")]
    assert rules
    for rule in rules:
        outlier = rule.spec["trafficPolicy"]["outlierDetection"]
        assert outlier.get("consecutiveGatewayErrors", 0) > 0, rule
        assert outlier.get("consecutive5xxErrors", 0) == 0, f"{rule}: the 5xx counter ejects for application errors"
        service = rule.name
        for subset in rule.spec["subsets"]:
            fewest, most = pods[(service, subset["labels"]["version"])]
            assert 100 * 1 / fewest <= outlier["maxEjectionPercent"], f"{rule} {subset['name']}: {fewest} pod(s)"
            if most >= 2:
                # One of two ejected leaves half healthy: detection stays on (panic below minHealthPercent).
                assert outlier["minHealthPercent"] <= 100 * (most - 1) / most, rule


# --------------------------------------------------------------------------- the drain


@pytest.mark.parametrize("name", ["chart-default", "chart-external", "committed", "overlay-kind"])
def test_the_grace_period_covers_the_app_s_drain_and_the_sidecar_s(name):
    """Every pod with a sidecar runs it as a native sidecar (it stops after the app) with a
    set drain, and its terminationGracePeriodSeconds covers, one after the other, the app's
    drain delay and grace period (its ConfigMap) and the proxy's terminationDrainDuration."""
    docs = target(name).docs
    config = {d.name: d.body["data"] for d in docs if d.kind == "ConfigMap"}
    checked = 0
    for doc in docs:
        if doc.kind not in ("Deployment", "StatefulSet") or deploylib.is_hook(doc):
            continue
        annotations = deploylib.pod_template(doc)["metadata"].get("annotations") or {}
        proxy = json.loads(annotations.get("proxy.istio.io/config", "{}"))
        drain = deploylib.seconds(proxy.get("terminationDrainDuration", "0s"))
        assert drain > 0 and proxy.get("drainDuration"), f"{doc}: no drain set for its proxy"
        grace = deploylib.pod_spec(doc)["terminationGracePeriodSeconds"]
        if annotations.get("inject.istio.io/templates") == "gateway":
            assert grace > drain, doc
            continue
        assert annotations.get("sidecar.istio.io/nativeSidecar") == "true", doc
        app = config.get(deploylib.pod_labels(doc).get("app", ""), {})
        if "SHUTDOWN_DRAIN_DELAY_SECS" in app:
            needed = int(app["SHUTDOWN_DRAIN_DELAY_SECS"]) + int(app["SHUTDOWN_GRACE_PERIOD_SECS"]) + drain
            assert grace > needed, f"{doc}: {grace}s does not cover the app's drain and the sidecar's ({needed}s)"
            checked += 1
    assert checked >= 3


# --------------------------------------------------------------------------- images and namespace


def test_rendering_needs_a_registry_or_local_images():
    """Without image.registry a bare name (meshmart/catalog) would resolve to Docker Hub."""
    proc = deploylib.helm_template(values=[], check=False)
    assert proc.returncode != 0 and "image.registry is required" in proc.stderr and "image.local=true" in proc.stderr
    docs = _render("image.registry=registry.example.com/shop", values=[])
    images = {c["image"] for d in docs if d.kind == "Deployment" for c in deploylib.pod_spec(d)["containers"]}
    assert "registry.example.com/shop/catalog:0.1.0" in images
    local = {
        (c["image"], c["imagePullPolicy"])
        for d in target("chart-default").docs
        if d.kind == "Deployment" and d.name != "meshmart-gateway"
        for c in deploylib.pod_spec(d)["containers"]
    }
    assert ("meshmart/catalog:0.1.0", "Never") in local and all(policy == "Never" for _, policy in local)


def test_the_chart_leaves_the_namespace_to_helm():
    """Helm writes the release's record into the namespace before anything of the chart, so the
    chart cannot create it (with --create-namespace the two conflict): no Namespace, and no
    value that would render one."""
    for name in ("chart-default", "chart-external", "chart-catalog-only"):
        assert not [d for d in target(name).docs if d.kind == "Namespace"]
    proc = deploylib.helm_template(sets=["namespace.create=true"], check=False)
    assert proc.returncode != 0 and "namespace" in proc.stderr
    # The committed base, for kubectl, has one (written by render.py).
    (namespace,) = [d for d in target("committed").docs if d.kind == "Namespace"]
    assert namespace.body["metadata"]["labels"]["istio-injection"] == "enabled"


# --------------------------------------------------------------------------- PostgreSQL's roles


def _setup_job(docs: list[Doc]) -> Doc:
    (job,) = [d for d in docs if d.kind == "Job" and d.name.startswith("meshmart-postgres-setup-")]
    return job


def test_the_postgres_setup_job_is_a_hook_after_install_and_upgrade():
    job = _setup_job(target("chart-default").docs)
    annotations = job.body["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {"before-hook-creation", "hook-succeeded"}
    pod = deploylib.pod_template(job)
    # A native sidecar, or the Job's pod would never complete.
    assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"
    assert pod["spec"]["restartPolicy"] == "Never"
    # The committed base has it too: `kubectl apply` runs it as a plain Job.
    assert _setup_job(target("committed").docs).name == job.name


def test_a_changed_password_rolls_the_pods_and_reruns_the_setup():
    before = _render()
    after = _render("services.catalog.database.password=rotated-catalog-password")

    def annotations(docs, name):
        (d,) = [d for d in docs if d.name == name and d.kind == "Deployment"]
        return deploylib.pod_template(d)["metadata"]["annotations"]

    key = "checksum/database"
    assert annotations(before, "catalog-v1")[key] != annotations(after, "catalog-v1")[key]
    assert annotations(before, "inventory-v1")[key] == annotations(after, "inventory-v1")[key], "only catalog rolls"
    old, new = _setup_job(before), _setup_job(after)
    assert old.name != new.name, "a new Job (its template is immutable) for the new Secret"
    key = "checksum/secret"
    old_sum = deploylib.pod_template(old)["metadata"]["annotations"][key]
    assert old_sum != deploylib.pod_template(new)["metadata"]["annotations"][key]


def _setup_script(docs: list[Doc]) -> str:
    (container,) = deploylib.pod_spec(_setup_job(docs))["containers"]
    assert container["command"] == ["sh", "-c"]
    return container["args"][0]


def test_shellcheck_on_the_postgres_setup_script():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "setup.sh"
        path.write_text(_setup_script(target("committed").docs))
        proc = deploylib.run([deploylib.tool("shellcheck"), "--shell=sh", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(
    "MESHMART_TEST_POSTGRES_URL" not in os.environ, reason="needs PostgreSQL (run under scripts/with-postgres.sh)"
)
def test_the_setup_script_is_idempotent_against_postgresql():
    """Run the setup Job's script twice against a real server, then once more with a changed
    password: each run succeeds, and each service logs in with its current password to its
    own database. A role the init script made (first start) is adopted, not an error."""
    server = urlsplit(os.environ["MESHMART_TEST_POSTGRES_URL"])
    docs = target("committed").docs
    secrets = {d.name: d.body["stringData"] for d in docs if d.kind == "Secret"}
    names = ("catalog", "inventory")
    env = {
        **os.environ,
        **secrets["postgres"],
        "PGHOST": server.hostname,
        "PGPORT": str(server.port),
        "PGUSER": server.username or "postgres",
        "PGDATABASE": "postgres",
    }
    if server.password:
        env["PGPASSWORD"] = server.password
    script = _setup_script(docs)
    admin = ["psql", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", "postgres"]
    owners = [line.split()[1] for line in script.splitlines() if line.startswith("ensure_database ")]

    def cleanup():
        for name in owners:
            subprocess.run([*admin, "-c", f'DROP DATABASE IF EXISTS "{name}"'], env=env, capture_output=True)
            subprocess.run([*admin, "-c", f'DROP ROLE IF EXISTS "{name}"'], env=env, capture_output=True)

    def login(name: str, password: str) -> subprocess.CompletedProcess:
        """Connect as the service would; the test server trusts local connections, so the
        password is checked against the role's SCRAM verifier in pg_authid instead."""
        url = f"postgres://{name}:{password}@{server.hostname}:{server.port}/{name}"
        proc = subprocess.run(
            ["psql", url, "-X", "-At", "-c", "SELECT current_user || ' ' || current_database()"],
            capture_output=True,
            text=True,
        )
        verifier = subprocess.run(
            [*admin, "-At", "-c", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{name}'"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if proc.returncode == 0 and not _scram_matches(verifier, password):
            proc = subprocess.CompletedProcess(proc.args, 1, proc.stdout, f"wrong password for {name}")
        return proc

    cleanup()
    try:
        # As after a first start whose init script made catalog only.
        subprocess.run([*admin, "-c", "CREATE ROLE catalog LOGIN PASSWORD 'old'"], env=env, check=True)
        for _ in range(2):
            proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            for name in names:
                proc = login(name, secrets["postgres"][f"{name.upper()}_DB_PASSWORD"])
                assert proc.returncode == 0 and proc.stdout.strip() == f"{name} {name}", proc.stderr
        rotated = {**env, "CATALOG_DB_PASSWORD": "rotated"}
        proc = subprocess.run(["sh", "-c", script], env=rotated, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert login("catalog", "rotated").returncode == 0
        assert login("catalog", secrets["postgres"]["CATALOG_DB_PASSWORD"]).returncode != 0
    finally:
        cleanup()


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL SCRAM-SHA-256 verifier (RFC 5803 format) is of this password."""
    import base64
    import hashlib
    import hmac

    method, _, rest = verifier.partition("$")
    if method != "SCRAM-SHA-256":
        return False
    params, _, keys = rest.partition("$")
    iterations, _, salt = params.partition(":")
    stored_key, _, _ = keys.partition(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))


def test_the_setup_job_may_reach_postgres():
    (policy,) = [d for d in target("committed").docs if d.kind == "AuthorizationPolicy" and d.name == "postgres"]
    principals = policy.spec["rules"][0]["from"][0]["source"]["principals"]
    assert "cluster.local/ns/meshmart/sa/meshmart-postgres-setup" in principals


def test_values_schema_knows_the_new_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert "namespace" not in schema["properties"]
    assert "local" in schema["properties"]["image"]["properties"]
    assert "create" in schema["properties"]["ingress"]["properties"]["gateway"]["properties"]


# --------------------------------------------------------------------------- the docs' demos


def test_the_docs_show_what_grpcurl_prints():
    """grpcurl prints a failed call as `ERROR:` then `Code:` and `Message:` on lines of their
    own; with reflection (no -proto) the reflection stream is the first call, so its refusal is
    what grpcurl reports. The demos that need a cluster say so."""
    text = (deploylib.ROOT / "docs" / "deploy.md").read_text()
    assert "ERROR: Code:" not in text, "grpcurl does not print the code on the ERROR: line"
    for code, message in (
        ("PermissionDenied", "RBAC: access denied"),
        ("Unauthenticated", "Jwt is expired"),
        ("ResourceExhausted", "local_rate_limited"),
    ):
        assert f"#   ERROR:\n#     Code: {code}\n#     Message: {message}" in text, code
    assert "failed to query for\n#   service descriptor" in text, "the reflection call's refusal"
    for section in ("## 4. The JWT", "**The rate limit.**"):
        body = text.split(section, 1)[1][:4000]
        assert "needs cluster" in body, section
    limit = text.split("**The rate limit.**", 1)[1][:3000]
    assert "per gateway pod" in limit and "N times the rate" in limit and "before the JWT check" in limit


def test_names_fit_a_label_for_the_longest_release_name():
    """Helm allows release names of 53 characters; every name the chart makes from one must
    still fit the 63 of a label value (the Job's name becomes its pods' job-name label)."""
    release = "a-very-long-release-name-for-the-shop-of-someone-else"
    assert len(release) == 53
    for doc in _render(release=release, namespace="shop"):
        assert len(doc.name) <= 63, doc.name
        for value in ((doc.body["metadata"].get("labels")) or {}).values():
            assert len(str(value)) <= 63, (doc, value)
