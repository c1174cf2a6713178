"""The observability tests: alert rules and dashboards checked with promtool, and the shop
traced and scraped by a real Jaeger and Prometheus (test_live.py).

The tools come from scripts/install-go-tools.sh (prometheus, promtool, jaeger) and
scripts/install-tools.sh (grpcurl), meshctl from `cargo build -p meshctl`. A missing one
skips its tests, loudly; with MESHMART_REQUIRE_OBSERVABILITY=1 (scripts/test.sh) it fails them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402


def need(path: Path, how: str) -> Path:
    """`path` if it is an executable, else a skip (or a failure when required)."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    why = f"{path} is missing: {how}"
    if os.environ.get("MESHMART_REQUIRE_OBSERVABILITY") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def promtool() -> Path:
    return need(stack.BIN / "promtool", "run scripts/install-go-tools.sh prometheus")
