#!/usr/bin/env bash
# Benchmarks placing orders on loopback, on both setups, and writes the "Placing orders"
# section of docs/benchmarks.md.
#
#   (a) SQLite with the embedded event log: `meshctl up`, as on a laptop;
#   (b) PostgreSQL with NATS JetStream, as in the cluster: throwaway servers from
#       scripts/with-postgres.sh and scripts/with-nats.sh, a database per service, and the
#       seven services each started as `meshctl serve <service>` (what `meshctl up` runs,
#       but with a DATABASE_URL of its own, which `up` cannot give each service).
#
# On each: `loadgen --mix place-order`, closed loop at each concurrency and open loop at each
# rate (below what the flow can drain, so that its latency is not its backlog), a warm-up
# run and then a measured run; loadgen restocks the demo products first and, after the load, reads
# back every order it placed to time created -> COMPLETED from the orders' histories.
# Release build (as `meshctl up` is run). Traffic goes to 127.0.0.1 only; every run and
# every wait is bounded in time. Not part of the tests: timings belong in a report.
#
# Standalone it replaces the section between the `orders:begin` and `orders:end` markers
# of BENCH_OUT (adding it before "## Commands" when missing); scripts/bench.sh instead sets
# BENCH_ORDERS_SECTION to a file, and this writes the section there.
#
# Settings (environment): BENCH_ORDERS_DURATION (20s), BENCH_ORDERS_WARMUP (3s),
# BENCH_ORDERS_RUNS ("open:5 closed:1 closed:8": orders per second, or callers; in this order,
# since a closed-loop run can leave a backlog that the flow drains during the next), BENCH_ORDERS_SETUPS ("embedded jetstream"),
# BENCH_ORDERS_PORT_OFFSET (2000: gRPC on 52051-52057, metrics on 11051-11057),
# BENCH_OUT (docs/benchmarks.md), BENCH_ORDERS_SECTION (unset), BENCH_ORDERS_BIN (unset:
# build; else a folder with meshctl and loadgen to run instead, for trying the script out).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_ORDERS_DURATION:-20s}"
WARMUP="${BENCH_ORDERS_WARMUP:-3s}"
RUNS="${BENCH_ORDERS_RUNS:-open:5 closed:1 closed:8}"
SETUPS="${BENCH_ORDERS_SETUPS:-embedded jetstream}"
OFFSET="${BENCH_ORDERS_PORT_OFFSET:-2000}"
OUT="${BENCH_OUT:-docs/benchmarks.md}"
SECTION="${BENCH_ORDERS_SECTION:-}"
# The targets the order-flow issue sets, p50 of created -> COMPLETED, in ms.
TARGET_EMBEDDED_MS=50
TARGET_JETSTREAM_MS=100

SERVICES=(inventory catalog orders payments fulfillment notifications orchestrator)
declare -A GRPC_PORT=([catalog]=50051 [inventory]=50052 [orders]=50053 [payments]=50054
  [fulfillment]=50055 [notifications]=50056 [orchestrator]=50057)
port() { echo $(( GRPC_PORT[$1] + OFFSET )); }
# pace closed:N | open:R: loadgen's flags for that load; label: the same for people.
pace() { case "$1" in closed:*) echo "--concurrency ${1#closed:}" ;; open:*) echo "--rate ${1#open:}" ;; esac; }
label() { case "$1" in closed:*) echo "closed, ${1#closed:}" ;; open:*) echo "open, ${1#open:}/s" ;; esac; }
metrics_port() { echo $(( 9000 + GRPC_PORT[$1] - 50000 + OFFSET )); }

