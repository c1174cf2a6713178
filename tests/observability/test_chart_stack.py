"""The chart's observability stack (helm/meshmart, observability.enabled) is configured for
real, not only valid YAML: the chart rendered with ci/observability-values.yaml, and from it

- Prometheus's config as its pod mounts it, checked by promtool (`check config`, which loads
  the rule files it names too): the rules it loads are the committed alerts.yaml, byte for byte;
- Grafana's provisioning: a datasource for every uid the committed dashboards reference, each
  pointing at a Service port of the stack; the dashboards ConfigMap is the committed JSON, at
  the path the dashboards provider reads;
- the collector's config (and Jaeger's, the same format): every pipeline names receivers,
  processors and exporters that are defined, traces go to Jaeger and logs to Loki's OTLP
  endpoint, at Service ports that exist; and both are accepted by `validate` of the Jaeger v2
  binary the test suite builds (an OpenTelemetry Collector distribution with the same otlp
  receiver, memory_limiter, batch, otlp and otlphttp exporters; the collector's health_check
  extension, which it lacks, checked as its successor healthcheckv2);
- the services export to the collector, and the Telemetry names the provider that
  docs/deploy.md has istiod define, with the collector's address.

Running otelcol-contrib, Grafana or Loki themselves is left out (nothing of theirs is built here):
the collector's components are checked at the versions Jaeger 2.13 builds them (collector
v0.140), not the image's.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import stack
from conftest import need

CHART = stack.ROOT / "helm" / "meshmart"
VALUES = CHART / "ci" / "observability-values.yaml"
NAMESPACE = "meshmart"
PREFIX = "meshmart"  # the release's fullname: its parts are <fullname>-<part>


@pytest.fixture(scope="module")
def helm() -> Path:
    return need(stack.ROOT / ".tools" / "bin" / "helm", "run scripts/install-tools.sh")


def render(helm: Path, *args: str) -> list[dict]:
    cmd = [str(helm), "template", "meshmart", str(CHART), "--namespace", NAMESPACE, "--values", str(VALUES), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def docs(helm) -> list[dict]:
    return render(helm)


def find(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def mounts(deployment: dict) -> dict[str, tuple[dict, dict]]:
    """mountPath -> (the volume mount, the volume) of a Deployment's one container."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container(deployment).get("volumeMounts", [])}


def mounted_file(docs: list[dict], deployment: dict, path: str) -> str:
    """The content a Deployment's container sees at `path`, from the ConfigMap mounted there
    (a whole ConfigMap in the file's folder, or one mounted by subPath or items)."""
    for mount_path, (mount, volume) in sorted(mounts(deployment).items(), key=lambda m: -len(m[0])):
        if not path.startswith(mount_path.rstrip("/") + "/"):
            continue
        rest = path[len(mount_path.rstrip("/")) + 1 :]
        if "subPath" in mount:
            rest = f"{mount['subPath']}/{rest}"
        source = volume.get("configMap")
        assert source, f"{path} is mounted from {volume}, not a ConfigMap"
        cm = find(docs, "ConfigMap", source["name"])
        keys = {i["path"]: i["key"] for i in source.get("items", [])} or {k: k for k in {**cm.get("data", {}), **cm.get("binaryData", {})}}
        assert rest in keys, f"{path}: {rest!r} is not in ConfigMap {source['name']} ({sorted(keys)})"
        key = keys[rest]
        if key in cm.get("binaryData", {}):
            return base64.b64decode(cm["binaryData"][key]).decode()
        return cm["data"][key]
    raise AssertionError(f"nothing is mounted at {path} in {deployment['metadata']['name']}")


def service_ports(docs: list[dict]) -> set[tuple[str, int]]:
    return {
        (d["metadata"]["name"], p["port"]) for d in docs if d["kind"] == "Service" for p in d["spec"]["ports"]
    }


