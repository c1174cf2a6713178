"""Jaeger v2 and Prometheus on loopback, beside the shop of `meshctl up`.

Used by test_live.py, by scripts/observe.sh (`python stack.py ...`) and by
scripts/trace-picture.sh (trace_picture.py), so all start the same programs the same way:
the pinned binaries in .tools/bin (scripts/install-go-tools.sh), Jaeger with the committed
jaeger.yaml (memory storage), Prometheus with a generated config that scrapes every
service's /metrics and loads the committed alert rules. An order is placed and its trace
found the same way too (place_order, order_trace).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".tools" / "bin"
OBSERVABILITY = ROOT / "helm" / "meshmart" / "files" / "observability"
ALERTS = OBSERVABILITY / "alerts.yaml"
DASHBOARDS = OBSERVABILITY / "dashboards"
JAEGER_CONFIG = Path(__file__).resolve().parent / "jaeger.yaml"
HOST = "127.0.0.1"


def services() -> dict[str, int]:
    """Every service of `meshctl up` and its gRPC port, as its crate declares it."""
    found = {}
    for lib in sorted((ROOT / "services").glob("*/src/lib.rs")):
        m = re.search(r'ServiceInfo::new\("(\w+)", (\d+)\)', lib.read_text())
        if m:
            found[m.group(1)] = int(m.group(2))
    return found


def metrics_port(grpc_port: int) -> int:
    """As src/config.rs's ServiceInfo::metrics_port: 9051 for 50051, and so on."""
    return 9000 + grpc_port - 50000


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (loopback only)
        return reply.read()


def get_json(url: str, **params: str) -> dict:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    return json.loads(get(url))


