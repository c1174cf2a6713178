"""The one-machine proof: the whole shop (`meshctl up`) traced by a real Jaeger v2 and
scraped by a real Prometheus, with one order placed through the public API.

- Jaeger has the order as one trace, with spans from every service the order goes through.
- Every service sends its logs over OTLP to the same collector (Jaeger v2 is one; its debug
  exporter writes what it receives into its log). That a line logged in a span carries the
  span's trace id is shown in tests/otlp_export.rs.
- Prometheus scrapes every service, has the alert rules loaded, and every query of the
  shop dashboard has data once the order flow has run (a completed order, a declined one,
  and one malformed event that the consumers dead-letter).

Every wait is bounded; everything started is stopped at the end, also on failure.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import promql
import stack
from conftest import need

@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="meshmart-observe-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tools():
    return {
        "jaeger": need(stack.BIN / "jaeger", "run scripts/install-go-tools.sh jaeger"),
        "prometheus": need(stack.BIN / "prometheus", "run scripts/install-go-tools.sh prometheus"),
        "grpcurl": need(stack.BIN / "grpcurl", "run scripts/install-tools.sh"),
        "meshctl": need(stack.meshctl_path(), "run cargo build -p meshctl (MESHCTL or CARGO_TARGET_DIR tell where)"),
    }


def stopped_at_end(request, proc: stack.Proc) -> None:
    """Stop `proc` when the module is done; on a failure, show the end of its log."""

    def stop():
        proc.stop()
        if request.session.testsfailed:
            print(f"\n--- {proc.name} log (end) ---\n{proc.tail()}")

    request.addfinalizer(stop)


@pytest.fixture(scope="module")
def jaeger(request, tools, workdir):
    j = stack.start_jaeger(workdir)
    stopped_at_end(request, j.proc)
    return j


@pytest.fixture(scope="module")
def shop(request, tools, workdir, jaeger):
    s = stack.start_shop(workdir, tools["meshctl"], jaeger.otlp_endpoint)
    stopped_at_end(request, s.proc)
    return s


@pytest.fixture(scope="module")
def prometheus(request, tools, workdir, shop):
    p = stack.start_prometheus(workdir, stack.metrics_targets(shop.offset))
    stopped_at_end(request, p.proc)
    return p


def grpcurl(tools, shop, service: str, method: str, body: dict, customer: str | None = "ada") -> dict:
    return stack.grpcurl(tools["grpcurl"], shop.grpc(service), method, body, customer)


def place_order(tools, shop, token: str) -> str:
    return stack.place_order(tools["grpcurl"], shop, token)


def wait_for_state(tools, shop, name: str, final: str) -> dict:
    def state():
        order = grpcurl(tools, shop, "orders", "meshmart.orders.v1.OrderService/GetOrder", {"name": name})["order"]
        return order if order["state"] in ("STATE_COMPLETED", "STATE_FAILED") else None

    order = stack.wait_for(f"{name} to end", state, 90, every=1, proc=shop.proc)
    assert order["state"] == final, order
    return order


def publish_malformed_event(data_dir: Path) -> str:
    """An OrderCreated whose payload is not protobuf, into the embedded event log, as a
    foreign producer's bad message would arrive: every group reading orders.created gives
    up on it at once (a permanent error) and dead-letters it. The two statements are the
    embedded log's own publish (src/events/embedded.rs)."""
    message_id = f"malformed-{uuid.uuid4()}"
    db = sqlite3.connect(data_dir / "events.db", timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        (seq,) = db.execute(
            "INSERT INTO events (message_id, subject, headers, payload, time_ms) VALUES (?, ?, '{}', ?, ?) RETURNING seq",
            (message_id, "orders.created", b"\xff\xff\xff", int(time.time() * 1000)),
        ).fetchone()
        db.execute(
            "INSERT INTO deliveries (consumer, event_seq, state, attempts, available_ms) "
            "SELECT DISTINCT f.consumer, e.seq, 'pending', 0, e.time_ms FROM events e JOIN consumer_subjects f ON "
            "(f.filter = e.subject OR (substr(f.filter, -1) = '>' "
            "AND substr(e.subject, 1, length(f.filter) - 1) = substr(f.filter, 1, length(f.filter) - 1))) "
            "WHERE e.seq = ?",
            (seq,),
        )
        db.execute("COMMIT")
    finally:
        db.close()
    return message_id


@pytest.fixture(scope="module")
def flow(tools, workdir, shop, prometheus):
    """A completed order, a declined one, and one dead letter; Prometheus scrapes all along."""
    completed = place_order(tools, shop, "tok_visa_approved")
    declined = place_order(tools, shop, "tok_visa_declined")
    wait_for_state(tools, shop, completed, "STATE_COMPLETED")
    wait_for_state(tools, shop, declined, "STATE_FAILED")
    publish_malformed_event(workdir / "data")
    return {"completed": completed, "declined": declined}


def test_the_order_is_one_trace_through_every_service(jaeger, flow):
    order_id = flow["completed"].removeprefix("orders/")
    try:
        trace = stack.order_trace(jaeger, order_id, 60)
    except TimeoutError as error:
        pytest.fail(str(error))
    operations = {span["operationName"] for span in trace["spans"]}
    # The trace starts at the public call that placed the order.
    assert "meshmart.orders.v1.OrderService/CreateOrder" in operations, sorted(operations)
    assert len({span["traceID"] for span in trace["spans"]}) == 1


def exported_logs(jaeger) -> list[dict]:
    """The log records Jaeger's debug exporter wrote (verbosity: detailed): each with its
    resource's service.name, body, trace id and attributes, as the collector received them."""
    records = []
    for block in jaeger.proc.log.read_text(errors="replace").split("ResourceLog #")[1:]:
        service = re.search(r"-> service\.name: Str\((.*?)\)\n", block)
        for record in block.split("LogRecord #")[1:]:
            body = re.search(r"\nBody: Str\((.*?)\)\n", record)
            trace = re.search(r"\nTrace ID: *([0-9a-f]*)\n", record)
            records.append({
                "service": service.group(1) if service else None,
                "body": body.group(1) if body else None,
                "trace_id": trace.group(1) if trace else "",
                "attributes": dict(re.findall(r"\n +-> ([a-z_.]+): \w+\((.*?)\)", record.split("\nTrace ID:")[0])),
            })
    return records


def test_every_service_sends_its_logs_over_otlp(jaeger, flow):
    def from_everyone():
        records = exported_logs(jaeger)
        return records if {r["service"] for r in records} >= set(stack.services()) else None

    try:
        records = stack.wait_for("a log record from every service in the collector", from_everyone, 30)
    except TimeoutError:
        seen = sorted({str(r["service"]) for r in exported_logs(jaeger)})
        pytest.fail(f"log records from {seen}, not from every one of {sorted(stack.services())}")
    # The start-up lines, as on stdout: the event bus's, for one.
    assert any(r["body"] == "event bus ready" and r["service"] == "orders" for r in records), records[:20]
    # RUST_LOG filters the exported lines too: nothing below info (the default).
    severities = set(re.findall(r"\nSeverityText: (\w+)\n", jaeger.proc.log.read_text(errors="replace")))
    assert severities <= {"INFO", "WARN", "ERROR"}, severities


def test_prometheus_scrapes_every_service(prometheus, flow):
    def all_up():
        targets = stack.get_json(f"{prometheus.url}/api/v1/targets")["data"]["activeTargets"]
        up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
        return up if up == set(stack.services()) else None

    stack.wait_for("every service's target up", all_up, 30, proc=prometheus.proc)
    up = prometheus.query("up == 1")
    assert {r["metric"]["job"] for r in up} == set(stack.services())


def test_the_alert_rules_are_loaded(prometheus):
    groups = stack.get_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert alerts == {"MeshmartDeadLettersGrowing", "MeshmartOutboxLagHigh", "MeshmartRouteErrorRateHigh"}
    assert all(rule["health"] != "err" for group in groups for rule in group["rules"]), groups


def test_every_shop_query_has_data_after_the_order_flow(prometheus, flow):
    # $__rate_interval as Grafana makes it for a 1 s scrape: at least 4 scrapes; 1m is plenty.
    queries = {where: promql.substitute(expr, "1m") for where, expr in promql.dashboard_exprs(stack.DASHBOARDS / "shop.json")}
    empty = dict(queries)
    # The orchestrator samples the dead letters every 15 s: within a minute all have data.
    deadline = time.monotonic() + 60
    while empty and time.monotonic() < deadline:
        empty = {where: q for where, q in empty.items() if not prometheus.query(q)}
        if empty:
            time.sleep(2)
    assert not empty, f"no data for: {json.dumps(empty, indent=2)}"


def test_the_dead_letter_is_counted_for_its_consumers(prometheus, flow):
    def dead_letters():
        return {r["metric"]["consumer"]: float(r["value"][1]) for r in prometheus.query("orchestrator_dead_letters > 0")}

    counted = stack.wait_for("the malformed event among the dead letters", dead_letters, 60, every=2)
    # Every group that reads orders.created gave up on it: the orchestrator's among them.
    assert "orchestrator" in counted, counted
