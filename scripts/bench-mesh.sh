#!/usr/bin/env bash
# Measures the mesh's cost and writes the "The mesh's cost" section of docs/benchmarks.md:
# in the mesh of docs/deploy.md section 11 (scripts/mesh.sh builds and starts it), the same
# calls to the same processes with and without the proxies on their path, paced below the
# gateway's rate limit, with the proxies' and the services' CPU per call and the proxies'
# memory (tests/kube-harness/tests/mesh/bench.rs). Needs root, like the mesh. About 3 minutes
# after a warm build. Traffic stays inside the harness's network namespaces.
#
# Standalone it replaces the section between the `mesh:begin` and `mesh:end` markers of
# BENCH_OUT (adding it before "## Commands" when missing); scripts/bench.sh instead sets
# BENCH_MESH_SECTION to a file, and this writes the section there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${BENCH_OUT:-docs/benchmarks.md}"

if [[ $EUID -ne 0 ]]; then
  echo "bench-mesh: needs root (the mesh's network namespaces); try: sudo $0" >&2
  exit 1
fi
section="${BENCH_MESH_SECTION:-$(mktemp)}"
MESHMART_MESH_BENCH="$section" scripts/mesh.sh bench
# When and at what, under the section's heading (its first line).
stamp="Run on $(date -u +%F) at commit \`$(git rev-parse --short HEAD)\` ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
awk -v stamp="$stamp" 'NR == 1 { print; print ""; print stamp; next } { print }' "$section" > "$section.stamped"
mv "$section.stamped" "$section"
if [[ -z "${BENCH_MESH_SECTION:-}" ]]; then
  tmp="$(mktemp)"
  awk -v file="$section" '
    function emit() { print "<!-- mesh:begin (scripts/bench-mesh.sh) -->"; while ((getline line < file) > 0) print line; print "<!-- mesh:end -->"; print ""; done = 1 }
    /^<!-- mesh:begin/ { emit(); skip = 1; next }
    skip && /^<!-- mesh:end/ { skip = 0; getline; if ($0 != "") print; next }
    skip { next }
    /^## Commands/ && !done { emit() }
    { print }
  ' "$OUT" > "$tmp"
  mv "$tmp" "$OUT"
  rm -f "$section"
  echo "bench-mesh: wrote the mesh's section of $OUT" >&2
fi