def wait_for(what: str, check, timeout: float, every: float = 0.5, proc: Proc | None = None):
    """Calls check() until it returns something truthy, at most `timeout` seconds; fails
    at once if `proc` exits. Returns what check returned."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError) as error:  # not listening yet, or half an answer
            last = error
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}) while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f}s (last error: {last})")
        time.sleep(every)


@dataclass
class Proc:
    """A program in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15) -> None:
        """SIGTERM to the whole group (meshctl's services are its children), then SIGKILL."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                return
        try:  # whatever of the group is left (a child that outlived its parent)
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()


def start(name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, to be stopped whole
        )
    return Proc(name, popen, log)


@dataclass
class Jaeger:
    proc: Proc
    otlp_grpc: int
    query: int

    @property
    def query_url(self) -> str:
        return f"http://{HOST}:{self.query}"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://{HOST}:{self.otlp_grpc}"


def start_jaeger(workdir: Path, otlp_grpc: int | None = None, query: int | None = None) -> Jaeger:
    """Jaeger on the given loopback ports, or free ones."""
    ports = {
        "JAEGER_OTLP_GRPC_PORT": otlp_grpc or free_port(),
        "JAEGER_QUERY_PORT": query or free_port(),
        "JAEGER_QUERY_GRPC_PORT": free_port(),
    }
    jaeger = BIN / "jaeger"
    proc = start("jaeger", [str(jaeger), "--config", f"file:{JAEGER_CONFIG}"], workdir, {k: str(v) for k, v in ports.items()})
    j = Jaeger(proc, ports["JAEGER_OTLP_GRPC_PORT"], ports["JAEGER_QUERY_PORT"])
    # Jaeger itself is a service of its query API once it answers.
    wait_for("jaeger query api", lambda: "data" in get_json(f"{j.query_url}/api/services"), 60, proc=proc)
    return j


@dataclass
class Prometheus:
    proc: Proc
    port: int
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def query(self, expr: str) -> list:
        reply = get_json(f"{self.url}/api/v1/query", query=expr)
        if reply.get("status") != "success":
            raise ValueError(f"query failed: {reply}")
        return reply["data"]["result"]


def prometheus_config(targets: dict[str, str], interval: str = "1s") -> str:
    """Prometheus's config: one job per service, named after it; the alert rules loaded.
    JSON is YAML, so no YAML library is needed."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [target]}]} for name, target in sorted(targets.items())
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def start_prometheus(workdir: Path, targets: dict[str, str], port: int | None = None) -> Prometheus:
    """Prometheus on the given loopback port, or a free one, its storage in workdir."""
    config = workdir / "prometheus.yml"
    config.write_text(prometheus_config(targets))
    port = port or free_port()
    argv = [
        str(BIN / "prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address={HOST}:{port}",
    ]
    proc = start("prometheus", argv, workdir)
    p = Prometheus(proc, port, targets)
    wait_for("prometheus ready", lambda: get(f"{p.url}/-/ready"), 60, proc=proc)
    return p


def choose_port_offset(tries: int = 20) -> int:
    """An offset N with every service's gRPC and metrics port free (N in 1000..9000)."""
    ports = services()
    for offset in range(1000 + (os.getpid() % 80) * 100, 9100, 100)[:tries]:
        if all(port_is_free(p + offset) and port_is_free(metrics_port(p) + offset) for p in ports.values()):
            return offset
    raise RuntimeError("no free port offset for meshctl up")


@dataclass
class Shop:
    proc: Proc
    offset: int

    def grpc(self, service: str) -> str:
        return f"{HOST}:{services()[service] + self.offset}"



def metrics_targets(offset: int) -> dict[str, str]:
    """Each service's /metrics address under `meshctl up --port-offset offset`."""
    return {name: f"{HOST}:{metrics_port(port) + offset}" for name, port in services().items()}


def start_shop(workdir: Path, meshctl: Path, otlp_endpoint: str | None, offset: int | None = None) -> Shop:
    """`meshctl up` on a free port offset, its data in workdir; its traces to otlp_endpoint
    when given. Returns once every service reports SERVING."""
    offset = choose_port_offset() if offset is None else offset
    data = workdir / "data"
    env = {"LOG_FORMAT": "text"}
    if otlp_endpoint:
        env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            # Every trace, whatever the caller asked (the SDK's default follows the parent).
            "OTEL_TRACES_SAMPLER": "always_on",
            # The batch exporter sends every 500 ms rather than every 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }
    proc = start("meshctl", [str(meshctl), "up", "--data-dir", str(data), "--port-offset", str(offset)], workdir, env)
    try:
        wait_for("meshctl up (every service SERVING)", lambda: "every service reports SERVING" in proc.log.read_text(errors="replace"), 120, proc=proc)
    except BaseException:
        proc.stop()  # the caller never gets it to stop
        raise
    return Shop(proc, offset)


# The services an order goes through: orders takes it (and asks catalog for prices and
# inventory for stock), the orchestrator runs its saga over the event bus, payments
# charges, fulfillment ships, notifications writes to the customer.
ORDER_SERVICES = {"orders", "catalog", "inventory", "orchestrator", "payments", "fulfillment", "notifications"}
ADDRESS = {
    "recipient": "Ada Lovelace",
    "address_lines": ["12 St James Square"],
    "locality": "London",
    "postal_code": "SW1Y 4LE",
    "region_code": "GB",
}


def grpcurl(tool: Path, target: str, method: str, body: dict, customer: str | None = "ada") -> dict:
    """One call through grpcurl (the shop has reflection), its JSON reply; RuntimeError on failure."""
    argv = [str(tool), "-plaintext", "-max-time", "10", "-d", json.dumps(body)]
    if customer:
        argv[1:1] = ["-H", f"x-meshmart-customer-id: {customer}"]
    run = subprocess.run([*argv, target, method], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        raise RuntimeError(f"{method}: {run.stderr.strip()}")
    return json.loads(run.stdout)


def place_order(tool: Path, shop: Shop, token: str) -> str:
    """One espresso cup for Ada, paid with `token` (tok_visa_approved, tok_visa_declined):
    the order's name (orders/ID)."""
    reply = grpcurl(
        tool,
        shop.grpc("orders"),
        "meshmart.orders.v1.OrderService/CreateOrder",
        {
            "request_id": f"observe-{uuid.uuid4()}",
            "lines": [{"product_id": "espresso-cup", "quantity": 1}],
            "payment_token": token,
            "shipping_address": ADDRESS,
        },
    )
    return reply["order"]["name"]


def traces_of(jaeger: Jaeger, service: str) -> list[dict]:
    reply = get_json(f"{jaeger.query_url}/api/traces", service=service, lookback="1h", limit="500")
    return reply.get("data") or []


def order_traces(jaeger: Jaeger, order_id: str) -> dict[str, dict]:
    """Every trace (by id) with an event span about `order_id`, from any service's view."""
    found = {}
    for service in sorted(services()):
        for trace in traces_of(jaeger, service):
            for span in trace["spans"]:
                tags = {t["key"]: t["value"] for t in span.get("tags", [])}
                if span["operationName"] == "event" and tags.get("order_id") == order_id:
                    found[trace["traceID"]] = trace
    return found


def services_in(trace: dict) -> set[str]:
    return {trace["processes"][span["processID"]]["serviceName"] for span in trace["spans"]}


def order_trace(jaeger: Jaeger, order_id: str, timeout: float = 60) -> dict:
    """The one trace of the order, once it has spans from every service of ORDER_SERVICES
    (at most `timeout` seconds); TimeoutError saying what Jaeger has otherwise."""

    def complete():
        traces = order_traces(jaeger, order_id)
        return traces if len(traces) == 1 and ORDER_SERVICES <= services_in(next(iter(traces.values()))) else None

    try:
        [trace] = wait_for("the order's spans from every service in jaeger", complete, timeout, every=1).values()
    except TimeoutError:
        seen = {tid: sorted(services_in(t)) for tid, t in order_traces(jaeger, order_id).items()}
        raise TimeoutError(f"order {order_id}: want one trace with {sorted(ORDER_SERVICES)}; jaeger has {seen}") from None
    return trace


def meshctl_path() -> Path:
    """MESHCTL, or the debug build in CARGO_TARGET_DIR (or the clone's target/)."""
    if "MESHCTL" in os.environ:
        return Path(os.environ["MESHCTL"])
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "meshctl"


def main(argv: list[str]) -> int:
    """python stack.py WORKDIR PORT_OFFSET OTLP_PORT JAEGER_PORT PROMETHEUS_PORT: Jaeger and
    Prometheus beside `meshctl up --port-offset PORT_OFFSET`, until Ctrl-C (scripts/observe.sh)."""
    workdir = Path(argv[0])
    offset, otlp, query, prom = (int(a) for a in argv[1:5])
    # Ctrl-C and SIGTERM both stop the programs (SIGINT may arrive ignored from a
    # background job, and SIGTERM would otherwise end Python without its finally).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir.mkdir(parents=True, exist_ok=True)
    running: list[Proc] = []
    try:
        jaeger = start_jaeger(workdir, otlp, query)
        running.append(jaeger.proc)
        prometheus = start_prometheus(workdir, metrics_targets(offset), prom)
        running.append(prometheus.proc)
        print(
            f"jaeger:     {jaeger.query_url}  (query api: {jaeger.query_url}/api/traces?service=orders)\n"
            f"            traces in: start the shop with\n"
            f"            OTEL_EXPORTER_OTLP_ENDPOINT={jaeger.otlp_endpoint} meshctl up --port-offset {offset}\n"
            f"prometheus: {prometheus.url}  (targets: {prometheus.url}/api/v1/targets, alerts: {prometheus.url}/api/v1/alerts)\n"
            f"logs:       the services' (over OTLP, beside the spans): {jaeger.proc.log}\n"
            f"            jaeger's and prometheus's own: {workdir}\n"
            "press ctrl-c to stop.",
            flush=True,
        )
        while all(p.popen.poll() is None for p in running):
            time.sleep(1)
        print("observe: a program exited; see its log in " + str(workdir), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(running):
            p.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
