"""REST/JSON and gRPC at the edge on one machine: `meshctl edge` (Envoy with the chart's
grpc_json_transcoder config) in front of `meshctl up`, called as a newcomer would, with
HTTP and JSON, then grpcurl. Errors are JSON with the gRPC status and its details, at the
HTTP status the transcoder maps each code to; Envoy's own replies are JSON too.

Run: .tools/venv/bin/python -m pytest tests/edge (after cargo build -p meshctl)
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = {
    "recipient": "Ada",
    "addressLines": ["12 St James Square"],
    "locality": "London",
    "postalCode": "SW1Y 4LE",
    "regionCode": "GB",
}


def call(edge, method: str, path: str, body: bytes | dict | None = None, customer: str | None = None):
    """(HTTP status, content type, parsed JSON body) of one call to the edge."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(edge.url + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if customer:
        request.add_header("x-meshmart-customer-id", customer)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 (loopback)
            status, headers, raw = reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    return status, headers.get("content-type"), json.loads(raw)


def test_a_product_as_json(edge):
    status, kind, body = call(edge, "GET", "/v1/products/espresso-cup")
    assert (status, kind) == (200, "application/json")
    product = body["product"]
    assert product["name"] == "products/espresso-cup"
    assert product["price"]["currencyCode"] == "EUR"
    # int64 is a string in proto3's JSON mapping.
    assert product["availableQuantity"].isdigit()


def test_a_page_of_products(edge):
    status, _, body = call(edge, "GET", "/v1/products?pageSize=2")
    assert status == 200
    assert len(body["products"]) == 2 and body["nextPageToken"]


def test_an_unknown_product_is_404_with_its_resource_info(edge):
    status, kind, body = call(edge, "GET", "/v1/products/no-such-thing")
    assert (status, kind) == (404, "application/json")
    assert body["code"] == 5
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ResourceInfo"
    assert body["details"][0]["resourceName"] == "products/no-such-thing"