# --- the inner run of setup (b), inside with-postgres.sh and with-nats.sh ----------------
# bench-orders.sh --jetstream WORK BIN: starts the seven services on the throwaway servers,
# runs the loads into WORK, stops them. Called by the outer run below.
if [[ "${1:-}" == "--jetstream" ]]; then
  WORK="$2"; BIN="$3"
  : "${MESHMART_TEST_POSTGRES_URL:?run inside scripts/with-postgres.sh}"
  : "${MESHMART_TEST_NATS_URL:?run inside scripts/with-nats.sh}"
  base="${MESHMART_TEST_POSTGRES_URL%/*}"
  PIDS=()
  stop_all() {
    # Only the services started here, by pid; each drains as on SIGTERM.
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
  }
  trap stop_all EXIT
  for svc in "${SERVICES[@]}"; do
    # A database per service, as the tests give them (their migrations share table names).
    psql -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench_$svc" >/dev/null
    env GRPC_ADDR="127.0.0.1:$(port "$svc")" METRICS_ADDR="127.0.0.1:$(metrics_port "$svc")" \
      DATA_DIR="$WORK/jetstream-data" DATABASE_URL="$base/bench_$svc" NATS_URL="$MESHMART_TEST_NATS_URL" \
      INVENTORY_ADDR="http://127.0.0.1:$(port inventory)" CATALOG_ADDR="http://127.0.0.1:$(port catalog)" \
      LOG_FORMAT=json "$BIN/meshctl" serve "$svc" >> "$WORK/jetstream-services.log" 2>&1 &
    PIDS+=("$!")
  done
  "$BIN/loadgen" wait --mix place-order --target-orders "http://127.0.0.1:$(port orders)" \
    --target-inventory "http://127.0.0.1:$(port inventory)" --wait-timeout 60s 2>> "$WORK/loadgen.log"
  # The consumers (payments, fulfillment, orchestrator) are not waited for by loadgen; the
  # warm-up run's orders wait for them in the stream, and its figures are thrown away.
  for run in $RUNS; do
    read -ra flags <<<"$(pace "$run")"
    "$BIN/loadgen" --mix place-order "${flags[@]}" --duration "$WARMUP" --settle-timeout 120s \
      --target-orders "http://127.0.0.1:$(port orders)" --target-inventory "http://127.0.0.1:$(port inventory)" \
      > /dev/null 2>> "$WORK/loadgen.log"
    "$BIN/loadgen" --mix place-order "${flags[@]}" --duration "$DURATION" --settle-timeout 120s --json \
      --target-orders "http://127.0.0.1:$(port orders)" --target-inventory "http://127.0.0.1:$(port inventory)" \
      > "$WORK/jetstream-${run/:/-}.json" 2>> "$WORK/loadgen.log"
  done
  stop_all
  exit 0
fi

# --- the outer run ---------------------------------------------------------------------
for tool in jq awk cargo psql; do
  command -v "$tool" >/dev/null || { echo "bench-orders: needs $tool" >&2; exit 2; }
