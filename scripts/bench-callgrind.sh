#!/usr/bin/env bash
# Instructions per call, counted by callgrind, for the read path and its baselines:
#   - one GetProduct through catalog and inventory (SQLite, the embedded default);
#   - one ListProducts (page of 10) through both;
#   - one call through the two-hop echo (echo passing it on to a second echo), and the
#     one-hop echo.
# Each service runs under `valgrind --tool=callgrind`; the load generator sends a warm-up,
# the counters are zeroed (`callgrind_control --zero`), it sends the measured calls one at a
# time, and the counters are dumped. Instructions barely move with the machine's load, so a
# regression shows here as a number where CPU time would drown it in noise. They count user
# space only: system calls and context switches (the kernel's share) are not in them. The
# allocator (glibc's malloc) is counted like any code, and its calls are counted too (the
# table's *allocations* column).
#
# Writes a markdown section to BENCH_CALLGRIND_SECTION (stdout when unset). scripts/bench.sh
# runs it after the load runs (BENCH_CALLGRIND=1, the default when valgrind is installed).
# Every process it starts is stopped; every wait is bounded.
#
# Settings (environment): BENCH_CALLGRIND_CALLS (1000 measured calls), BENCH_CALLGRIND_WARMUP
# (200), BENCH_CALLGRIND_PORT_BASE (51250: catalog, +1 inventory, +2 echo, +3 the two-hop
# echo's front; metrics +100), BENCH_BIN (target/dist: the binaries to run, built with
# symbols: `cargo build --profile dist`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CALLS="${BENCH_CALLGRIND_CALLS:-1000}"
WARMUP_CALLS="${BENCH_CALLGRIND_WARMUP:-200}"
PORT_BASE="${BENCH_CALLGRIND_PORT_BASE:-51250}"
BIN="${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/dist}"
SECTION="${BENCH_CALLGRIND_SECTION:-/dev/stdout}"

for tool in valgrind callgrind_control jq; do
  command -v "$tool" >/dev/null || { echo "bench-callgrind: needs $tool (apt-get install valgrind jq)" >&2; exit 2; }
done
for bin in catalog inventory echo loadgen; do
  [[ -x "$BIN/$bin" ]] || { echo "bench-callgrind: $BIN/$bin is missing: cargo build --profile dist -p $bin" >&2; exit 2; }
done

WORK="$(mktemp -d -t meshmart-callgrind.XXXXXX)"
declare -A PID
cleanup() {
  for pid in "${PID[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PID[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n "${BENCH_CALLGRIND_KEEP:-}" ]] && cp -r "$WORK" "$BENCH_CALLGRIND_KEEP"; rm -rf "$WORK"
}
trap cleanup EXIT

declare -A PORT
PORT[catalog]=$PORT_BASE; PORT[inventory]=$((PORT_BASE + 1)); PORT[echo]=$((PORT_BASE + 2)); PORT[echo2]=$((PORT_BASE + 3))
export RUST_LOG="${RUST_LOG:-info}" LOG_FORMAT=json

# start NAME BINARY [VAR=VALUE...]: BINARY under callgrind as NAME, its counters off the
# books until zeroed.
start() {
  local name="$1" binary="$2"; shift 2
  env GRPC_ADDR="127.0.0.1:${PORT[$name]}" METRICS_ADDR="127.0.0.1:$((PORT[$name] + 100))" \
    DATA_DIR="$WORK/data" INVENTORY_ADDR="http://127.0.0.1:${PORT[inventory]}" "$@" \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" --dump-instr=no \
    "$BIN/$binary" > "$WORK/$name.log" 2>&1 &
  PID[$name]=$!
}
loadgen() { "$BIN/loadgen" "$@" --wait-timeout 120s --timeout 30s --concurrency 1 2>> "$WORK/loadgen.log"; }

