#!/usr/bin/env bash
# Usage: scripts/gen-edge.sh [OUT_DIR]
# Regenerates what the edge serves from proto/, into helm/meshmart/files/edge/ (or OUT_DIR):
#   meshmart.pb   the descriptor set of the public services, for Envoy's grpc_json_transcoder
#                 (with google.rpc's Status and details, so errors come back as JSON)
#   openapi.yaml  OpenAPI 3 of the REST mapping (buf.gen.openapi.yaml)
# The chart's gateway and `meshctl edge` both read them. And into postman/ (or OUT_DIR):
#   meshmart.postman_collection.json  the Postman collection, generated from openapi.yaml by
#                 openapi-to-postmanv2, with postman/scenario.yaml's values and tests
#                 (scripts/postman.py); tests/edge runs it with Newman.
# tests/contracts fails when the committed ones drift from proto/. Commit what this writes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-helm/meshmart/files/edge}"
POSTMAN_OUT="${1:-postman}"
mkdir -p "$OUT" "$POSTMAN_OUT"
export PATH="$ROOT/.tools/bin:$PATH"

PUBLIC=(--path proto/meshmart/catalog/v1 --path proto/meshmart/orders/v1
  --path proto/meshmart/notifications/v1)
# Without source info the set changes only when the contracts do (and stays small).
buf build --as-file-descriptor-set --exclude-source-info "${PUBLIC[@]}" --path proto/google/rpc \
  -o "$OUT/meshmart.pb"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s|out: helm/meshmart/files/edge|out: $tmp|" buf.gen.openapi.yaml >"$tmp/buf.gen.yaml"
buf generate --template "$tmp/buf.gen.yaml" "${PUBLIC[@]}"
mv "$tmp/openapi.yaml" "$OUT/openapi.yaml"

# Optional parameters off (the scenario switches on the ones it sets); examples in place of
# schema-faked values where the spec has them; one folder per service.
openapi2postmanv2 -s "$OUT/openapi.yaml" -o "$tmp/generated.json" \
  -O folderStrategy=Tags,enableOptionalParameters=false,parametersResolution=Example >/dev/null
"$ROOT/.tools/venv/bin/python" scripts/postman.py "$tmp/generated.json" postman/scenario.yaml \
  "$POSTMAN_OUT/meshmart.postman_collection.json"
