"""The README's trace picture's drawing (trace_picture.py), on a fixed trace: no Jaeger, no
shop, no browser.

order-trace.json is a real trace: what Jaeger's /api/traces/ID returned for one order
placed by scripts/trace-picture.sh (SAVE_TRACE=..., 2026-12-02), trimmed to the fields the
drawing reads and a few tags, with all its 22 spans kept."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import stack
import trace_picture

FIXTURE = Path(__file__).resolve().parent / "order-trace.json"
SVG = "{http://www.w3.org/2000/svg}"


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())["data"][0]


def rows(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "span"]


def test_one_row_per_span_each_naming_its_service():
    trace = fixture()
    drawn = rows(trace_picture.draw(trace))
    assert sorted(g.get("data-span-id") for g in drawn) == sorted(s["spanID"] for s in trace["spans"])
    services = {s["spanID"]: trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]}
    for g in drawn:
        text = "".join(g.itertext())
        assert g.get("data-service") == services[g.get("data-span-id")]
        assert g.get("data-service") in text, text


def test_the_fixture_is_an_order_through_every_service():
    trace = fixture()
    assert stack.services_in(trace) == stack.ORDER_SERVICES
    svg = trace_picture.draw(trace)
    for service in stack.ORDER_SERVICES:
        assert f">{service}<" in svg  # the legend names it
    assert trace["traceID"] in svg


def test_rows_are_in_tree_order_children_under_their_parent():
    trace = fixture()
    ordered = trace_picture.spans_in_order(trace)
    assert ordered[0].depth == 0 and ordered[0].span["operationName"] == "meshmart.orders.v1.OrderService/CreateOrder"
    depth = {}
    for row in ordered:
        [parent] = [r["spanID"] for r in row.span["references"]] or [None]
        if parent is None:
            assert row.depth == 0
        else:  # its parent came first, one level up
            assert depth[parent] == row.depth - 1, row.span["operationName"]
        depth[row.span["spanID"]] = row.depth


def test_durations_are_written_as_jaeger_writes_them():
    assert [trace_picture.duration(us) for us in (0, 850, 12_345, 345_000, 1_420_000)] == ["0", "850µs", "12.3ms", "345ms", "1.42s"]
    assert trace_picture.ticks(336_000) == [0, 100_000, 200_000, 300_000]


def test_a_long_grpc_name_loses_its_package_before_it_is_cut():
    name = "meshmart.inventory.v1.InventoryService/ReserveStock"
    assert trace_picture.short(name, 1000) == name
    assert trace_picture.short(name, 250) == "InventoryService/ReserveStock"
    assert trace_picture.short(name, 120).endswith("…")
    assert trace_picture.width(trace_picture.short(name, 120)) <= 120