# measure SETUP "SERVICES" LOADGEN-ARGS...: warm-up, zero, measured calls, dump; the
# instructions per call of each service into $WORK/SETUP.SERVICE.ir.
measure() {
  local setup="$1" services="$2"; shift 2
  local svc
  echo "bench-callgrind: $setup" >&2
  loadgen "$@" --max-requests "$WARMUP_CALLS" --duration 300s > /dev/null
  for svc in $services; do callgrind_control --zero "${PID[$svc]}" > /dev/null; done
  loadgen "$@" --max-requests "$CALLS" --duration 600s --json > "$WORK/$setup.json"
  local ok; ok="$(jq -r .total.ok "$WORK/$setup.json")"
  [[ "$ok" == "$CALLS" ]] || { echo "bench-callgrind: $setup: $ok of $CALLS calls succeeded" >&2; exit 1; }
  for svc in $services; do
    rm -f "$WORK/$svc.out".*
    callgrind_control --dump="$setup" "${PID[$svc]}" > /dev/null
    local dump
    # The dump is written by the service itself, a moment after the request.
    for _ in $(seq 100); do
      dump=""
      for file in "$WORK/$svc.out".*; do [[ -e "$file" ]] && { dump="$file"; break; }; done
      [[ -n "$dump" ]] && grep -q '^totals:\|^summary:' "$dump" && break
      sleep 0.1
    done
    [[ -n "$dump" ]] || { echo "bench-callgrind: no dump from $svc" >&2; exit 1; }
    cp "$dump" "$WORK/$setup.$svc.dump"
    awk '/^(totals|summary):/ { print $2; exit }' "$dump" > "$WORK/$setup.$svc.ir"
    allocations "$dump" > "$WORK/$setup.$svc.allocs"
    awk -f scripts/callgrind-self.awk "$dump" | sort -t $'\t' -k1 -nr > "$WORK/$setup.$svc.self"
  done
}

# Calls into the allocator (malloc, calloc, realloc and the aligned ones) in a dump.
# Callgrind names a function once, as `cfn=(id) name`, and by `cfn=(id)` after that.
allocations() {
  awk '
    /^c?fn=\(/ {
      id = $0; sub(/^c?fn=/, "", id); name = id; sub(/\).*/, ")", id); sub(/^\([0-9]+\) ?/, "", name)
      if (name != "") names[id] = name
      if ($0 ~ /^cfn=/) callee = names[id]
      next
    }
    /^calls=/ {
      n = $0; sub(/^calls=/, "", n); sub(/ .*/, "", n)
      if (callee ~ /^(malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign)$/) total += n
      callee = ""
    }
    END { print total + 0 }' "$1"
}

stop() { # stop NAME...
  local svc
  for svc in "$@"; do kill -TERM "${PID[$svc]}" 2>/dev/null || true; done
  for svc in "$@"; do wait "${PID[$svc]}" 2>/dev/null || true; unset "PID[$svc]"; done
}

GET=(--target-catalog "http://127.0.0.1:${PORT[catalog]}")
start inventory inventory
start catalog catalog
measure get "catalog inventory" "${GET[@]}" --mix get-product
measure list "catalog inventory" "${GET[@]}" --mix list-products --page-size 10
stop catalog inventory

start echo echo
start echo2 echo ECHO_NEXT_ADDR="http://127.0.0.1:${PORT[echo]}"
measure echo2 "echo2 echo" --target-echo "http://127.0.0.1:${PORT[echo2]}" --mix echo
measure echo "echo" --target-echo "http://127.0.0.1:${PORT[echo]}" --mix echo
stop echo echo2