def host_port(url: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?:https?://)?([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)(/.*)?", url)
    assert m, f"not host:port: {url}"
    return m.group(1), int(m.group(2))


# --------------------------------------------------------------------------- Prometheus


def prometheus_files(docs: list[dict], workdir: Path) -> tuple[Path, str]:
    """Prometheus's config and rules as its pod sees them, written under workdir with the
    in-pod paths rewritten; returns the config path and the rules' text."""
    deployment = find(docs, "Deployment", f"{PREFIX}-prometheus")
    args = container(deployment)["args"]
    (config_arg,) = [a for a in args if a.startswith("--config.file=")]
    config_path = config_arg.split("=", 1)[1]
    config = yaml.safe_load(mounted_file(docs, deployment, config_path))
    rules_text = ""
    rewritten = []
    for i, rule_file in enumerate(config.get("rule_files", [])):
        text = mounted_file(docs, deployment, rule_file)
        rules_text += text
        local = workdir / f"rules-{i}.yaml"
        local.write_text(text)
        rewritten.append(str(local))
    config["rule_files"] = rewritten
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, rules_text


def promtool_check_config(promtool: Path, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_prometheus_config(docs, promtool, tmp_path):
    path, _ = prometheus_files(docs, tmp_path)
    run = promtool_check_config(promtool, path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {path} is valid prometheus config file syntax" in run.stdout, run.stdout
    # The rule file it loads, checked by promtool with it: the three alerts.
    assert "SUCCESS: 3 rules found" in run.stdout, run.stdout


BROKEN_PROMETHEUS = {
    "relabel action": lambda c: c["scrape_configs"][0]["relabel_configs"][0].update(action="kepp"),
    # promtool parses the Kubernetes service discovery it would run (this build has it).
    "kubernetes_sd role": lambda c: c["scrape_configs"][0]["kubernetes_sd_configs"][0].update(role="podd"),
    "rule file": lambda c: c["rule_files"].append("/nonexistent/alerts.yaml"),
}


@pytest.mark.parametrize("what", BROKEN_PROMETHEUS)
def test_the_check_rejects_a_broken_prometheus_config(docs, promtool, tmp_path, what):
    path, _ = prometheus_files(docs, tmp_path)
    config = yaml.safe_load(path.read_text())
    BROKEN_PROMETHEUS[what](config)
    path.write_text(yaml.safe_dump(config))
    run = promtool_check_config(promtool, path)
    assert run.returncode != 0, run.stdout


def test_the_rules_prometheus_loads_are_the_committed_alerts(docs, tmp_path):
    _, rules = prometheus_files(docs, tmp_path)
    assert rules == stack.ALERTS.read_text()


def test_prometheus_scrapes_the_pods_where_their_annotations_say(docs, tmp_path):
    """The services' pods ask to be scraped (Istio's injection points the annotations at the
    sidecar's merged endpoint); Prometheus keeps such pods of the release namespace only, and
    may list them there (a Role, no ClusterRole)."""
    path, _ = prometheus_files(docs, tmp_path)
    config = yaml.safe_load(path.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "pods"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == [NAMESPACE]
    keep = job["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] and keep["action"] == "keep"
    services = [d for d in docs if d["kind"] == "Deployment" and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "service"]
    assert len(services) >= 8
    for d in services:
        assert d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = find(docs, "Role", f"{PREFIX}-prometheus")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = find(docs, "RoleBinding", f"{PREFIX}-prometheus")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{PREFIX}-prometheus", "namespace": NAMESPACE}]


# --------------------------------------------------------------------------- Grafana


def referenced_uids(node) -> set[str]:
    """Every datasource uid a dashboard references, at any depth (panels, targets, variables)."""
    found = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("uid"):
            found.add(ds["uid"])
        for value in node.values():
            found |= referenced_uids(value)
    elif isinstance(node, list):
        for item in node:
            found |= referenced_uids(item)
    return found


def grafana(docs: list[dict]) -> dict:
    return find(docs, "Deployment", f"{PREFIX}-grafana")


def provisioning_dir(deployment: dict) -> str:
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    return env["GF_PATHS_PROVISIONING"]


def test_grafana_has_a_datasource_for_every_uid_the_dashboards_use(docs):
    deployment = grafana(docs)
    datasources = yaml.safe_load(mounted_file(docs, deployment, f"{provisioning_dir(deployment)}/datasources/datasources.yaml"))
    assert datasources["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    assert {d["type"] for d in by_uid.values()} == {"prometheus", "jaeger", "loki"}
    assert [d["uid"] for d in by_uid.values() if d.get("isDefault")] == ["prometheus"]
    used = set()
    for path in sorted(stack.DASHBOARDS.glob("*.json")):
        uids = referenced_uids(yaml.safe_load(path.read_text()))
        assert uids, path.name
        used |= uids
    assert used <= set(by_uid), f"the dashboards use {sorted(used - set(by_uid))}, which no datasource is"
    # Each datasource is a Service port of the stack.
    ports = service_ports(docs)
    for uid, ds in by_uid.items():
        assert host_port(ds["url"]) in ports, f"{uid}: {ds['url']} is no Service port"
    # The Jaeger datasource's trace-to-logs link names a datasource that exists.
    assert by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] in by_uid


def test_grafana_provisions_the_committed_dashboards(docs):
    deployment = grafana(docs)
    providers = yaml.safe_load(mounted_file(docs, deployment, f"{provisioning_dir(deployment)}/dashboards/dashboards.yaml"))
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    for path in sorted(stack.DASHBOARDS.glob("*.json")):
        assert mounted_file(docs, deployment, f"{provider['options']['path']}/{path.name}") == path.read_text(), path.name
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/") and (stack.DASHBOARDS / Path(home).name).exists()


def test_grafana_has_no_password_in_the_values(docs, helm):
    """The admin's password is read from a Secret file; the chart generates it (a new one each
    render here, where no earlier install can be looked up), or names the one given."""
    deployment = grafana(docs)
    env = {e["name"]: e for e in container(deployment)["env"]}
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    path = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]["value"]
    mount, volume = mounts(deployment)[str(Path(path).parent)]
    secret = find(docs, "Secret", volume["secret"]["secretName"])
    password = base64.b64decode(secret["data"]["admin-password"]).decode()
    assert len(password) == 32 and password.isalnum()
    assert password not in VALUES.read_text() + (CHART / "values.yaml").read_text()
    given = render(helm, "--set", "observability.grafana.adminExistingSecret=grafana-admin")
    assert not [d for d in given if d["kind"] == "Secret" and "grafana" in d["metadata"]["name"]]
    assert mounts(grafana(given))[str(Path(path).parent)][1]["secret"]["secretName"] == "grafana-admin"


# --------------------------------------------------------------------------- the collector and Jaeger


def pipeline_errors(config: dict) -> list[str]:
    """What an OpenTelemetry Collector config (the collector's, Jaeger v2's) names and does not
    define: components of pipelines, and the service's extensions."""
    errors = []
    service = config.get("service") or {}
    for extension in service.get("extensions") or []:
        if extension not in (config.get("extensions") or {}):
            errors.append(f"service.extensions: {extension!r} is not defined")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        errors.append("no pipelines")
    for name, pipeline in pipelines.items():
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            errors.append(f"pipeline {name}: needs receivers and exporters")
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section) or []:
                if component not in (config.get(section) or {}):
                    errors.append(f"pipeline {name}: {section[:-1]} {component!r} is not defined")
    return errors


def collector_config(docs: list[dict]) -> dict:
    deployment = find(docs, "Deployment", f"{PREFIX}-otel-collector")
    (arg,) = [a for a in container(deployment)["args"] if a.startswith("--config=")]
    return yaml.safe_load(mounted_file(docs, deployment, arg.split("=", 1)[1]))


def jaeger_config(docs: list[dict]) -> dict:
    deployment = find(docs, "Deployment", f"{PREFIX}-jaeger")
    (arg,) = [a for a in container(deployment)["args"] if a.startswith("--config=")]
    return yaml.safe_load(mounted_file(docs, deployment, arg.split("=", 1)[1]))


def test_every_collector_pipeline_names_defined_components(docs):
    config = collector_config(docs)
    assert not pipeline_errors(config), pipeline_errors(config)
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "logs"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        # memory_limiter first, as the collector's docs ask.
        assert pipeline["processors"][0] == "memory_limiter" and "batch" in pipeline["processors"]
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_the_collector_sends_traces_to_jaeger_and_logs_to_loki(docs):
    config = collector_config(docs)
    ports = service_ports(docs)
    (traces,) = config["service"]["pipelines"]["traces"]["exporters"]
    assert traces.split("/")[0] == "otlp"
    assert host_port(config["exporters"][traces]["endpoint"]) == (f"{PREFIX}-jaeger", 4317) in ports
    (logs,) = config["service"]["pipelines"]["logs"]["exporters"]
    assert logs.split("/")[0] == "otlphttp"
    endpoint = config["exporters"][logs]["endpoint"]
    assert endpoint.endswith("/otlp"), "Loki takes OTLP at /otlp (the exporter adds /v1/logs)"
    assert host_port(endpoint) == (f"{PREFIX}-loki", 3100) in ports
    # Jaeger receives OTLP/gRPC on the port the collector sends to, into its storage.
    jaeger = jaeger_config(docs)
    assert not pipeline_errors(jaeger), pipeline_errors(jaeger)
    assert jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] in jaeger["extensions"]["jaeger_storage"]["backends"]


def test_the_pipeline_check_finds_what_is_not_defined(docs):
    config = collector_config(docs)
    config["service"]["pipelines"]["logs"]["exporters"] = ["otlphttp/lokki"]
    config["service"]["pipelines"]["traces"]["processors"] = ["memory_limiter", "batchh"]
    config["service"]["extensions"] = ["health_check", "pprof"]
    errors = pipeline_errors(config)
    assert len(errors) == 3 and any("otlphttp/lokki" in e for e in errors) and any("batchh" in e for e in errors)


@pytest.fixture(scope="module")
def jaeger() -> Path:
    return need(stack.BIN / "jaeger", "run scripts/install-go-tools.sh jaeger")


def otelcol_validate(jaeger: Path, config: dict, workdir: Path) -> subprocess.CompletedProcess:
    """`validate` of the Jaeger v2 binary, an OpenTelemetry Collector distribution: it builds
    the configuration with the real components (their config structs reject unknown keys, each
    validates its values) and the pipelines (each component must support its data type),
    without starting anything. The pod's address is what the kubelet would give it."""
    path = workdir / "otelcol.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [str(jaeger), "validate", f"--config=file:{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "POD_IP": "127.0.0.1"},
    )


def as_jaeger_components(config: dict) -> dict:
    """The collector's config with its one component that the Jaeger distribution lacks, the
    health_check extension, as healthcheckv2, which takes health_check's settings as they are
    (its legacy mode). Receivers, processors, exporters and pipelines stay the collector's."""
    config = copy.deepcopy(config)
    config["extensions"]["healthcheckv2"] = config["extensions"].pop("health_check")
    config["service"]["extensions"] = [
        "healthcheckv2" if e == "health_check" else e for e in config["service"]["extensions"]
    ]
    return config


def test_a_collector_accepts_the_collector_config(docs, jaeger, tmp_path):
    run = otelcol_validate(jaeger, as_jaeger_components(collector_config(docs)), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_jaeger_accepts_the_jaeger_config(docs, jaeger, tmp_path):
    run = otelcol_validate(jaeger, jaeger_config(docs), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


BROKEN_COLLECTOR = {
    "unknown key": lambda c: c["exporters"]["otlp/jaeger"].update(endpointt="x"),
    "wrong value": lambda c: c["processors"]["memory_limiter"].update(limit_percentage=180),
    "undefined exporter": lambda c: c["service"]["pipelines"]["logs"].update(exporters=["otlphttp/lokki"]),
}


@pytest.mark.parametrize("what", BROKEN_COLLECTOR)
def test_the_collector_check_rejects_a_broken_config(docs, jaeger, tmp_path, what):
    config = as_jaeger_components(collector_config(docs))
    BROKEN_COLLECTOR[what](config)
    run = otelcol_validate(jaeger, config, tmp_path)
    assert run.returncode != 0, f"validate accepted a config with {what}"


# --------------------------------------------------------------------------- the services and the mesh


def test_the_services_and_the_mesh_send_to_the_collector(docs):
    ports = service_ports(docs)
    configs = [d for d in docs if d["kind"] == "ConfigMap" and "GRPC_ADDR" in (d.get("data") or {})]
    assert len(configs) >= 7
    for cm in configs:
        assert host_port(cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]) == (f"{PREFIX}-otel-collector", 4317) in ports
    telemetry = find(docs, "Telemetry", PREFIX)
    (provider,) = telemetry["spec"]["tracing"][0]["providers"]
    assert provider["name"] == "meshmart-otel"
    overrides = telemetry["spec"]["metrics"][0]["overrides"][0]["tagOverrides"]
    assert overrides == {"request_operation": {"value": "request.url_path"}}
    # docs/deploy.md gives istiod the provider the Telemetry names, at the collector's address.
    deploy = (stack.ROOT / "docs" / "deploy.md").read_text()
    fqdn = f"{PREFIX}-otel-collector.{NAMESPACE}.svc.cluster.local"
    for text in (
        "meshConfig.extensionProviders[0].name=meshmart-otel",
        f"meshConfig.extensionProviders[0].opentelemetry.service={fqdn}",
        "meshConfig.extensionProviders[0].opentelemetry.port=4317",
    ):
        assert text in deploy, text


def test_the_stack_pods_are_restricted_and_out_of_the_mesh(docs):
    stack_deployments = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "observability"
    ]
    assert {d["metadata"]["name"] for d in stack_deployments} == {
        f"{PREFIX}-{p}" for p in ("otel-collector", "jaeger", "prometheus", "loki", "grafana")
    }
    for d in stack_deployments:
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
        sc = pod["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        c = container(d)
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
        assert csc["capabilities"] == {"drop": ["ALL"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in c, f"{d['metadata']['name']}: {probe}"
        assert re.fullmatch(r"\S+:\d+\.\d+\.\d+", c["image"]) or re.fullmatch(r"\S+:v\d+\.\d+\.\d+", c["image"]), c["image"]
        # A NetworkPolicy guards it: no sidecar, so no AuthorizationPolicy does.
        app = pod["metadata"]["labels"]["app"]
        assert [n for n in docs if n["kind"] == "NetworkPolicy" and n["spec"]["podSelector"]["matchLabels"] == {"app": app}]


def test_the_stack_is_off_by_default(helm):
    cmd = [str(helm), "template", "meshmart", str(CHART), "--namespace", NAMESPACE, "--set", "image.local=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert not [d for d in docs if (d.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component") == "observability"]
    assert not [d for d in docs if d["kind"] in ("Telemetry", "NetworkPolicy", "Role")]
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "OTEL_EXPORTER_OTLP_ENDPOINT" in (d.get("data") or {})]
