"""Turns the collection that openapi-to-postmanv2 generates from the edge's OpenAPI into the
one we commit (postman/meshmart.postman_collection.json): the requests in the order of
postman/scenario.yaml, with its values and tests, and nothing that changes from one run of the
generator to the next.

Usage: python scripts/postman.py GENERATED.json SCENARIO.yaml OUT.json
(scripts/gen-edge.sh runs it; tests/contracts fails when the committed collection drifts.)

What it takes out, and why: the generator's random ids (Postman gives every item an id of
its own on import) and its example responses (faked from the schemas, with random values
where a google.protobuf.Any has no fixed shape; a real call shows the real answer).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import uuid
from pathlib import Path

import yaml

# How many times a `poll:` request asks again, and how long it waits before each try: the
# run ends within about 30 s however the shop behaves.
POLL_TRIES = 60
POLL_DELAY_MS = 500


class ScenarioError(Exception):
    pass


def operation_key(request: dict) -> str:
    """`GET /v1/products/{product}` for a generated request (whose path says `:product`)."""
    path = "/".join(re.sub(r"^:(.+)$", r"{\1}", part) for part in request["url"]["path"])
    return f"{request['method']} /{path}"


def generated_requests(collection: dict) -> dict[str, dict]:
    """Every request item of the generated collection, by operation key."""
    found: dict[str, dict] = {}

    def walk(items: list[dict]) -> None:
        for item in items:
            if "item" in item:
                walk(item["item"])
                continue
            key = operation_key(item["request"])
            if key in found:
                raise ScenarioError(f"the spec has {key} twice")
            found[key] = item

    walk(collection["item"])
    return found


def script(kind: str, source: str) -> dict:
    return {"listen": kind, "script": {"type": "text/javascript", "exec": source.rstrip("\n").split("\n")}}


def poll_scripts(name: str, done: str) -> tuple[str, str, str]:
    """Scripts that run the request again until `done` holds: what goes before the request,
    what goes before its tests, and the condition the tests run under (once done, or when the
    tries run out, when they then fail on what came last)."""
    counter = json.dumps("tries: " + name)
    before = f"if (pm.variables.get({counter})) setTimeout(() => {{}}, {POLL_DELAY_MS});\n"
    after = (
        f"const tries = Number(pm.variables.get({counter}) || 0) + 1;\n"
        f"let done = false;\n"
        f"try {{ done = pm.response.code === 200 && ({done}); }} catch (e) {{ done = false; }}\n"
        f"const again = !done && tries < {POLL_TRIES};\n"
        f"if (again) {{\n"
        f"  pm.collectionVariables.set({counter}, tries);\n"
        f"  pm.execution.setNextRequest(pm.info.requestName);\n"
        f"}} else {{\n"
        f"  pm.collectionVariables.unset({counter});\n"
        f"}}\n"
    )
    return before, after, "!again"


def apply(item: dict, spec: dict) -> dict:
    """The generated request `item` with the values and tests of one scenario entry."""
    item = copy.deepcopy(item)
    item.pop("id", None)
    item.pop("response", None)
    item["name"] = item["request"]["name"] = spec["name"]
    url = item["request"]["url"]
    path = dict(spec.get("path", {}))
    for variable in url.get("variable", []):
        if variable["key"] not in path:
            raise ScenarioError(f"{spec['name']}: no value for the path parameter {variable['key']}")
        variable["value"] = path.pop(variable["key"])
    if path:
        raise ScenarioError(f"{spec['name']}: the operation has no path parameter {sorted(path)}")
    query = dict(spec.get("query", {}))
    for param in url.get("query", []):
        # The spec's optional parameters stay in the request, switched off and empty (the
        # generator fakes a random value for them), as documentation.
        param["disabled"] = param["key"] not in query
        param["value"] = query.pop(param["key"], "")
    if query:
        raise ScenarioError(f"{spec['name']}: the operation has no query parameter {sorted(query)}")
    body = item["request"].get("body") or {}
    if "body" in spec:
        if body.get("mode") != "raw":
            raise ScenarioError(f"{spec['name']}: the operation takes no body")
        body["raw"] = json.dumps(spec["body"], indent=2, ensure_ascii=False)
    elif body.get("mode") == "raw":
        raise ScenarioError(f"{spec['name']}: the operation takes a body, and the scenario gives none")
    prerequest, test = spec.get("prerequest", ""), spec["test"]
    if "poll" in spec:
        before, after, condition = poll_scripts(spec["name"], spec["poll"])
        indented = "".join(f"  {line}\n" if line else "\n" for line in test.rstrip("\n").split("\n"))
        prerequest, test = prerequest + before, f"{after}if ({condition}) {{\n{indented}}}\n"
    item["event"] = ([script("prerequest", prerequest)] if prerequest else []) + [script("test", test)]
    return item


def build(generated: dict, scenario: dict) -> dict:
    operations = generated_requests(generated)
    used: set[str] = set()
    folders = []
    for folder in scenario["folders"]:
        items = []
        for spec in folder["requests"]:
            key = spec.get("operation") or spec.get("from")
            if key not in operations:
                raise ScenarioError(f"{spec['name']}: the spec has no operation {key}")
            if "operation" in spec:
                if key in used:
                    raise ScenarioError(f"{key} is in the scenario twice")
                used.add(key)
            items.append(apply(operations[key], spec))
        folders.append({"name": folder["name"], "description": tag_description(generated, folder["tag"]),
                        "item": items})
    missing = sorted(set(operations) - used)
    if missing:
        raise ScenarioError(f"postman/scenario.yaml has no request for {', '.join(missing)}")
    names = [item["name"] for folder in folders for item in folder["item"]]
    if len(names) != len(set(names)):
        raise ScenarioError("two requests have the same name (polling goes by name)")
    info = dict(generated["info"])
    info["_postman_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/meshmart/meshmart/postman"))
    info["description"] = {
        "type": "text/markdown",
        "content": "The shop's REST/JSON face, generated from its OpenAPI (`/openapi.yaml` on the edge). "
        "Run it in order: it creates a product, places an order and follows it to COMPLETED, then "
        "reads its notifications. Set `baseUrl` (and `token` behind the cluster's gateway).",
    }
    return {
        "info": info,
        "item": folders,
        "event": [script("prerequest", scenario["prerequest"]), script("test", scenario["test"])],
        "variable": [{"key": k, "value": v} for k, v in scenario["variables"].items()],
    }


def tag_description(generated: dict, tag: str) -> dict | None:
    for folder in generated["item"]:
        if folder.get("name") == tag:
            return folder.get("description")
    raise ScenarioError(f"the spec has no tag {tag}")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    generated = json.loads(Path(argv[1]).read_text())
    scenario = yaml.safe_load(Path(argv[2]).read_text())
    try:
        collection = build(generated, scenario)
    except ScenarioError as error:
        print(f"postman: {error}", file=sys.stderr)
        return 1
    Path(argv[3]).write_text(json.dumps(collection, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
