"""`buf breaking` against the published contracts (contracts/meshmart.binpb) catches what it
should: each test copies the buf workspace (buf.yaml and proto/) to a temporary folder, makes
one change to it, and runs buf breaking on the copy against the committed image, the way
scripts/test.sh runs it on the real one. The last tests run scripts/publish-contracts.sh in
such a copy: it refuses to publish a breaking change unless told to.

Run with the tools of scripts/install-tools.sh:
    .tools/venv/bin/python -m pytest tests/contracts
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "contracts" / "meshmart.binpb"
TOOLS = Path(os.environ.get("MESHMART_TOOLS", ROOT / ".tools"))
CATALOG = Path("proto/meshmart/catalog/v1/catalog.proto")
INVENTORY = Path("proto/meshmart/inventory/v1/inventory.proto")
EVENTS = Path("proto/meshmart/events/v1/events.proto")


def buf() -> str:
    path = TOOLS / "bin" / "buf"
    if not path.exists():
        pytest.fail(f"no buf at {path}: run scripts/install-tools.sh")
    return str(path)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the buf workspace, to change."""
    shutil.copy2(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def breaking(workspace: Path, against: Path = IMAGE) -> subprocess.CompletedProcess[str]:
    # --error-format=json: one JSON object per finding, with the rule that found it ("type").
    return subprocess.run(
        [buf(), "breaking", str(workspace), "--against", str(against), "--error-format=json"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once: update this test"
    path.write_text(text.replace(old, new))


def assert_breaks(proc: subprocess.CompletedProcess[str], rule: str) -> None:
    assert proc.returncode != 0, "buf breaking passed a breaking change:\n" + proc.stdout + proc.stderr
    rules = {json.loads(line)["type"] for line in proc.stdout.splitlines() if line.strip()}
    assert rule in rules, f"buf breaking failed, but not with {rule}:\n" + proc.stdout + proc.stderr


def test_the_committed_image_holds_the_contracts():
    assert IMAGE.is_file(), f"{IMAGE} is missing: scripts/publish-contracts.sh writes it"
    proc = subprocess.run(
        [buf(), "ls-files", str(IMAGE)], capture_output=True, text=True, timeout=60, check=True
    )
    files = set(proc.stdout.split())
    for proto in (CATALOG, INVENTORY, EVENTS):
        assert str(proto.relative_to("proto")) in files, proc.stdout


def test_an_unchanged_copy_passes(workspace: Path):
    """So that the failures below are the changes', not the copy's."""
    proc = breaking(workspace)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def remove_page_token(workspace: Path) -> None:
    """The list request's page token: clients that send it would have it silently ignored."""
    proto = workspace / CATALOG
    text = proto.read_text()
    field = re.search(r"^\s*string page_token = \d+;.*\n", text, re.M)
    assert field, f"no page_token field in {proto}: update this test"
    proto.write_text(text.replace(field.group(0), "", 1))


def test_removing_a_field_breaks(workspace: Path):
    remove_page_token(workspace)
    assert_breaks(breaking(workspace), "FIELD_NO_DELETE")


def test_renaming_an_rpc_breaks(workspace: Path):
    edit(workspace / INVENTORY, "rpc ReserveStock(", "rpc HoldStock(")
    assert_breaks(breaking(workspace), "RPC_NO_DELETE")


def test_changing_a_field_type_breaks(workspace: Path):
    # Same name and number, wider type: the bytes still parse, the generated code does not.
    edit(workspace / CATALOG, "int32 page_size = ", "int64 page_size = ")
    assert_breaks(breaking(workspace), "FIELD_SAME_TYPE")


def test_renumbering_an_event_field_breaks(workspace: Path):
    """The events' evolution rules (events.proto): a field's number never changes, since
    consumers of the older release still read it by number."""
    edit(workspace / EVENTS, "string charge_id = 2;\n  // How much was charged.", "string charge_id = 7;\n  // How much was charged.")
    assert_breaks(breaking(workspace), "FIELD_NO_DELETE")


def test_renaming_an_event_field_breaks(workspace: Path):
    """...nor its name: JSON forms of an event (logs, dead-letter listings) use it."""
    edit(workspace / EVENTS, "string customer_id = 2;", "string buyer_id = 2;")
    assert_breaks(breaking(workspace), "FIELD_SAME_NAME")


def test_adding_an_event_field_does_not_break(workspace: Path):
    edit(workspace / EVENTS, "  string reason = 2;\n}\n\n// Subject `orders.completed`", "  string reason = 2;\n  string carrier_code = 3;\n}\n\n// Subject `orders.completed`")
    proc = breaking(workspace)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_adding_a_field_does_not_break(workspace: Path):
    """Additions are what a v1 may still gain between releases."""
    edit(
        workspace / INVENTORY,
        "service InventoryService {",
        "message NewlyAdded {\n  string note = 1;\n}\n\nservice InventoryService {",
    )
    proc = breaking(workspace)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def checkout(workspace: Path) -> Path:
    """The copy, with what scripts/publish-contracts.sh needs: its image, the script, and the
    installed tools (a stub install-tools.sh: the real ones are in place already)."""
    (workspace / "contracts").mkdir()
    shutil.copy2(IMAGE, workspace / "contracts" / IMAGE.name)
    (workspace / "scripts").mkdir()
    for script in ("publish-contracts.sh", "tools.env"):
        shutil.copy2(ROOT / "scripts" / script, workspace / "scripts" / script)
    stub = workspace / "scripts" / "install-tools.sh"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (workspace / ".tools").symlink_to(TOOLS.resolve())
    return workspace


def publish(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(checkout / "scripts" / "publish-contracts.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_publishing_refuses_a_breaking_change_unless_told(checkout: Path):
    image = checkout / "contracts" / IMAGE.name
    published = image.read_bytes()
    remove_page_token(checkout)

    proc = publish(checkout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not publishing" in proc.stderr and "page_token" in proc.stdout, proc.stdout + proc.stderr
    assert image.read_bytes() == published

    proc = publish(checkout, "--allow-breaking")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert image.read_bytes() != published
    assert breaking(checkout, image).returncode == 0  # the new image is what proto/ now says


def test_publishing_an_addition_records_it(checkout: Path):
    image = checkout / "contracts" / IMAGE.name
    added = "message GetStockRequest {\n  string note = 99;\n"
    edit(checkout / INVENTORY, "message GetStockRequest {\n", added)
    proc = publish(checkout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Once published, taking the addition back out breaks the contracts.
    edit(checkout / INVENTORY, added, "message GetStockRequest {\n")
    assert_breaks(breaking(checkout, image), "FIELD_NO_DELETE")