done
WORK="$(mktemp -d -t meshmart-bench-orders.XXXXXX)"
UP_PID=""
cleanup() {
  # Only the meshctl this script started, by pid: it stops its own services.
  if [[ -n "$UP_PID" ]]; then kill -TERM "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

COMMANDS=()
started_at="$(date +%s)"
echo "bench-orders: building the release binaries" >&2
FROM="${BENCH_ORDERS_BIN:-${CARGO_TARGET_DIR:-target}/release}"
if [[ -z "${BENCH_ORDERS_BIN:-}" ]]; then
  COMMANDS+=("cargo build --release --locked -p meshctl -p loadgen")
  cargo build --release --locked -p meshctl -p loadgen
fi
# A copy: the target directory may be shared, and another build must not swap the
# binaries under a running benchmark.
BIN="$WORK/bin"
mkdir -p "$BIN"
cp "$FROM/meshctl" "$FROM/loadgen" "$BIN/"
export RUST_LOG="${RUST_LOG:-info}"
ORDERS="http://127.0.0.1:$(port orders)"
INVENTORY="http://127.0.0.1:$(port inventory)"
TARGETS=(--target-orders "$ORDERS" --target-inventory "$INVENTORY")

for setup in $SETUPS; do
  case "$setup" in
    embedded)
      echo "bench-orders: SQLite + embedded event log (meshctl up)" >&2
      COMMANDS+=("LOG_FORMAT=json target/release/meshctl up --data-dir \$WORK/embedded --port-offset $OFFSET &")
      LOG_FORMAT=json "$BIN/meshctl" up --data-dir "$WORK/embedded" --port-offset "$OFFSET" > "$WORK/embedded-up.log" 2>&1 &
      UP_PID=$!
      # `up` prints its welcome once every service reports SERVING: wait for that, bounded.
      for _ in $(seq 1 600); do
        grep -q "meshmart is up in" "$WORK/embedded-up.log" 2>/dev/null && break
        kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/embedded-up.log" >&2; exit 1; }
        sleep 0.1
      done
      "$BIN/loadgen" wait --mix place-order "${TARGETS[@]}" --wait-timeout 60s 2>> "$WORK/loadgen.log"
      for run in $RUNS; do
        echo "bench-orders: embedded, $(label "$run")" >&2
        read -ra flags <<<"$(pace "$run")"
        COMMANDS+=("target/release/loadgen --mix place-order ${flags[*]} --duration $WARMUP --settle-timeout 120s ${TARGETS[*]}")
        "$BIN/loadgen" --mix place-order "${flags[@]}" --duration "$WARMUP" --settle-timeout 120s "${TARGETS[@]}" \
          > /dev/null 2>> "$WORK/loadgen.log"
        COMMANDS+=("target/release/loadgen --mix place-order ${flags[*]} --duration $DURATION --settle-timeout 120s --json ${TARGETS[*]}")
        "$BIN/loadgen" --mix place-order "${flags[@]}" --duration "$DURATION" --settle-timeout 120s --json "${TARGETS[@]}" \
          > "$WORK/embedded-${run/:/-}.json" 2>> "$WORK/loadgen.log"
      done
      kill -TERM "$UP_PID"
      wait "$UP_PID" || echo "bench-orders: meshctl up exited with $?" >&2
      UP_PID=""
      ;;
    jetstream)
      echo "bench-orders: PostgreSQL + NATS JetStream (meshctl serve, one per service)" >&2
      COMMANDS+=("scripts/with-postgres.sh scripts/with-nats.sh scripts/bench-orders.sh --jetstream \$WORK \$WORK/bin")
      COMMANDS+=("  # inside: psql -c 'CREATE DATABASE bench_<service>' for each of the seven, then for each:")
      COMMANDS+=("  env GRPC_ADDR=127.0.0.1:<port> METRICS_ADDR=127.0.0.1:<port> DATABASE_URL=\$MESHMART_TEST_POSTGRES_URL/../bench_<service> NATS_URL=\$MESHMART_TEST_NATS_URL INVENTORY_ADDR=$INVENTORY CATALOG_ADDR=http://127.0.0.1:$(port catalog) LOG_FORMAT=json target/release/meshctl serve <service> &")
      COMMANDS+=("  # and the same loadgen runs as above")
      scripts/with-postgres.sh scripts/with-nats.sh "$0" --jetstream "$WORK" "$BIN" 2>> "$WORK/jetstream.log" \
        || { tail -30 "$WORK/jetstream.log" "$WORK/loadgen.log" >&2; exit 1; }
      ;;
    *) echo "bench-orders: unknown setup $setup (embedded, jetstream)" >&2; exit 2 ;;
  esac
done
measure_secs=$(( $(date +%s) - started_at ))
build="release build"
[[ -n "${BENCH_ORDERS_BIN:-}" ]] && build="binaries from \`$BENCH_ORDERS_BIN\`, not built here"

# --- the section -----------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
met() { # met P50_US TARGET_MS
  awk -v v="$1" -v t="$2" 'BEGIN { v /= 1000; if (v <= t) print "met"; else printf "**missed**: %.2fx over\n", v / t }'
}
model="$(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$( [[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo " (with uncommitted changes)" || true)"

