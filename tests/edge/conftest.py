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
    procs = []
    try:
        shop = stack.start_shop(work, meshctl, otlp_endpoint=None)
        procs.append(shop.proc)
        port = 8080 + shop.offset
        if not stack.port_is_free(port):
            pytest.fail(f"port {port} is taken")
        envoy = stack.start("meshctl-edge", [str(meshctl), "edge", "--data-dir", str(work / "data"),
                                             "--port-offset", str(shop.offset), "--envoy", str(ENVOY)], work)
        procs.append(envoy)
        url = f"http://{stack.HOST}:{port}"
        stack.wait_for("the edge answers", lambda: not stack.port_is_free(port), 30, proc=envoy)
        yield Edge(url, f"{stack.HOST}:{port}", shop.proc, envoy)
    finally:
        for proc in reversed(procs):
            proc.stop()
        for proc in procs:  # pytest shows it when a test failed
            print(f"--- {proc.name}\n{proc.tail(20)}")