def test_invalid_fields_are_400_with_the_field_violations(edge):
    status, _, body = call(edge, "POST", "/v1/orders", {"requestId": "edge-bad"}, customer="ada")
    assert status == 400 and body["code"] == 3
    [bad_request] = body["details"]
    assert bad_request["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    fields = {v["field"] for v in bad_request["fieldViolations"]}
    assert {"lines", "payment_token", "shipping_address"} <= fields


def test_envoys_own_errors_are_json(edge):
    # A body that does not parse, a query parameter the request does not have, a path
    # with no route: answered by Envoy itself, as google.rpc.Status JSON.
    for method, path, body, status, code in [
        ("POST", "/v1/orders", b"{not json", 400, 3),
        ("GET", "/v1/products?colour=red", None, 400, 3),
        ("GET", "/v1/products?pageSize=many", None, 400, 3),
        ("GET", "/v2/nothing-here", None, 404, 5),
    ]:
        got = call(edge, method, path, body, customer="ada")
        assert got[:2] == (status, "application/json"), (path, got)
        assert got[2]["code"] == code, (path, got)


def test_an_order_without_a_customer_is_401(edge):
    status, _, body = call(edge, "GET", "/v1/orders")
    assert status == 401 and body["code"] == 16


def test_an_order_placed_read_and_notified_over_rest(edge):
    order = {
        "requestId": "edge-order-1",
        "lines": [{"productId": "espresso-cup", "quantity": "1"}],
        "paymentToken": "tok_visa_approved",
        "shippingAddress": ADDRESS,
    }
    status, _, placed = call(edge, "POST", "/v1/orders", order, customer="ada")
    assert status == 200, placed
    name = placed["order"]["name"]
    assert placed["order"]["state"] == "STATE_PENDING"
    # The same request again is the same answer (request_id).
    assert call(edge, "POST", "/v1/orders", order, customer="ada")[2] == placed
    # Another customer's order does not exist for them.
    assert call(edge, "GET", f"/v1/{name}", customer="grace")[0] == 404
    deadline = time.monotonic() + 60
    while True:
        status, _, got = call(edge, "GET", f"/v1/{name}", customer="ada")
        assert status == 200
        if got["order"]["state"] == "STATE_COMPLETED" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got["order"]["state"] == "STATE_COMPLETED"
    order_id = name.removeprefix("orders/")
    status, _, notes = call(edge, "GET", f"/v1/orders/{order_id}/notifications", customer="ada")
    assert status == 200
    assert {"KIND_ORDER_PLACED", "KIND_ORDER_COMPLETED"} <= {n["kind"] for n in notes["notifications"]}


def test_grpc_passes_through_the_same_port(edge):
    out = subprocess.run(
        [ROOT / ".tools" / "bin" / "grpcurl", "-plaintext", "-import-path", ROOT / "proto",
         "-proto", "meshmart/catalog/v1/catalog.proto", "-d", '{"name": "products/espresso-cup"}',
         edge.grpc, "meshmart.catalog.v1.CatalogService/GetProduct"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["product"]["name"] == "products/espresso-cup"


def test_the_openapi_is_served(edge):
    with urllib.request.urlopen(edge.url + "/openapi.yaml", timeout=10) as reply:  # noqa: S310
        assert reply.headers["content-type"] == "application/yaml"
        served = reply.read()
    assert served == (ROOT / "helm" / "meshmart" / "files" / "edge" / "openapi.yaml").read_bytes()


def test_the_postman_collection_passes_under_newman(edge, tmp_path):
    """The committed collection (postman/), run by Newman against the edge as a newcomer runs
    it in Postman: every request answers as its tests say, and every request has tests (the
    collection's own, that every answer is JSON, and its scenario's)."""
    report = tmp_path / "newman.json"
    out = subprocess.run(
        [ROOT / ".tools" / "bin" / "newman", "run", ROOT / "postman" / "meshmart.postman_collection.json",
         "--env-var", f"baseUrl={edge.url}", "--env-var", "customerId=newman", "--timeout-request", "10000",
         "--timeout", "120000", "--reporters", "cli,json", "--reporter-json-export", report, "--color", "off"],
        capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    run = json.loads(report.read_text())["run"]
    assert run["stats"]["assertions"]["failed"] == 0 and run["failures"] == []
    collection = json.loads((ROOT / "postman" / "meshmart.postman_collection.json").read_text())
    requests = {item["name"] for folder in collection["item"] for item in folder["item"]}
    ran = {execution["item"]["name"] for execution in run["executions"]}
    assert ran == requests, requests ^ ran
    last = {execution["item"]["name"]: execution for execution in run["executions"]}
    for name, execution in last.items():
        # A polled request's earlier tries run no tests of their own; its last one does.
        tests = [assertion["assertion"] for assertion in execution.get("assertions", [])]
        assert "answers JSON" in tests and len(tests) >= 2, (name, tests)


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_spec(edge, tmp_path):
    """Property-based calls generated from the OpenAPI, a bounded number per operation with a
    fixed seed: no 5xx, every answer's status, content type and body as the spec says, and
    input the spec rules out always refused with a 4xx. Left out: positive_data_acceptance
    (the spec cannot state every rule the services check, such as name formats, so valid-looking
    input may rightly get a 400 or 404) and unsupported_method (routes match by path; an
    undeclared method gets a JSON 4xx, not necessarily 405)."""
    checks = "not_a_server_error,status_code_conformance,content_type_conformance," \
             "response_schema_conformance,negative_data_rejection"
    out = subprocess.run(
        [ROOT / ".tools" / "bin" / "schemathesis", "run", ROOT / "helm" / "meshmart" / "files" / "edge" / "openapi.yaml",
         "--url", edge.url, "--header", "x-meshmart-customer-id: schemathesis", "--max-examples", "20",
         "--seed", "1", "--checks", checks, "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failures" not in out.stdout.splitlines()[-1], out.stdout[-3000:]
