#!/usr/bin/env bash
# The deployment checks (issue 4), for CI and for people, all static: no cluster, no Docker.
#   helm lint --strict and helm template (default and helm/meshmart/ci/*-values.yaml);
#   every rendered and committed document validated strictly (kubernetes-validate --strict;
#   Istio kinds against Istio's CRD schemas with unknown fields rejected; EnvoyFilter patches
#   against Envoy's API); misspellings fed in to prove they fail; cross-references, retries
#   among them (their tries multiplied along the calls); the namespace's request budget;
#   drift of k8s/ and istio/ from the chart; the linters (checkov, yamllint, shellcheck,
#   hadolint); the configs we hand to Envoy, nats-server and PostgreSQL, checked by those
#   programs. Tests that need a cluster are skipped.
#
#   scripts/check-deploy.sh              everything
#   scripts/check-deploy.sh -k crossref  pytest arguments pass through
#
# Needs the tools of scripts/install-tools.sh in .tools/ (or MESHMART_TOOLS). The Istio CRD
# schemas are vendored in tests/deploy/schemas/ (ISTIO_CRDS points at another copy).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MESHMART_TOOLS="${MESHMART_TOOLS:-$ROOT/.tools}"
export PATH="$MESHMART_TOOLS/bin:$MESHMART_TOOLS/venv/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
export ISTIO_CRDS="${ISTIO_CRDS:-$ROOT/tests/deploy/schemas/istio-crds.gen.yaml}"
PYTHON="$MESHMART_TOOLS/venv/bin/python"

missing=()
for tool in helm kubectl checkov yamllint kubernetes-validate shellcheck hadolint envoy nats-server; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x "$PYTHON" ] || missing+=("$PYTHON")
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-deploy: missing ${missing[*]}: run scripts/install-tools.sh" >&2
  exit 1
fi
if [ ! -f "$ISTIO_CRDS" ]; then
  echo "check-deploy: no Istio CRD schemas at $ISTIO_CRDS: set ISTIO_CRDS" >&2
  exit 1
fi

cd "$ROOT"
echo "== $(helm version --short), kubectl $(kubectl version --client 2>/dev/null | sed -n 's/^Client Version: //p')," \
  "$(checkov --version 2>/dev/null | tail -n 1 | sed 's/^/checkov /'), Istio CRDs: $ISTIO_CRDS"
echo
echo "== requests of the laptop deployment (k8s/overlays/kind, sidecars included)"
"$PYTHON" tests/deploy/deploylib.py budget k8s/overlays/kind || echo "(over budget: test_budget.py fails below)"
echo
echo "== with the observability stack on (helm/meshmart/ci/observability-values.yaml): an extra of its own"
"$PYTHON" tests/deploy/deploylib.py chart-budget helm/meshmart/ci/observability-values.yaml ||
  echo "(over budget: test_budget.py fails below)"
echo
echo "== calls at each service per call at the edge, worst case (route tries multiplied along the allowed calls)"
"$PYTHON" tests/deploy/deploylib.py amplification k8s/overlays/kind istio ||
  echo "(over the bound: test_crossref.py fails below)"
echo
echo "== tests/deploy"
# A throwaway PostgreSQL lets the init script and DATABASE_URLs be tried for real.
exec "$ROOT/scripts/with-postgres.sh" "$PYTHON" -m pytest tests/deploy -p no:cacheprovider -ra "$@"
