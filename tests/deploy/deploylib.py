"""The machinery of the deployment checks: render the chart, load manifests, validate them
strictly, cross-reference them, and add up what they request.

The checks are plain functions from documents to findings (lists of readable strings), so
the tests feed them both the real manifests and deliberately broken ones.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "meshmart"
RELEASE = "meshmart"
NAMESPACE = "meshmart"
# The chart requires image.registry, or image.local for images loaded into kind or minikube;
# "the defaults" below are the laptop's: values.yaml with this file (the committed k8s/ and
# istio/ are rendered with it too).
LOCAL_VALUES = CHART / "ci" / "local-values.yaml"
# The Kubernetes version whose schemas validate the core kinds (kind's and minikube's current).
KUBE_VERSION = "1.35.0"
# The Istio CRDs (Istio 1.31), vendored in tests/deploy/schemas (see its README); ISTIO_CRDS
# points the checks at another copy, to try a newer Istio before vendoring it.
SCHEMAS = ROOT / "tests" / "deploy" / "schemas"
ISTIO_CRDS = Path(os.environ.get("ISTIO_CRDS", SCHEMAS / "istio-crds.gen.yaml"))
TOOLS = Path(os.environ.get("MESHMART_TOOLS", ROOT / ".tools"))

# What the laptop deployment may request in all, sidecars included (the issue's budget).
BUDGET_CPU_MILLI = 500
BUDGET_MEMORY = 512 * 2**20
# The observability stack (observability.enabled): an extra of its own, on top of the shop's,
# never counted in it (values.yaml, observability; docs/deploy.md).
OBSERVABILITY_BUDGET_CPU_MILLI = 250
OBSERVABILITY_BUDGET_MEMORY = 512 * 2**20
# The pod label that marks the stack's workloads (templates/_helpers.tpl, meshmart.obsLabels).
OBSERVABILITY_COMPONENT = "observability"

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


# --------------------------------------------------------------------------- tools


def tool(name: str) -> str:
    """A tool from the project's .tools (bin/, or the venv for Python-packaged ones), else PATH."""
    for folder in (TOOLS / "bin", TOOLS / "venv" / "bin"):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found in {TOOLS / 'bin'} or on PATH; run scripts/install-tools.sh")
    return found


def run(
    cmd: list[str], *, cwd: Path = ROOT, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env=None if env is None else {**os.environ, **env}
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm_template(
    values: Iterable[Path] | None = None,
    sets: Iterable[str] = (),
    *,
    skip_tests: bool = False,
    check: bool = True,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> subprocess.CompletedProcess:
    """`helm template` of the chart; with no values files, the laptop's (LOCAL_VALUES)."""
    cmd = [tool("helm"), "template", release, str(CHART), "--namespace", namespace]
    for path in (LOCAL_VALUES,) if values is None else values:
        cmd += ["--values", str(path)]
    for item in sets:
        cmd += ["--set", item]
    if skip_tests:
        cmd.append("--skip-tests")
    return run(cmd, check=check)


def kustomize_build(directory: Path) -> str:
    return run([tool("kubectl"), "kustomize", str(directory)]).stdout


# --------------------------------------------------------------------------- documents


@dataclass
class Doc:
    """One Kubernetes object and where it came from."""

    origin: str  # a file, or the chart template that rendered it
    body: dict

    @property
    def kind(self) -> str:
        return self.body.get("kind", "")

    @property
    def api_version(self) -> str:
        return self.body.get("apiVersion", "")

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def name(self) -> str:
        return (self.body.get("metadata") or {}).get("name", "")

    @property
    def namespace(self) -> str:
        return (self.body.get("metadata") or {}).get("namespace", "")

    @property
    def spec(self) -> dict:
        return self.body.get("spec") or {}

    @property
    def is_istio(self) -> bool:
        return self.group.endswith("istio.io")

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} ({self.origin})"


def split_stream(text: str, origin: str) -> list[Doc]:
    """Documents of a YAML stream; helm's `# Source:` comments name each one's template."""
    docs = []
    for chunk in re.split(r"^---[ \t]*$", text, flags=re.MULTILINE):
        source = re.search(r"^# Source: (\S+)", chunk, flags=re.MULTILINE)
        body = yaml.safe_load(chunk)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ValueError(f"{origin}: a document is not a mapping: {chunk[:80]!r}")
        docs.append(Doc(source.group(1) if source else origin, body))
    return docs


def load_files(paths: Iterable[Path]) -> list[Doc]:
    docs = []
    for path in paths:
        docs += split_stream(path.read_text(), str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))
    return docs


def is_hook(doc: Doc) -> bool:
    return "helm.sh/hook" in ((doc.body.get("metadata") or {}).get("annotations") or {})


# --------------------------------------------------------------------------- schemas

# Kubernetes' own ObjectMeta (strict), for the metadata of Istio objects: CRD schemas leave
# metadata open, and a misspelt `lables` there must fail as it does on a Deployment.
OBJECT_META_REF = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_SCHEMA_KEYS = ("items", "additionalProperties")
_COMBINATORS = ("allOf", "anyOf", "oneOf", "not")


def strict_schema(node, *, in_combinator: bool = False):
    """A copy of a CRD's openAPIV3Schema that rejects unknown fields, as the API server's
    strict field validation does: every object schema that neither lists
    `additionalProperties` nor sets `x-kubernetes-preserve-unknown-fields` gets
    `additionalProperties: false`, at every depth. Branches of allOf/anyOf/oneOf/not only
    constrain fields the structural schema already declares, so they stay as they are."""
    if isinstance(node, list):
        return [strict_schema(item, in_combinator=in_combinator) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(sub, in_combinator=in_combinator) for name, sub in value.items()}
        elif key in _COMBINATORS:
            out[key] = strict_schema(value, in_combinator=True)
        elif key in _SCHEMA_KEYS and isinstance(value, (dict, list)):
            out[key] = strict_schema(value, in_combinator=in_combinator)
        else:
            out[key] = value
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    is_object = out.get("type") == "object" or "properties" in out
    open_ended = out.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out
    if is_object and not open_ended and not in_combinator:
        out["additionalProperties"] = False
    return out


