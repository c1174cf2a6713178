"""The edge's generated files (helm/meshmart/files/edge/meshmart.pb and openapi.yaml, and
postman/meshmart.postman_collection.json) are what scripts/gen-edge.sh makes from proto/
(and postman/scenario.yaml) today: a contract changed without regenerating them fails here,
with the command that fixes it.

Run with the tools of scripts/install-tools.sh and scripts/install-go-tools.sh openapi:
    .tools/venv/bin/python -m pytest tests/contracts
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "helm" / "meshmart" / "files" / "edge"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("edge")
    subprocess.run([ROOT / "scripts" / "gen-edge.sh", out], check=True, cwd=ROOT)
    return out


@pytest.mark.parametrize(
    "committed",
    [EDGE / "meshmart.pb", EDGE / "openapi.yaml", ROOT / "postman" / "meshmart.postman_collection.json"],
    ids=lambda path: path.name,
)
def test_committed_file_matches_proto(regenerated: Path, committed: Path) -> None:
    assert (regenerated / committed.name).read_bytes() == committed.read_bytes(), (
        f"{committed.relative_to(ROOT)} is stale: run scripts/gen-edge.sh and commit it"
    )


def test_openapi_has_every_rest_route(regenerated: Path) -> None:
    """The annotations reach the spec: each public route, and no streaming one."""
    spec = (regenerated / "openapi.yaml").read_text()
    for route in [
        "/v1/products:",
        "/v1/products/{product}:",
        "/v1/orders:",
        "/v1/orders/{order}:",
        "/v1/notifications:",
        "/v1/notifications/{notification}:",
        "/v1/orders/{orderId}/notifications:",
    ]:
        assert f"\n    {route}\n" in spec, route
    assert ":watch" not in spec
