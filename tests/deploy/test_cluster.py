"""What only a cluster can show: the shop up on kind behind Istio, reached through the
ingress with a JWT. Run after scripts/kind-up.sh (with PORT_FORWARD=0 and a port-forward of
your own) by setting MESHMART_CLUSTER=1; otherwise skipped, since these machines have none."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from deploylib import ROOT, tool

pytestmark = pytest.mark.skipif(os.environ.get("MESHMART_CLUSTER") != "1", reason="needs cluster")

INGRESS = os.environ.get("MESHMART_INGRESS", "localhost:8080")
LIST_PRODUCTS = "meshmart.catalog.v1.CatalogService/ListProducts"


def _grpcurl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("grpcurl"), "-plaintext", "-max-time", "10", *args], capture_output=True, text=True)


def _token(*args: str) -> str:
    mint = [sys.executable, str(ROOT / "scripts" / "mint-jwt.py"), *args]
    return subprocess.run(mint, check=True, capture_output=True, text=True).stdout.strip()


def test_every_deployment_is_rolled_out():
    for deployment in ("catalog-v1", "catalog-v2", "inventory-v1"):
        subprocess.run(
            [tool("kubectl"), "-n", "meshmart", "rollout", "status", f"deployment/{deployment}", "--timeout=120s"],
            check=True,
        )


def test_a_call_with_a_token_is_served():
    proc = _grpcurl("-H", f"authorization: Bearer {_token()}", "-d", "{}", INGRESS, LIST_PRODUCTS)
    assert proc.returncode == 0, proc.stderr


def test_a_call_without_a_token_is_denied():
    proc = _grpcurl("-d", "{}", INGRESS, LIST_PRODUCTS)
    assert proc.returncode != 0 and "PermissionDenied" in proc.stderr, proc.stderr


def test_an_expired_token_is_unauthenticated():
    proc = _grpcurl("-H", f"authorization: Bearer {_token('--expired')}", "-d", "{}", INGRESS, LIST_PRODUCTS)
    assert proc.returncode != 0 and "Unauthenticated" in proc.stderr, proc.stderr


def _pinned_call(token: str) -> subprocess.CompletedProcess:
    return _grpcurl(
        "-v", "-H", f"authorization: Bearer {token}", "-H", "x-meshmart-canary: v2", "-d", "{}", INGRESS, LIST_PRODUCTS
    )


def test_the_canary_header_pins_v2_for_a_token_that_allows_it():
    proc = _pinned_call(_token("--canary"))
    assert proc.returncode == 0 and "x-meshmart-version: v2" in proc.stdout, proc.stdout + proc.stderr


def test_the_canary_header_is_dropped_for_any_other_token():
    """Without meshmart_canary in the token the gateway drops the header: of 20 calls, v1
    answers most (v2 gets only its 10% weight)."""
    answers = [_pinned_call(_token()).stdout for _ in range(20)]
    assert sum("x-meshmart-version: v1" in a for a in answers) >= 10, answers
