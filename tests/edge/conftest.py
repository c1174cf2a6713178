"""The shop of `meshctl up` behind `meshctl edge` (Envoy with the gateway's transcoder), on
loopback ports of their own, for the tests of this folder. The launcher is the
observability tests' (tests/observability/stack.py): programs in their own process groups,
stopped whole."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "observability"))

import stack  # noqa: E402

ENVOY = ROOT / ".tools" / "bin" / "envoy"


@dataclass
class Edge:
    url: str
    grpc: str
    shop: stack.Proc
    envoy: stack.Proc


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory):
    meshctl = stack.meshctl_path()
    for tool in (meshctl, ENVOY):
        if not tool.exists():
            pytest.fail(f"no {tool}: run scripts/install-tools.sh and cargo build -p meshctl")
    work = tmp_path_factory.mktemp("edge")
    offset = stack.choose_port_offset()
    port = 8080 + offset
    if not stack.port_is_free(port):
        pytest.fail(f"port {port} is taken")
    data = work / "data"
    procs = []
    try:
        shop = stack.start("meshctl-up", [str(meshctl), "up", "--data-dir", str(data), "--port-offset", str(offset)], work)
        procs.append(shop)
        stack.wait_for("meshctl up (every service SERVING)",
                       lambda: "every service reports SERVING" in shop.log.read_text(errors="replace"), 120, proc=shop)
        envoy = stack.start("meshctl-edge", [str(meshctl), "edge", "--data-dir", str(data), "--port-offset", str(offset),
                                             "--envoy", str(ENVOY)], work)
        procs.append(envoy)
        url = f"http://{stack.HOST}:{port}"
        stack.wait_for("the edge answers", lambda: not stack.port_is_free(port), 30, proc=envoy)
        yield Edge(url, f"{stack.HOST}:{port}", shop, envoy)
    finally:
        for proc in reversed(procs):
            proc.stop()
        for proc in procs:  # pytest shows it when a test failed
            print(f"--- {proc.name}\n{proc.tail(20)}")