def _k8s_definitions() -> Resource:
    version = kubernetes_validate.utils.major_minor(KUBE_VERSION)
    path = f"kubernetes-json-schema/v{version}.0-local-strict/_definitions.json"
    return Resource.from_contents(kubernetes_validate.utils.schema_contents(path, KUBE_VERSION))


@functools.cache
def istio_validators(crds_path: Path = ISTIO_CRDS) -> dict[tuple[str, str], jsonschema.Validator]:
    """(apiVersion, kind) -> a strict validator, for every version each Istio CRD serves."""
    if not crds_path.exists():
        raise FileNotFoundError(f"Istio CRD schemas not found at {crds_path}; set ISTIO_CRDS")
    registry = _k8s_definitions() @ Registry()
    validators = {}
    for crd in yaml.safe_load_all(crds_path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            api_version = f"{group}/{version['name']}"
            schema = strict_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schema["properties"] = {
                "apiVersion": {"const": api_version},
                "kind": {"const": kind},
                "metadata": {"$ref": OBJECT_META_REF},
                **schema.get("properties", {}),
            }
            schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
            validators[(api_version, kind)] = jsonschema.Draft202012Validator(schema, registry=registry)
    return validators


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


# The Envoy message an EnvoyFilter patch value is, by applyTo.
ENVOY_PATCH_TYPES = {
    "HTTP_FILTER": (
        "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
        "HttpFilter",
    ),
    "NETWORK_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "Filter"),
    "LISTENER": ("envoy.config.listener.v3.listener_pb2", "Listener"),
    "CLUSTER": ("envoy.config.cluster.v3.cluster_pb2", "Cluster"),
    "ROUTE_CONFIGURATION": ("envoy.config.route.v3.route_pb2", "RouteConfiguration"),
    "VIRTUAL_HOST": ("envoy.config.route.v3.route_components_pb2", "VirtualHost"),
    "HTTP_ROUTE": ("envoy.config.route.v3.route_components_pb2", "Route"),
}


def _import_types(value) -> None:
    """Import the generated modules of every `@type` in an Envoy config, so that their
    google.protobuf.Any values can be parsed."""
    import importlib
    import importlib.util

    if isinstance(value, dict):
        type_url = value.get("@type", "")
        package = type_url.rpartition("/")[2].rpartition(".")[0]
        try:
            spec = importlib.util.find_spec(package) if package else None
        except ModuleNotFoundError:
            spec = None  # ParseDict then reports the type it cannot resolve
        for folder in spec.submodule_search_locations if spec and spec.submodule_search_locations else []:
            for module in sorted(Path(folder).glob("*_pb2.py")):
                importlib.import_module(f"{package}.{module.stem}")
        for item in value.values():
            _import_types(item)
    elif isinstance(value, list):
        for item in value:
            _import_types(item)


def envoy_patch_errors(doc: Doc) -> list[str]:
    """EnvoyFilter patch values are opaque to the CRD (x-kubernetes-preserve-unknown-fields).
    Parse each into the Envoy API message it patches (xds-protos, Envoy's own protos), which
    rejects unknown fields, wrong types and unknown enum values, as Envoy would."""
    import importlib

    from google.protobuf import json_format

    errors = []
    for i, patch in enumerate(doc.spec.get("configPatches") or []):
        value = (patch.get("patch") or {}).get("value")
        if value is None:
            continue
        target = ENVOY_PATCH_TYPES.get(patch.get("applyTo"))
        if target is None:
            errors.append(f"{doc}: configPatches.{i}: no Envoy message known for applyTo {patch.get('applyTo')}")
            continue
        _import_types(value)
        message = getattr(importlib.import_module(target[0]), target[1])()
        try:
            json_format.ParseDict(value, message)
        except (json_format.ParseError, TypeError) as e:
            errors.append(f"{doc}: configPatches.{i}.patch.value: {str(e).splitlines()[0]}")
    return errors


def schema_errors(doc: Doc) -> list[str]:
    """Why a document is not valid for its kind; empty when it is. A kind with no schema is
    an error too: nothing passes unchecked."""
    if doc.is_istio:
        validator = istio_validators().get((doc.api_version, doc.kind))
        if validator is None:
            return [f"{doc}: no Istio CRD schema for {doc.api_version} {doc.kind}"]
        errors = [
            f"{doc}: {_path(e)}: {e.message}"
            for e in sorted(validator.iter_errors(doc.body), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if doc.kind == "EnvoyFilter" and not errors:
            errors = envoy_patch_errors(doc)
        return errors
    try:
        kubernetes_validate.validate(doc.body, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{doc}: {_path(e)}: {e.message}"]
    except kubernetes_validate.utils.SchemaNotFoundError as e:
        return [f"{doc}: {e.message}"]
    return []


# --------------------------------------------------------------------------- quantities


def cpu_milli(quantity) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def memory_bytes(quantity) -> int:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity))
    if not match or match.group(2) not in ("", *_MEMORY_UNITS):
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return round(float(match.group(1)) * _MEMORY_UNITS.get(match.group(2), 1))


def seconds(duration: str) -> float:
    """An Istio duration (600ms, 2s, 1m, 1h30m) in seconds."""
    parts = re.findall(r"([0-9.]+)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


# --------------------------------------------------------------------------- model


def pod_template(doc: Doc) -> dict:
    if doc.kind == "Pod":
        return doc.body
    return (doc.spec.get("template") or {}) if doc.kind in WORKLOAD_KINDS else {}


def pod_labels(doc: Doc) -> dict:
    return (pod_template(doc).get("metadata") or {}).get("labels") or {}


def pod_spec(doc: Doc) -> dict:
    return pod_template(doc).get("spec") or {}


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.kind in WORKLOAD_KINDS or d.kind == "Pod"]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Model:
    """The objects of one deployment, indexed for cross-referencing."""

    def __init__(self, docs: list[Doc], *, namespace: str = NAMESPACE, cluster_domain: str = "cluster.local"):
        self.docs = docs
        self.namespace = namespace
        self.cluster_domain = cluster_domain
        self.services = {(d.namespace, d.name): d for d in docs if d.kind == "Service"}
        self.service_accounts = {(d.namespace, d.name) for d in docs if d.kind == "ServiceAccount"}
        self.workloads = workloads(docs)
        self.gateways = {(d.namespace, d.name): d for d in docs if d.kind == "Gateway"}
        self.destination_rules = [d for d in docs if d.kind == "DestinationRule"]
        # Delegate VirtualServices (no hosts): what a route's `delegate` names.
        self.delegates = {
            (d.namespace, d.name): d for d in docs if d.kind == "VirtualService" and not d.spec.get("hosts")
        }

    def route_destinations(self, route: dict, namespace: str) -> list[dict]:
        """Where a route sends calls: its own `route`, or for a root route the destinations of
        the delegate VirtualService it names (Istio merges the two)."""
        delegate = route.get("delegate")
        if not delegate:
            return route.get("route") or []
        target = self.delegates.get((delegate.get("namespace") or namespace, delegate.get("name")))
        if target is None:
            return []
        return [d for r in target.spec.get("http") or [] for d in r.get("route") or []]

    def service_for_host(self, host: str, namespace: str):
        """The Service a mesh host names: short, <name>.<ns>, or the FQDN."""
        parts = host.split(".")
        if len(parts) == 1:
            return self.services.get((namespace, host))
        if len(parts) == 2 or host.endswith(f".svc.{self.cluster_domain}") and len(parts) == 5:
            return self.services.get((parts[1], parts[0]))
        return None

    def pods_of_service(self, service: Doc) -> list[Doc]:
        selector = service.spec.get("selector") or {}
        return [w for w in self.workloads if w.namespace == service.namespace and selects(selector, pod_labels(w))]

    def service_account_of(self, workload: Doc) -> str:
        return pod_spec(workload).get("serviceAccountName") or "default"


def container_ports(workload: Doc) -> list[dict]:
    return [p for c in pod_spec(workload).get("containers") or [] for p in c.get("ports") or []]


# --------------------------------------------------------------------------- cross-references

SAFE_RETRY_ON = {
    # Reads have no side effects: retry whenever the answer may be transient.
    "reads": {"connect-failure", "refused-stream", "reset", "unavailable"},
    # Writes are idempotent by request_id/reservation_id: the service contract makes UNAVAILABLE
    # safe, and a reset (or a per-try timeout, which Envoy retries as a reset) too.
    "writes": {"connect-failure", "refused-stream", "reset", "unavailable"},
    # Anything else only when the request never reached the service.
    "other": {"connect-failure", "refused-stream"},
    "reflection": {"connect-failure", "refused-stream"},
    # Server-streaming reads: no side effects, and Envoy retries a stream only before any of
    # its response has gone downstream.
    "streams": {"connect-failure", "refused-stream", "reset", "unavailable"},
}

# Retried by no route, whatever its class: another try cannot help, it only adds load. Retries
# happen at one layer, the hop next to the failure; a service passes these on as they are.
NEVER_RETRY_ON = {
    "cancelled": "the caller has left",
    "deadline-exceeded": "the caller's time is gone",
}

# The retryOn conditions under which Envoy retries a try that its perTryTimeout cut off. The
# router resets a timed-out try and decides as for a reset (Filter::onPerTryTimeoutCommon calls
# maybeRetryReset(LocalReset); RetryStateImpl::wouldRetryFromReset retries that for reset, 5xx
# and gateway-error, while connect-failure and refused-stream need their own reset reasons).
# The gRPC conditions (unavailable, cancelled, ...) match a grpc-status in response headers, and
# a timed-out try has none. Envoy's docs say as much: router filter, x-envoy-retry-on ("5xx:
# ... or does not respond at all (disconnect/reset/read timeout)"; "reset: ... does not respond
# at all (disconnect/reset/read timeout)"; "gateway-error: similar to 5xx but ... 502, 503, or
# 504") and x-envoy-retry-grpc-on ("the gRPC status code in the response headers"),
# https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter;
# and a timeout of the whole route is never retried (the same page: "Envoy will not retry when
# a request exceeds x-envoy-upstream-rq-timeout-ms ... Use x-envoy-upstream-rq-per-try-timeout-ms
# if you want to retry when individual attempts take too long"). Istio passes HTTPRetry's
# retryOn through as the route's retry_on.
PER_TRY_TIMEOUT_RETRY_ON = {"reset", "5xx", "gateway-error"}
# The classes whose tries may be sent again after a per-try timeout: the earlier try may have
# reached the service and may still be running, which is safe only for a call without side
# effects or an idempotent one. `other` routes have no perTryTimeout at all: with no condition
# that retries it, it only fails the call before its timeout; with one, it re-sends a call that
# is not known to be idempotent.
PER_TRY_TIMEOUT_CLASSES = {"reads", "writes"}

# What a route with no `retries` gets: Istio's default policy (pilot's route/retry package, unless
# meshConfig.defaultHttpRetryPolicy says otherwise). It retries cancelled, so every route here
# says what it retries, or `attempts: 0` to retry nothing.
ISTIO_DEFAULT_ATTEMPTS = 2
ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

# The most calls that one call at the edge may cause at any one service, retries included.
MAX_CALLS_PER_EDGE_CALL = 4
# The route classes a try of each class may call downstream (a read calls reads; a write may
# call reads and writes, as for the timeouts below). Nothing is known about `other` methods, so
# they may call anything; reflection is answered by the server itself.
CALLABLE_CLASSES = {
    "reads": ("reads",),
    "writes": ("reads", "writes"),
    "other": ("reads", "writes", "other"),
    "reflection": (),
    # A stream answers like a read, so it may call reads.
    "streams": ("reads",),
}


def route_class(route: dict) -> str:
    """The retry class a generated route is named for: <service>-<class>[-<version>-pinned]."""
    name = route.get("name", "")
    if name == "reflection":
        return "reflection"
    match = re.fullmatch(r"[a-z0-9-]+?-(reads|writes|streams|other)(-[a-z0-9]+-pinned)?", name)
    return match.group(1) if match else ""


def route_tries(route: dict) -> int:
    """How many times a route may send one call: Istio's `attempts` counts retries (Envoy's
    num_retries), so attempts + 1; a route without `retries` gets Istio's default policy."""
    if "retries" not in route:
        return ISTIO_DEFAULT_ATTEMPTS + 1
    return max((route["retries"] or {}).get("attempts", 0), 0) + 1


def _destination_errors(where: str, destinations: list[dict], vs: Doc, model: Model, subsets: dict) -> list[str]:
    """Each destination is a Service port and a subset a DestinationRule defines; weights add up."""
    errors = []
    if len(destinations) > 1 and sum(d.get("weight", 0) for d in destinations) != 100:
        errors.append(f"{where}: weights add up to {sum(d.get('weight', 0) for d in destinations)}, not 100")
    for destination in destinations:
        dest = destination.get("destination") or {}
        service = model.service_for_host(dest.get("host", ""), vs.namespace)
        if service is None:
            errors.append(f"{where}: destination {dest.get('host')!r} is not a Service")
            continue
        number = (dest.get("port") or {}).get("number")
        if number is not None and number not in [p.get("port") for p in service.spec.get("ports") or []]:
            errors.append(f"{where}: port {number} is not a port of {service}")
        subset = dest.get("subset")
        if subset and subset not in subsets.get((service.namespace, service.name), set()):
            errors.append(f"{where}: subset {subset!r} of {service.name} is defined by no DestinationRule")
    return errors


def crossref_errors(
    docs: list[Doc], *, external_principals: Iterable[str] = (), external_secrets: Iterable[str] = ()
) -> list[str]:
    """What does not fit together: routes to nothing, subsets that select no pod, principals
    no workload runs as, ports not named for their protocol, probes off the gRPC port."""
    model = Model(docs)
    errors: list[str] = []
    external_principals = set(external_principals)
    external_secrets = set(external_secrets)
    objects = {(d.kind, d.namespace, d.name) for d in docs}

    # Services: port names follow Istio's <protocol>[-suffix] and match appProtocol; a gRPC port
    # is named grpc; the selector finds pods, and their container has the target port.
    for service in model.services.values():
        pods = model.pods_of_service(service)
        if not pods:
            errors.append(f"{service}: selector {service.spec.get('selector')} matches no workload")
        for port in service.spec.get("ports") or []:
            name, proto = port.get("name", ""), port.get("appProtocol", "")
            if not proto:
                errors.append(f"{service}: port {name or port.get('port')} has no appProtocol")
            elif name.split("-")[0] != proto:
                errors.append(f"{service}: port {name!r} is not named for its appProtocol {proto!r}")
            target = port.get("targetPort", port.get("port"))
            for pod in pods:
                ports = container_ports(pod)
                if not any(p.get("name") == target or p.get("containerPort") == target for p in ports):
                    errors.append(f"{service}: targetPort {target!r} is no container port of {pod}")
        selected_grpc = any(p.get("name") == "grpc" for pod in pods for p in container_ports(pod))
        if selected_grpc and not any(p.get("appProtocol") == "grpc" for p in service.spec.get("ports") or []):
            errors.append(f"{service}: selects gRPC pods but has no port with appProtocol grpc")

    # Workloads: their ServiceAccount exists; gRPC containers are probed by grpc.health.v1 on the
    # gRPC port; Istio's app/version labels; ConfigMaps and Secrets they read exist.
    for workload in model.workloads:
        spec = pod_spec(workload)
        account = model.service_account_of(workload)
        if (workload.namespace, account) not in model.service_accounts:
            errors.append(f"{workload}: ServiceAccount {account!r} is not defined")
        for container in spec.get("containers") or []:
            grpc_ports = [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == "grpc"]
            if grpc_ports:
                labels = pod_labels(workload)
                for label in ("app", "version"):
                    if label not in labels:
                        errors.append(f"{workload}: pods lack the {label!r} label Istio needs")
                for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                    probe = container.get(probe_name)
                    if not probe:
                        errors.append(f"{workload}: container {container['name']} has no {probe_name}")
                    elif "grpc" not in probe:
                        errors.append(f"{workload}: {probe_name} is not a gRPC health probe")
                    elif probe["grpc"].get("port") not in grpc_ports:
                        errors.append(
                            f"{workload}: {probe_name} probes port {probe['grpc'].get('port')},"
                            f" not the gRPC port {grpc_ports}"
                        )
            for source in container.get("envFrom") or []:
                if (
                    "configMapRef" in source
                    and ("ConfigMap", workload.namespace, source["configMapRef"]["name"]) not in objects
                ):
                    errors.append(f"{workload}: ConfigMap {source['configMapRef']['name']!r} is not defined")
                if "secretRef" in source:
                    secret = source["secretRef"]["name"]
                    if ("Secret", workload.namespace, secret) not in objects and secret not in external_secrets:
                        errors.append(f"{workload}: Secret {secret!r} is not defined")

    # HPAs and PDBs point at something.
    for doc in docs:
        if doc.kind == "HorizontalPodAutoscaler":
            ref = doc.spec.get("scaleTargetRef") or {}
            if (ref.get("kind"), doc.namespace, ref.get("name")) not in objects:
                errors.append(f"{doc}: scales {ref.get('kind')}/{ref.get('name')}, which is not defined")
        if doc.kind == "PodDisruptionBudget":
            selector = (doc.spec.get("selector") or {}).get("matchLabels") or {}
            if not any(w.namespace == doc.namespace and selects(selector, pod_labels(w)) for w in model.workloads):
                errors.append(f"{doc}: selector {selector} matches no workload")

    # DestinationRules: the host is a Service; each subset selects pods of it; mTLS by the mesh.
    subsets: dict[tuple[str, str], set[str]] = {}
    for rule in model.destination_rules:
        service = model.service_for_host(rule.spec.get("host", ""), rule.namespace)
        if service is None:
            errors.append(f"{rule}: host {rule.spec.get('host')!r} is not a Service")
            continue
        if ((rule.spec.get("trafficPolicy") or {}).get("tls") or {}).get("mode") != "ISTIO_MUTUAL":
            errors.append(f"{rule}: trafficPolicy.tls.mode is not ISTIO_MUTUAL")
        pods = model.pods_of_service(service)
        names = subsets.setdefault((service.namespace, service.name), set())
        for subset in rule.spec.get("subsets") or []:
            names.add(subset["name"])
            if not any(selects(subset.get("labels") or {}, pod_labels(p)) for p in pods):
                errors.append(f"{rule}: subset {subset['name']!r} ({subset.get('labels')}) matches no pod of {service}")

    # VirtualServices: mesh hosts are Services, gateway hosts are served by the Gateway; every
    # destination is a Service port and a defined subset; weights add up; retries are safe for
    # the route's methods and fit in its timeout.
    timeouts: dict[str, dict[str, float]] = {}
    for vs in (d for d in docs if d.kind == "VirtualService"):
        if (vs.namespace, vs.name) in model.delegates:
            # A delegate holds destinations only; the root routes that name it carry the
            # match, timeout and retries, and are checked below with its destinations.
            for route in vs.spec.get("http") or []:
                errors.extend(_destination_errors(f"{vs}: route {route.get('name', '(unnamed)')!r}", route.get("route") or [], vs, model, subsets))
            if vs.spec.get("gateways"):
                errors.append(f"{vs}: a delegate (no hosts) names gateways, which Istio ignores")
            if not any((r.get("delegate") or {}).get("name") == vs.name for d in docs if d.kind == "VirtualService" for r in d.spec.get("http") or []):
                errors.append(f"{vs}: a delegate no route delegates to")
            continue
        gateways = vs.spec.get("gateways") or ["mesh"]
        for gateway in gateways:
            if gateway == "mesh":
                for host in vs.spec.get("hosts") or []:
                    if model.service_for_host(host, vs.namespace) is None:
                        errors.append(f"{vs}: host {host!r} is not a Service")
                continue
            gw_ns, _, gw_name = gateway.rpartition("/")
            gw = model.gateways.get((gw_ns or vs.namespace, gw_name))
            if gw is None:
                errors.append(f"{vs}: gateway {gateway!r} is not defined")
                continue
            served = {h.rpartition("/")[2] for s in gw.spec.get("servers") or [] for h in s.get("hosts") or []}
            for host in vs.spec.get("hosts") or []:
                if "*" not in served and host not in served:
                    errors.append(f"{vs}: host {host!r} is not served by {gw}")
        for route in vs.spec.get("http") or []:
            where = f"{vs}: route {route.get('name', '(unnamed)')!r}"
            if "directResponse" in route:
                # The gateway answers it itself (the OpenAPI, the REST paths' first match): no
                # call leaves, so there is nothing to retry or time out, and nowhere to send it.
                if route.get("route") or route.get("delegate") or "retries" in route:
                    errors.append(f"{where}: a directResponse with a route, a delegate or retries")
                continue
            delegate = route.get("delegate")
            if delegate:
                if route.get("route"):
                    errors.append(f"{where}: has both delegate and route")
                if not model.route_destinations(route, vs.namespace):
                    errors.append(f"{where}: delegates to {delegate.get('name')!r}, which is not a delegate VirtualService")
            else:
                errors.extend(_destination_errors(where, route.get("route") or [], vs, model, subsets))
            klass = route_class(route)
            retries = route.get("retries") or {}
            attempts = retries.get("attempts", 0)
            retry_on = set(filter(None, (retries.get("retryOn") or "").split(",")))
            if not klass:
                errors.append(f"{where}: not named for a retry class (reads, writes, streams, other)")
            if "retries" not in route:
                errors.append(
                    f"{where}: has no retries, so Istio's default policy applies ({ISTIO_DEFAULT_ATTEMPTS} retries"
                    f" on {ISTIO_DEFAULT_RETRY_ON}); `attempts: 0` retries nothing"
                )
            elif klass and attempts > 0:
                if not retry_on:
                    errors.append(f"{where}: retries without retryOn fall back to Istio's defaults")
                for condition in sorted(retry_on & NEVER_RETRY_ON.keys()):
                    errors.append(f"{where}: retryOn {condition}: {NEVER_RETRY_ON[condition]}, so no route retries it")
                unsafe = retry_on - SAFE_RETRY_ON[klass] - NEVER_RETRY_ON.keys()
                if unsafe:
                    errors.append(f"{where}: retryOn {sorted(unsafe)} is not safe for {klass}")
            # Istio drops the whole policy, perTryTimeout included, when attempts is 0.
            per_try = retries.get("perTryTimeout") if attempts > 0 else None
            if per_try and klass and klass not in PER_TRY_TIMEOUT_CLASSES:
                errors.append(
                    f"{where}: perTryTimeout {per_try} on a route of class {klass} (not known to be idempotent):"
                    " unless retryOn retries it, it only fails the call early, and if it does, a call that may"
                    " have reached the service is sent again"
                )
            elif per_try and not (retry_on or set(ISTIO_DEFAULT_RETRY_ON.split(","))) & PER_TRY_TIMEOUT_RETRY_ON:
                errors.append(
                    f"{where}: perTryTimeout {per_try} is never retried (retryOn has none of"
                    f" {', '.join(sorted(PER_TRY_TIMEOUT_RETRY_ON))}), so it only fails the call before its timeout"
                )
            # The route's timeout covers all its tries: attempts + 1 of them.
            # A stream's route has none (the caller's deadline ends it): the chart leaves the
            # field out for its 0s, since the VirtualService CRD refuses a timeout under 1ms.
            if "timeout" not in route:
                if klass != "streams":
                    errors.append(f"{where}: has no timeout")
            elif per_try and seconds(per_try) * (attempts + 1) > seconds(route["timeout"]):
                errors.append(
                    f"{where}: {attempts + 1} tries (attempts {attempts} + 1) x perTryTimeout {per_try}"
                    f" exceed timeout {route['timeout']}"
                )
            if "mesh" in gateways and klass in ("reads", "writes"):
                service = model.service_for_host((vs.spec.get("hosts") or [""])[0], vs.namespace)
                if service is not None:
                    slot = timeouts.setdefault(service.name, {})
                    slot[klass] = max(slot.get(klass, 0), seconds(route.get("timeout", "0s")))
                    slot[f"{klass}-try"] = min(
                        slot.get(f"{klass}-try", float("inf")),
                        seconds(per_try or route.get("timeout", "0s")),
                    )

    # AuthorizationPolicies: each principal is a ServiceAccount that a workload runs as (or an
    # expected outside identity, the ingress gateway's); selectors and ports fit a workload.
    used_accounts = {(w.namespace, model.service_account_of(w)) for w in model.workloads}
    callers: dict[str, set[str]] = {}
    for policy in (d for d in docs if d.kind == "AuthorizationPolicy"):
        selector = (policy.spec.get("selector") or {}).get("matchLabels") or {}
        targets = [w for w in model.workloads if w.namespace == policy.namespace and selects(selector, pod_labels(w))]
        if selector and policy.namespace == model.namespace and not targets:
            errors.append(f"{policy}: selector {selector} matches no workload")
        for rule in policy.spec.get("rules") or []:
            for source in rule.get("from") or []:
                for principal in (source.get("source") or {}).get("principals") or []:
                    match = re.fullmatch(r"[^/]+/ns/([^/]+)/sa/([^/]+)", principal)
                    if principal in external_principals:
                        continue
                    if not match:
                        errors.append(f"{policy}: principal {principal!r} is not <trust domain>/ns/<ns>/sa/<account>")
                    elif (match.group(1), match.group(2)) not in model.service_accounts:
                        errors.append(f"{policy}: principal {principal!r} is no ServiceAccount defined here")
                    elif (match.group(1), match.group(2)) not in used_accounts:
                        errors.append(f"{policy}: principal {principal!r} is a ServiceAccount no workload runs as")
                    else:
                        for target in targets:
                            callers.setdefault(pod_labels(target).get("app", ""), set()).add(match.group(2))
            for to in rule.get("to") or []:
                for port in (to.get("operation") or {}).get("ports") or []:
                    for target in targets:
                        if int(port) not in [p.get("containerPort") for p in container_ports(target)]:
                            errors.append(f"{policy}: port {port} is no container port of {target}")

    # A caller's try must outlast its callee's whole route, or the callee's own retries are cut off.
    for callee, accounts in callers.items():
        for caller in accounts:
            if caller not in timeouts or callee not in timeouts:
                continue
            # A read calls reads; a write may call reads and writes.
            for klass, callee_classes in (("reads", ("reads",)), ("writes", ("reads", "writes"))):
                try_budget = timeouts[caller].get(f"{klass}-try")
                callee_timeout = max(timeouts[callee].get(k, 0) for k in callee_classes)
                if try_budget is not None and try_budget <= callee_timeout:
                    errors.append(
                        f"{caller} {klass}: a try ({try_budget}s: its perTryTimeout, else its timeout) does not"
                        f" outlast {callee}'s route timeout {callee_timeout}s"
                    )

    # Retries multiply along the calls: at most MAX_CALLS_PER_EDGE_CALL at any service.
    rows, amplification_problems = edge_calls(docs, model)
    return errors + amplification_problems + amplification_errors(rows)


# --------------------------------------------------------------------------- retry amplification


@dataclass
class EdgeCalls:
    """What one call at the edge on one route can cause: calls per service, retries included."""

    route: str  # the edge route's name
    calls: dict[str, int]


def call_graph(docs: list[Doc], model: Model | None = None) -> dict[str, set[str]]:
    """Service -> the Services it may call, from the AuthorizationPolicies. They model the calls
    honestly for a worst case: the namespace denies by default, so every call a service makes is
    one a policy allows (the mesh VirtualServices say how a call is routed, not who makes it).
    Only callees with a mesh VirtualService count: PostgreSQL and NATS are TCP, not retried by
    the mesh. Services are found through the workloads they select, on both ends."""
    model = model or Model(docs)
    routed = {
        service.name
        for vs in docs
        if vs.kind == "VirtualService" and "mesh" in (vs.spec.get("gateways") or ["mesh"])
        for host in vs.spec.get("hosts") or []
        if (service := model.service_for_host(host, vs.namespace)) is not None
    }
    services_of: dict[int, set[str]] = {}
    for service in model.services.values():
        for pod in model.pods_of_service(service):
            services_of.setdefault(id(pod), set()).add(service.name)
    graph: dict[str, set[str]] = {}
    for policy in (d for d in docs if d.kind == "AuthorizationPolicy" and d.spec.get("action", "ALLOW") == "ALLOW"):
        selector = (policy.spec.get("selector") or {}).get("matchLabels") or {}
        targets = [w for w in model.workloads if w.namespace == policy.namespace and selects(selector, pod_labels(w))]
        callees = {name for t in targets for name in services_of.get(id(t), ()) if name in routed}
        for rule in policy.spec.get("rules") or []:
            for source in rule.get("from") or []:
                for principal in (source.get("source") or {}).get("principals") or []:
                    match = re.fullmatch(r"[^/]+/ns/([^/]+)/sa/([^/]+)", principal)
                    if not match:
                        continue
                    for workload in model.workloads:
                        if (workload.namespace, model.service_account_of(workload)) == match.groups():
                            for caller in services_of.get(id(workload), ()):
                                graph.setdefault(caller, set()).update(callees)
    return graph


def edge_calls(docs: list[Doc], model: Model | None = None) -> tuple[list[EdgeCalls], list[str]]:
    """For one call at the edge, on each route of the VirtualServices bound to a gateway: the
    worst-case number of calls it causes at each service. A route sends a call up to
    route_tries times; each try at a service may call every service it may call (call_graph),
    once, in the worst route class its own class may call (CALLABLE_CLASSES), whose tries
    multiply in turn. Paths add up: a service reached along two paths gets the calls of both.
    Every try counts, even one retried before it reached the service (connect-failure): a bound
    need not be tight. It is a worst case in another way too: by the services' rule, a service
    answers a downstream UNAVAILABLE (which the downstream's own route already retried) with
    x-envoy-ratelimited set, which Envoy's router does not retry, so the tries of a whole path
    multiply only when each service fails for its own reasons after its downstream calls."""
    model = model or Model(docs)
    graph = call_graph(docs, model)
    tries: dict[tuple[str, str], int] = {}
    entries: list[tuple[str, str, set[str], int]] = []
    for vs in (d for d in docs if d.kind == "VirtualService" and (d.namespace, d.name) not in model.delegates):
        gateways = vs.spec.get("gateways") or ["mesh"]
        for route in vs.spec.get("http") or []:
            klass = route_class(route)
            services = {
                service.name
                for d in model.route_destinations(route, vs.namespace)
                if (service := model.service_for_host((d.get("destination") or {}).get("host", ""), vs.namespace))
            }
            if not klass or not services:
                continue  # reported by crossref_errors
            if "mesh" in gateways:
                for name in services:
                    tries[(name, klass)] = max(tries.get((name, klass), 0), route_tries(route))
            if any(g != "mesh" for g in gateways):
                entries.append((route.get("name", ""), klass, services, route_tries(route)))

    cycles: set[str] = set()

    def below(service: str, klass: str, path: tuple[str, ...]) -> dict[str, int]:
        """Calls that one try arriving at `service` in route class `klass` causes further down."""
        total: dict[str, int] = {}
        for callee in sorted(graph.get(service, ())):
            if callee in path + (service,):
                cycles.add(" -> ".join(path + (service, callee)))
                continue
            # The worst class this try may call there, service by service (an upper bound).
            worst: dict[str, int] = {}
            for callee_class in CALLABLE_CLASSES.get(klass, ()):
                if (callee, callee_class) not in tries:
                    continue
                n = tries[(callee, callee_class)]
                counts = {callee: n}
                for name, m in below(callee, callee_class, path + (service,)).items():
                    counts[name] = counts.get(name, 0) + n * m
                for name, m in counts.items():
                    worst[name] = max(worst.get(name, 0), m)
            for name, m in worst.items():
                total[name] = total.get(name, 0) + m
        return total

    rows = []
    for name, klass, services, n in entries:
        calls: dict[str, int] = {}
        # With several destination Services, all tries may go to any one of them.
        for service in sorted(services):
            counts = {service: n}
            for callee, m in below(service, klass, ()).items():
                counts[callee] = counts.get(callee, 0) + n * m
            for callee, m in counts.items():
                calls[callee] = max(calls.get(callee, 0), m)
        rows.append(EdgeCalls(name, calls))
    problems = [
        f"the allowed calls form a cycle ({cycle}): the calls one edge call causes have no bound here"
        for cycle in sorted(cycles)
    ]
    return rows, problems


def amplification_errors(rows: list[EdgeCalls]) -> list[str]:
    return [
        f"one edge call on route {row.route!r} can cause {n} calls at {service}, over the bound of"
        f" {MAX_CALLS_PER_EDGE_CALL} (tries multiply along the calls: "
        + ", ".join(f"{s} {c}" for s, c in sorted(row.calls.items()))
        + ")"
        for row in rows
        for service, n in sorted(row.calls.items())
        if n > MAX_CALLS_PER_EDGE_CALL
    ]


def amplification_report(rows: list[EdgeCalls]) -> str:
    services = sorted({s for row in rows for s in row.calls})
    width = max([len("edge route"), *(len(row.route) for row in rows)])
    columns = [max(len(s), 5) for s in services]

    def line(label: str, values) -> str:
        return f"{label:{width}} " + " ".join(f"{v:>{c}}" for v, c in zip(values, columns, strict=True))

    lines = [line("edge route", services)]
    lines += [line(row.route, [row.calls.get(s, "-") for s in services]) for row in rows]
    lines.append(line("worst", [max(row.calls.get(s, 0) for row in rows) for s in services]))
    lines.append(line("bound", [MAX_CALLS_PER_EDGE_CALL] * len(services)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- budget


@dataclass
class Usage:
    workload: str
    replicas: int
    cpu_milli: int  # per pod, sidecar included
    memory: int  # bytes per pod, sidecar included


def requests(docs: list[Doc], *, namespace: str = NAMESPACE) -> tuple[list[Usage], list[str]]:
    """What each long-running workload of the namespace requests at its idle replica count
    (an HPA's minimum), with its Istio sidecar as sized by its annotations."""
    namespace_doc = next((d for d in docs if d.kind == "Namespace" and d.name == namespace), None)
    namespace_injects = ((namespace_doc.body["metadata"].get("labels") or {}) if namespace_doc else {}).get(
        "istio-injection"
    ) == "enabled"
    hpa_min = {
        (d.namespace, d.spec["scaleTargetRef"]["name"]): d.spec.get("minReplicas", 1)
        for d in docs
        if d.kind == "HorizontalPodAutoscaler"
    }
    rows, errors = [], []
    for workload in workloads(docs):
        if workload.namespace != namespace or is_hook(workload) or workload.kind not in ("Deployment", "StatefulSet"):
            continue
        replicas = workload.spec.get("replicas", 1)
        if (workload.namespace, workload.name) in hpa_min:
            replicas = max(replicas if "replicas" in workload.spec else 1, hpa_min[(workload.namespace, workload.name)])
        spec = pod_spec(workload)
        cpu = mem = 0
        for container in spec.get("containers") or []:
            req = (container.get("resources") or {}).get("requests") or {}
            if "cpu" not in req or "memory" not in req:
                errors.append(f"{workload}: container {container['name']} does not request both cpu and memory")
            cpu += cpu_milli(req.get("cpu", "0"))
            mem += memory_bytes(req.get("memory", "0"))
        inject = pod_labels(workload).get("sidecar.istio.io/inject")
        annotations = (pod_template(workload).get("metadata") or {}).get("annotations") or {}
        if annotations.get("inject.istio.io/templates") == "gateway":
            pass  # a gateway: its container is the proxy, sized by its own resources
        elif inject == "true" or (namespace_injects and inject != "false"):
            if "sidecar.istio.io/proxyCPU" not in annotations or "sidecar.istio.io/proxyMemory" not in annotations:
                errors.append(
                    f"{workload}: gets a sidecar but does not size it (sidecar.istio.io/proxyCPU, proxyMemory)"
                )
            cpu += cpu_milli(annotations.get("sidecar.istio.io/proxyCPU", "0"))
            mem += memory_bytes(annotations.get("sidecar.istio.io/proxyMemory", "0"))
        rows.append(Usage(f"{workload.kind}/{workload.name}", replicas, cpu, mem))
    return rows, errors


def split_observability(docs: list[Doc], rows: list[Usage]) -> tuple[list[Usage], list[Usage]]:
    """The rows of the shop, and those of the observability stack (its pods' component label)."""
    stack = {
        f"{w.kind}/{w.name}"
        for w in workloads(docs)
        if pod_labels(w).get("app.kubernetes.io/component") == OBSERVABILITY_COMPONENT
    }
    return [r for r in rows if r.workload not in stack], [r for r in rows if r.workload in stack]


def _total(rows: list[Usage]) -> tuple[int, int]:
    return sum(r.cpu_milli * r.replicas for r in rows), sum(r.memory * r.replicas for r in rows)


def budget_report(rows: list[Usage], stack: list[Usage] = ()) -> str:
    """The shop's rows against its budget; then, when there are any, the observability
    stack's as an extra of their own, against theirs."""
    lines = [f"{'workload':36} {'pods':>4} {'cpu':>7} {'memory':>8}"]
    for row in [*rows, *stack]:
        lines.append(
            f"{row.workload:36} {row.replicas:>4} {row.cpu_milli * row.replicas:>6}m"
            f" {row.memory * row.replicas // 2**20:>6}Mi"
        )
    cpu, mem = _total(rows)
    lines.append(f"{'total (sidecars included)':36} {sum(r.replicas for r in rows):>4} {cpu:>6}m {mem // 2**20:>6}Mi")
    lines.append(f"{'budget':36} {'':>4} {BUDGET_CPU_MILLI:>6}m {BUDGET_MEMORY // 2**20:>6}Mi")
    if stack:
        cpu, mem = _total(stack)
        lines.append(f"{'+ observability stack (extra)':36} {sum(r.replicas for r in stack):>4} {cpu:>6}m {mem // 2**20:>6}Mi")
        lines.append(
            f"{'  its own budget':36} {'':>4} {OBSERVABILITY_BUDGET_CPU_MILLI:>6}m"
            f" {OBSERVABILITY_BUDGET_MEMORY // 2**20:>6}Mi"
        )
    return "\n".join(lines)


def budget_errors(rows: list[Usage], stack: list[Usage] = ()) -> list[str]:
    errors = []
    for what, part, cpu_budget, mem_budget in (
        ("the namespace", rows, BUDGET_CPU_MILLI, BUDGET_MEMORY),
        ("the observability stack", stack, OBSERVABILITY_BUDGET_CPU_MILLI, OBSERVABILITY_BUDGET_MEMORY),
    ):
        cpu, mem = _total(part)
        if cpu > cpu_budget:
            errors.append(f"{what} requests {cpu}m CPU, over the budget of {cpu_budget}m")
        if mem > mem_budget:
            errors.append(f"{what} requests {mem // 2**20}Mi, over the budget of {mem_budget // 2**20}Mi")
    return errors


def main(argv: list[str]) -> int:
    """For check-deploy.sh: `deploylib.py budget DIR`, the request table of a kustomization;
    `deploylib.py amplification DIR...`, the calls per edge call of kustomizations together."""
    if len(argv) >= 3 and argv[1] == "amplification":
        docs = [doc for directory in argv[2:] for doc in split_stream(kustomize_build(Path(directory)), directory)]
        rows, problems = edge_calls(docs)
        print(amplification_report(rows))
        for error in problems + amplification_errors(rows):
            print(f"error: {error}")
        return 1 if problems or amplification_errors(rows) else 0
    if len(argv) != 3 or argv[1] not in ("budget", "chart-budget"):
        print(
            "usage: deploylib.py budget KUSTOMIZATION_DIR | chart-budget VALUES_FILE | amplification KUSTOMIZATION_DIR...",
            file=sys.stderr,
        )
        return 2
    if argv[1] == "chart-budget":
        docs = split_stream(helm_template([Path(argv[2])]).stdout, argv[2])
    else:
        docs = split_stream(kustomize_build(Path(argv[2])), argv[2])
    all_rows, errors = requests(docs)
    rows, stack = split_observability(docs, all_rows)
    print(budget_report(rows, stack))
    for error in errors + budget_errors(rows, stack):
        print(f"error: {error}")
    return 1 if errors or budget_errors(rows, stack) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
