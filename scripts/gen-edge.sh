#!/usr/bin/env bash
# Usage: scripts/gen-edge.sh [OUT_DIR]
# Regenerates what the edge serves from proto/, into helm/meshmart/files/edge/ (or OUT_DIR):
#   meshmart.pb   the descriptor set of the public services, for Envoy's grpc_json_transcoder
#                 (with google.rpc's Status and details, so errors come back as JSON)
#   openapi.yaml  OpenAPI 3 of the REST mapping (buf.gen.openapi.yaml)
# The chart's gateway and `meshctl edge` both read them; tests/contracts fails when the
# committed ones drift from proto/. Commit what this writes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-helm/meshmart/files/edge}"
mkdir -p "$OUT"
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
