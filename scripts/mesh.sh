#!/usr/bin/env bash
# Usage: scripts/mesh.sh up|test|bench [TEST FILTER]
# The shop in a mesh on this machine (docs/deploy.md, section 11): a throwaway Kubernetes
# API server, istiod, and every workload of the chart in a network namespace of its own with
# pilot-agent and Envoy beside it, and the ingress gateway. Needs root (network namespaces).
#   up    starts it, prints how to call it through the gateway, and stops it on Ctrl-C
#   test  runs the mesh's behaviour tests (tests/kube-harness/tests/mesh) alone
#   bench measures the mesh's cost into MESHMART_MESH_BENCH (scripts/bench-mesh.sh)
# Installs the pinned tools and PostgreSQL 15 if missing, and builds the services as the
# test suite does (test builds: with the fault layer the tests use).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode="${1:-}"
case "$mode" in
  up|test|bench) shift ;;
  *) echo "usage: $0 up|test|bench [TEST FILTER]" >&2; exit 2 ;;
esac
if [[ $EUID -ne 0 ]]; then
  echo "mesh: needs root (it makes network namespaces, a bridge and veth pairs); try: sudo $0 $mode" >&2
  exit 1
fi

scripts/install-tools.sh
scripts/install-go-tools.sh
if [[ ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
  # with-postgres.sh installs PostgreSQL 15 when it is missing; `true` is its command.
  scripts/with-postgres.sh true
fi

# The services' test builds and the mesh test binary, as `make test` builds them (so each
# reuses the other's build), and the mesh binary's path from cargo's JSON messages.
binary="$(cargo test --workspace --no-run --locked --message-format=json \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "mesh":
        print(m["executable"])')"
[[ -n "$binary" ]] || { echo "mesh: cargo built no mesh test binary" >&2; exit 1; }

export MESHMART_REQUIRE_MESH=1 MESHMART_REQUIRE_KUBE=1
if [[ "$mode" == up ]]; then
  # The binary stops the shop on Ctrl-C itself; exec so that the signal reaches it alone.
  MESHMART_MESH_UP=1 exec "$binary"
fi
if [[ "$mode" == bench ]]; then
  [[ -n "${MESHMART_MESH_BENCH:-}" ]] || { echo "mesh: bench needs MESHMART_MESH_BENCH (scripts/bench-mesh.sh sets it)" >&2; exit 2; }
  exec "$binary"
fi
exec "$binary" "$@"
