#!/usr/bin/env bash
# Usage: scripts/with-nats.sh COMMAND [ARGS...]
# Runs COMMAND against a throwaway NATS server with JetStream (the pinned nats-server from
# .tools/bin, which scripts/install-tools.sh installs), with
#   MESHMART_TEST_NATS_URL=nats://127.0.0.1:PORT
#   MESHMART_TEST_NATS_SERVER=/path/to/nats-server   for tests that start and stop their own
# exported, then stops the server and deletes its store, whatever happens. Exits with
# COMMAND's exit code.
# Why throwaway: tests get empty streams, never touch a NATS someone else runs, and
# parallel runs don't collide: the server picks free loopback ports itself (-p -1, -m -1)
# and says which in a ports file, so there is no probe-then-bind race.
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_SERVER="${NATS_SERVER:-$ROOT/.tools/bin/nats-server}"
[[ -x "$NATS_SERVER" ]] || {
  echo "with-nats: no $NATS_SERVER; run scripts/install-tools.sh first" >&2
  exit 1
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/meshmart-nats.XXXXXX")"
pid=""
# shellcheck disable=SC2329  # called via trap
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    # TERM is a clean shutdown; a server that has not gone within 10 s is killed, so the
    # store can always be removed and the script never hangs here.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT   # make EXIT trap run on Ctrl-C / kill too
trap 'exit 143' TERM

# Loopback only; random free ports for clients and for monitoring (the readiness check).
"$NATS_SERVER" -a 127.0.0.1 -p -1 -m -1 -js -sd "$tmp/store" \
  --ports_file_dir "$tmp" -l "$tmp/server.log" &
pid=$!

# The monitor's /healthz answers 200 once JetStream is up (and 503 before): the server is
# then ready for streams, not just listening.
healthz() { # healthz PORT: exit 0 on HTTP 200
  local status
  # shellcheck disable=SC2016  # $1 is the inner shell's: the port, passed as an argument
  status="$(timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
    head -n 1 <&3' _ "$1" 2>/dev/null)" || return 1
  [[ "$status" == *" 200 "* ]]
}

# Bounded: 30 s (300 x 0.1 s) for the ports file and a healthy answer.
url="" monitor="" ready=""
for _ in $(seq 300); do
  kill -0 "$pid" 2>/dev/null || {
    echo "with-nats: nats-server exited at start" >&2
    cat "$tmp/server.log" >&2 2>/dev/null || true
    exit 1
  }
  ports="$tmp/$(basename "$NATS_SERVER")_$pid.ports"
  if [[ -z "$url" && -s "$ports" ]]; then
    # {"nats":["nats://127.0.0.1:PORT"],"monitoring":["http://127.0.0.1:PORT"]}
    url="$(grep -o 'nats://127\.0\.0\.1:[0-9]*' "$ports" | head -n 1)" || url=""
    monitor="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$ports" | head -n 1)" || monitor=""
    monitor="${monitor##*:}"
  fi
  if [[ -n "$url" && -n "$monitor" ]] && healthz "$monitor"; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || {
  echo "with-nats: nats-server not ready within 30s" >&2
  cat "$tmp/server.log" >&2 2>/dev/null || true
  exit 1
}

export MESHMART_TEST_NATS_URL="$url" MESHMART_TEST_NATS_SERVER="$NATS_SERVER"

rc=0
"$@" || rc=$?
exit "$rc"