section() {
cat <<EOF
## Placing orders

Generated by \`scripts/bench-orders.sh\` on $(date -u +%Y-%m-%d) at commit \`$commit\`$dirty, on $model, $(nproc) CPUs,
$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine shows here); $build;
not pinned (the seven services, PostgreSQL and NATS, and the load generator share every CPU). ${measure_secs}s with the build.

\`loadgen --mix place-order\`: each call places an order (CreateOrder of one unit of a random demo product,
paid with \`tok_visa_approved\`); *closed, N*: N callers, each placing its next order as soon as its call
returns; *open, R/s*: R orders a second on a fixed schedule, whatever the flow does. After
$WARMUP of warm-up (a separate run), $DURATION measured; then loadgen reads back every order it placed
(GetOrder, for at most 120 s) and takes **created → COMPLETED** from the order's history: the COMPLETED
entry's time minus the PENDING entry's, both recorded by the services (millisecond resolution), so the
load generator's polling is not in it. Each entry's time is the event time of the service that caused
it, so the hops are: *PENDING → PAID* is orders' relay publishing OrderCreated, payments' consumer
receiving it and charging the card; *PAID → SHIPPED* is payments' relay and fulfillment's consumer;
*SHIPPED → COMPLETED* is fulfillment's relay and the orchestrator's consumer, which commits the
reservation with inventory and decides COMPLETED. **Orders/s** counts completed orders from the first
one's creation to the last one's completion (server times), and over no less than the measured run.
The CreateOrder columns are the call's own latency as loadgen saw it.

EOF
for setup in $SETUPS; do
  case "$setup" in
    embedded) title="SQLite + embedded event log (\`meshctl up\`)"; target=$TARGET_EMBEDDED_MS ;;
    jetstream) title="PostgreSQL + NATS JetStream (a database per service, \`meshctl serve\` each)"; target=$TARGET_JETSTREAM_MS ;;
  esac
  echo "### $title"
  echo
  echo "| load (callers, or orders/s) | orders placed | completed / failed / not final | **orders/s** | **created → COMPLETED p50 ms** | p99 ms | max ms | CreateOrder p50 ms | CreateOrder p99 ms | CreateOrder errors | hops p50 ms: PENDING → PAID / PAID → SHIPPED / SHIPPED → COMPLETED | hops p99 ms |"
  echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
  for run in $RUNS; do
    f="$WORK/$setup-${run/:/-}.json"
    jq -r --arg c "$(label "$run")" '
      def ms: . / 1000 | (. * 10 | round) / 10;
      "| \($c) | \(.orders.placed) | \(.orders.completed) / \(.orders.failed) / \(.orders.unfinished) | **\(.orders.completed_per_sec)** | **\(.orders.end_to_end_us.p50 | ms)** | \(.orders.end_to_end_us.p99 | ms) | \(.orders.end_to_end_us.max | ms) | \(.total.latency_us.p50 | ms) | \(.total.latency_us.p99 | ms) | \(.total.requests - .total.ok) | \(.orders.hops_us["PENDING->PAID"].p50 | ms) / \(.orders.hops_us["PAID->SHIPPED"].p50 | ms) / \(.orders.hops_us["SHIPPED->COMPLETED"].p50 | ms) | \(.orders.hops_us["PENDING->PAID"].p99 | ms) / \(.orders.hops_us["PAID->SHIPPED"].p99 | ms) / \(.orders.hops_us["SHIPPED->COMPLETED"].p99 | ms) |"' "$f"
  done
  echo
  echo "Target: created → COMPLETED p50 ≤ $target ms."
  echo
  echo "| load | p50 | |"
  echo "|---|---:|---|"
  for run in $RUNS; do
    p50="$(jq -r .orders.end_to_end_us.p50 "$WORK/$setup-${run/:/-}.json")"
    echo "| $(label "$run") | $(ms "$p50") ms | $(met "$p50" "$target") |"
  done
  echo
done
if [[ -f bench/orders-analysis.md ]]; then
  cat bench/orders-analysis.md
  echo
fi
echo "Commands of this section (\`\$WORK\` is a fresh temporary directory; the binaries run from a copy in \`\$WORK/bin\`):"
echo
echo '```sh'
printf '%s\n' "${COMMANDS[@]}" | sed "s|$WORK|\$WORK|g"
echo '```'
}

if [[ -n "$SECTION" ]]; then
  section > "$SECTION"
else
  section > "$WORK/section.md"
  awk -v file="$WORK/section.md" '
    function emit() { print "<!-- orders:begin (scripts/bench-orders.sh) -->"; while ((getline line < file) > 0) print line; print "<!-- orders:end -->"; print ""; done = 1 }
    /^<!-- orders:begin/ { emit(); skip = 1; next }
    skip && /^<!-- orders:end/ { skip = 0; getline; if ($0 != "") print; next }
    skip { next }
    /^## Commands/ && !done { emit() }
    /^## Commands/ { commands = 1 }
    { print }
    commands && /^```sh/ && !listed { print "scripts/bench-orders.sh   # the \"Placing orders\" section; its own commands are listed there"; listed = 1 }
  ' "$OUT" | awk '!(/^scripts\/bench-orders.sh   #/ && seen++)' > "$WORK/out.md"
  cp "$WORK/out.md" "$OUT"
fi
echo "bench-orders: wrote the section in $(( $(date +%s) - started_at ))s" >&2
