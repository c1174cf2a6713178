#!/usr/bin/env bash
# Jaeger v2 and Prometheus beside the shop on this machine (`make observe`), until Ctrl-C:
#   Jaeger:     OTLP/gRPC in on 127.0.0.1:4317, query API (and its placeholder UI) on :16686
#   Prometheus: 127.0.0.1:9090, scraping every service of `meshctl up`, the alert rules of
#               helm/meshmart/files/observability/alerts.yaml loaded
# Start the shop with its traces going to Jaeger, in another terminal:
#   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 make up
# PORT_OFFSET=N scrapes `meshctl up --port-offset N`; OTLP_PORT, JAEGER_PORT and
# PROMETHEUS_PORT move the listeners. The programs are the pinned builds of
# scripts/install-go-tools.sh, started by tests/observability/stack.py, as the tests start
# them (docs/architecture.md, "Traces, dashboards and alerts").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

for tool in jaeger prometheus; do
  if [[ ! -x "$ROOT/.tools/bin/$tool" ]]; then
    echo "observe: $ROOT/.tools/bin/$tool is missing: run scripts/install-go-tools.sh prometheus jaeger" >&2
    exit 1
  fi
done

# Logs and Prometheus's storage: thrown away on exit, like Jaeger's memory.
workdir="$(mktemp -d "${TMPDIR:-/tmp}/meshmart-observe.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT
# A signal ends the script through exit, so the EXIT trap runs (once stack.py has stopped).
trap 'exit 130' INT
trap 'exit 143' TERM

# stack.py stops both programs (their whole process groups) when it ends, Ctrl-C included.
python3 "$ROOT/tests/observability/stack.py" "$workdir" "${PORT_OFFSET:-0}" \
  "${OTLP_PORT:-4317}" "${JAEGER_PORT:-16686}" "${PROMETHEUS_PORT:-9090}"