ir() { awk -v n="$CALLS" '{ printf "%.0f", $1 / n }' "$WORK/$1.$2.ir"; }
allocs() { awk -v n="$CALLS" '{ printf "%.1f", $1 / n }' "$WORK/$1.$2.allocs"; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a + b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# Self instructions grouped by where they run: the first crate named in the function's path
# (so `<h2::proto::Connection as Future>::poll` is h2), SQLite's C functions, and glibc (the
# allocator, memcpy), as a share of the service's total.
by_crate() {
  awk -F'\t' -v total="$2" '
    {
      fn = $2
      if (fn ~ /^(sqlite3|btree|pager|vdbe|pcache|wal)/) c = "SQLite (C)"
      else if (fn ~ /^_?_?(int_)?(malloc|free|realloc|calloc|memcpy|memmove|memset|memcmp|strlen|mem|str|__)/ || fn ~ /^_int_|malloc_consolidate|^cfree|^__memcpy|^__mem/) c = "glibc (allocator, memcpy, ...)"
      else if (match(fn, /[A-Za-z_][A-Za-z0-9_]*::/)) c = substr(fn, RSTART, RLENGTH - 2)
      else c = "other"
      if (c ~ /^(core|alloc|std)$/) c = "Rust std (core, alloc, std)"
      share[c] += $1
    }
    END { for (c in share) printf "%s\t%.1f\n", c, 100 * share[c] / total }' "$1" | sort -t $'\t' -k2 -nr | head -14
}

{
  g_cat="$(ir get catalog)"; g_inv="$(ir get inventory)"; g="$(sum "$g_cat" "$g_inv")"
  l_cat="$(ir list catalog)"; l_inv="$(ir list inventory)"; l="$(sum "$l_cat" "$l_inv")"
  e2_front="$(ir echo2 echo2)"; e2_back="$(ir echo2 echo)"; e2="$(sum "$e2_front" "$e2_back")"
  e1="$(ir echo echo)"
  cat <<EOF
## Instructions per call (callgrind)

\`scripts/bench-callgrind.sh\`: each service under \`valgrind --tool=callgrind\` (the same \`dist\`
binaries), $WARMUP_CALLS calls to warm up, counters zeroed, then $CALLS calls one at a time and the counters
dumped; every thread of the process is counted. User space only: the kernel's share (system calls,
context switches) is not in these numbers, which is why they move so little with the machine's load.

| call | first service | second service | **total per call** | ratio to the two-hop echo | allocations per call (first / second) |
|---|---:|---:|---:|---:|---:|
| GetProduct (catalog, inventory) | $g_cat | $g_inv | **$g** | $(ratio "$g" "$e2")x | $(allocs get catalog) / $(allocs get inventory) |
| ListProducts, page of 10 (catalog, inventory) | $l_cat | $l_inv | **$l** | $(ratio "$l" "$e2")x | $(allocs list catalog) / $(allocs list inventory) |
| two-hop echo (front, next) | $e2_front | $e2_back | **$e2** | 1.00x | $(allocs echo2 echo2) / $(allocs echo2 echo) |
| echo | $e1 | | **$e1** | $(ratio "$e1" "$e2")x | $(allocs echo echo) |

Where a GetProduct's instructions run, by crate (exclusive instructions, share of each service's total):

| where | catalog | inventory |
|---|---:|---:|
EOF
  by_crate "$WORK/get.catalog.self" "$(cat "$WORK/get.catalog.ir")" > "$WORK/cat.crates"
  by_crate "$WORK/get.inventory.self" "$(cat "$WORK/get.inventory.ir")" > "$WORK/inv.crates"
  sort "$WORK/cat.crates" > "$WORK/cat.sorted"; sort "$WORK/inv.crates" > "$WORK/inv.sorted"
  join -t $'\t' -a1 -a2 -e 0 -o 0,1.2,2.2 "$WORK/cat.sorted" "$WORK/inv.sorted" \
    | sort -t $'\t' -k2 -nr | awk -F'\t' '{ printf "| %s | %s%% | %s%% |\n", $1, $2, $3 }'
  echo
  echo "The same for the two-hop echo's front (what any service pays to serve a call and make one):"
  echo
  echo "| where | two-hop echo, front |"
  echo "|---|---:|"
  by_crate "$WORK/echo2.echo2.self" "$(cat "$WORK/echo2.echo2.ir")" | awk -F'\t' '{ printf "| %s | %s%% |\n", $1, $2 }'
  echo
  for svc in catalog inventory; do
    echo "Top functions of $svc in a GetProduct, by their own instructions per call:"
    echo
    echo '```'
    awk -F'\t' -v n="$CALLS" 'NR <= 15 { printf "%8.0f  %s\n", $1 / n, substr($2, 1, 140) }' "$WORK/get.$svc.self"
    echo '```'
    echo
  done
} > "$SECTION"
echo "bench-callgrind: done" >&2
