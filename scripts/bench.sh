#!/usr/bin/env bash
# Benchmarks meshmart on loopback and writes docs/benchmarks.md.
#
# Builds the binaries in the dist profile (what the images ship: fat LTO, one codegen unit),
# then in one run on this machine:
#   - binary sizes, and start-to-SERVING times (loadgen startup, 5 starts per service);
#   - starts echo (the raw tonic baseline on the same runtime), the two-hop echo (a second
#     echo passing each call on to the first, over the client stack catalog uses for
#     inventory), inventory and catalog, pinned to one CPU, with the load generator pinned
#     to another;
#   - resident memory idle; Echo, the two-hop echo, GetProduct and ListProducts (page of 10)
#     closed loop at the same concurrencies; echo, two-hop echo and GetProduct open loop at
#     one fixed rate; each in BENCH_ROUNDS rounds run back to back and reported by the median
#     round, with the CPU the hypervisor took (steal) in each; CPU time and context switches
#     per call of every service; peak memory;
#   - GetProduct and ListProducts again with catalog and inventory on a throwaway
#     PostgreSQL (scripts/with-postgres.sh; BENCH_POSTGRES=1, the default), pinned with them;
#   - instructions per call from callgrind (scripts/bench-callgrind.sh; BENCH_CALLGRIND=1,
#     the default when valgrind is installed), and a perf profile when perf is installed;
#   - docs/benchmarks.md with the machine, versions, exact commands, tables and targets.
# Takes about 4.5 minutes after the build, and says so when it took longer than 5 (a cold
# build does). Traffic goes to 127.0.0.1 only; every run is bounded in time. Not part of the
# test command (timings belong in a report, not a test).
#
# Settings (environment): BENCH_DURATION (2s, one round), BENCH_ROUNDS (3), BENCH_WARMUP (1s),
# BENCH_CONCURRENCY ("1 16 64"), BENCH_RATE (2000 calls/s, open loop),
# BENCH_PORT_BASE (51050: echo, +1 catalog, +2 inventory, +3 two-hop echo, +10.. start-up
# runs; metrics +100),
# BENCH_SERVICE_CPUS (1), BENCH_LOADGEN_CPUS (0), BENCH_PIN (1; 0 lets every process use
# every CPU), BENCH_PROFILE (1 when perf is installed), BENCH_OUT (docs/benchmarks.md),
# BENCH_ORDERS (0; 1: also run scripts/bench-orders.sh, placing orders on both setups, about
# 4 minutes more, else the section it wrote last is kept; `make bench-orders` runs it alone;
# its BENCH_ORDERS_* settings are at its top), BENCH_POSTGRES (1), BENCH_CALLGRIND (1 when
# valgrind is installed), BENCH_MESH (0; 1 as root: also run
# scripts/bench-mesh.sh, the mesh's cost, about 3 minutes more; else the section it wrote
# last is kept).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-2s}"
ROUNDS="${BENCH_ROUNDS:-3}"
WARMUP="${BENCH_WARMUP:-1s}"
LEVELS="${BENCH_CONCURRENCY:-1 16 64}"
RATE="${BENCH_RATE:-2000}"
PORT_BASE="${BENCH_PORT_BASE:-51050}"
SERVICE_CPUS="${BENCH_SERVICE_CPUS:-1}"
LOADGEN_CPUS="${BENCH_LOADGEN_CPUS:-0}"
PIN="${BENCH_PIN:-1}"
OUT="${BENCH_OUT:-docs/benchmarks.md}"
PROFILE="${BENCH_PROFILE:-1}"
ORDERS="${BENCH_ORDERS:-0}"
POSTGRES="${BENCH_POSTGRES:-1}"
CALLGRIND="${BENCH_CALLGRIND:-1}"
# The budget of `make bench` after a warm build, in seconds; the end says when it was over.
BUDGET_SECS=300
BIN="${CARGO_TARGET_DIR:-target}/dist"
CLK_TCK="$(getconf CLK_TCK)"

for tool in jq awk cargo; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool (apt-get install $tool)" >&2; exit 2; }
done
if [[ "$PIN" == 1 ]] && { ! command -v taskset >/dev/null || [[ "$(nproc)" -lt 2 ]]; }; then
  echo "bench: taskset or a second CPU is missing; running unpinned" >&2
  PIN=0
fi
if [[ "$PROFILE" == 1 ]] && ! command -v perf >/dev/null; then
  PROFILE=0
fi
if [[ "$CALLGRIND" == 1 ]] && ! command -v valgrind >/dev/null; then
  echo "bench: valgrind is not installed (apt-get install valgrind): no instruction counts" >&2
  CALLGRIND=0
fi

WORK="$(mktemp -d -t meshmart-bench.XXXXXX)"
PIDS=()
cleanup() {
  # Only the services this script started, by pid.
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

COMMANDS=()
# Words as a shell would need them written: quoted only when they must be.
words() {
  local word out=()
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then out+=("$word"); else out+=("$(printf '%q' "$word")"); fi
  done
  echo "${out[*]}"
}
# Runs a command and remembers it, as written, for the report.
run() {
  COMMANDS+=("$(words "$@")")
  "$@"
}
pin() { # pin CPUS CMD...: CMD on CPUS, when pinning
  local cpus="$1"; shift
  if [[ "$PIN" == 1 ]]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
pin_words() { [[ "$PIN" == 1 ]] && printf 'taskset -c %s ' "$1"; return 0; }

status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
# steal_ticks: "STEAL TOTAL" jiffies of the services' CPUs (all CPUs when unpinned), from
# /proc/stat. Steal is time the hypervisor ran something else while this guest's CPU had
# work: a virtual machine's benchmark is only as good as it is low.
steal_ticks() {
  local cpus="all"
  [[ "$PIN" == 1 ]] && cpus="$SERVICE_CPUS"
  awk -v list="$cpus" '
    BEGIN { n = split(list, parts, ","); for (i = 1; i <= n; i++) {
      if (split(parts[i], r, "-") == 2) { for (c = r[1]; c <= r[2]; c++) want["cpu" c] = 1 } else want["cpu" parts[i]] = 1 } }
    (list == "all" && $1 == "cpu") || want[$1] { for (f = 2; f <= 9; f++) total += $f; steal += $9 }
    END { print steal + 0, total + 0 }' /proc/stat
}

started_at="$(date +%s)"
echo "bench: building the dist binaries" >&2
build_start="$(date +%s)"
run cargo build --profile dist --locked -p catalog -p inventory -p echo -p loadgen
build_secs=$(( $(date +%s) - build_start ))
measure_start="$(date +%s)"

# --- binary sizes ---------------------------------------------------------------------
declare -A SIZE STRIPPED
for svc in echo catalog inventory loadgen; do
  SIZE[$svc]="$(stat -c %s "$BIN/$svc")"
  strip -o "$WORK/$svc.stripped" "$BIN/$svc" 2>/dev/null && STRIPPED[$svc]="$(stat -c %s "$WORK/$svc.stripped")" || STRIPPED[$svc]=""
done
debug_info="symbols kept"
command -v file >/dev/null && debug_info="$(file -L "$BIN/catalog" | grep -o 'not stripped\|stripped' | head -1 || true)"

# --- services -------------------------------------------------------------------------
declare -A PORT HEALTH
PORT[echo]=$PORT_BASE; PORT[catalog]=$((PORT_BASE + 1)); PORT[inventory]=$((PORT_BASE + 2))
PORT[echo2]=$((PORT_BASE + 3))
HEALTH[echo]=meshmart.echo.v1.EchoService
HEALTH[catalog]=meshmart.catalog.v1.CatalogService
HEALTH[inventory]=meshmart.inventory.v1.InventoryService
export RUST_LOG="${RUST_LOG:-info}" LOG_FORMAT=json

# --- start-up: spawn to SERVING, first on an empty data dir, then restarts --------------
echo "bench: timing start-up" >&2
for svc in echo inventory catalog; do
  port=$((PORT[$svc] + 10))
  run env GRPC_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$((port + 100))" \
    DATA_DIR="$WORK/startup-$svc" INVENTORY_ADDR="http://127.0.0.1:$((PORT[inventory] + 10))" \
    "$BIN/loadgen" startup --runs 5 --json --target "http://127.0.0.1:$port" \
    --service "${HEALTH[$svc]}" -- "$BIN/$svc" > "$WORK/startup-$svc.json"
done

echo "bench: starting the services" >&2
declare -A PID
start_service() { # start_service NAME [BINARY [VAR=VALUE...]]
  local svc="$1" binary="${2:-$1}"; shift $(( $# > 1 ? 2 : 1 ))
  local cmd=(env GRPC_ADDR="127.0.0.1:${PORT[$svc]}" METRICS_ADDR="127.0.0.1:$((PORT[$svc] + 100))"
    DATA_DIR="$WORK/data" INVENTORY_ADDR="http://127.0.0.1:${PORT[inventory]}" "$@" "$BIN/$binary")
  [[ "$PIN" == 1 ]] && cmd=(taskset -c "$SERVICE_CPUS" "${cmd[@]}")
  COMMANDS+=("$(words "${cmd[@]}") &")
  # taskset and env exec the service, so $! is the service's own pid.
  "${cmd[@]}" > "$WORK/$svc.log" 2>&1 &
  PID[$svc]=$!
  PIDS+=("$!")
}
start_service inventory
start_service catalog
start_service echo
start_service echo2 echo ECHO_NEXT_ADDR="http://127.0.0.1:${PORT[echo]}"
TARGETS=(--target-catalog "http://127.0.0.1:${PORT[catalog]}" --target-echo "http://127.0.0.1:${PORT[echo]}")
# The two-hop echo is the echo scenario sent to the front of the pair.
TWO_HOPS=(--target-catalog "http://127.0.0.1:${PORT[catalog]}" --target-echo "http://127.0.0.1:${PORT[echo2]}")
run "$BIN/loadgen" wait "${TARGETS[@]}" --mix get-product,echo --wait-timeout 30s 2>> "$WORK/loadgen.log"
run "$BIN/loadgen" wait "${TWO_HOPS[@]}" --mix echo --wait-timeout 30s 2>> "$WORK/loadgen.log"
sleep 2
declare -A IDLE_RSS IDLE_ANON IDLE_FILE
for svc in echo catalog inventory; do
  IDLE_RSS[$svc]="$(status_kib "${PID[$svc]}" VmRSS)"
  IDLE_ANON[$svc]="$(status_kib "${PID[$svc]}" RssAnon)"
  IDLE_FILE[$svc]="$(status_kib "${PID[$svc]}" RssFile)"
done

# --- load -----------------------------------------------------------------------------
# load NAME SERVICES -- LOADGEN-ARGS: a warm-up run, then the measured run, with CPU time
# and context switches of SERVICES over the measured run only, into $WORK/NAME.json.
load() {
  local name="$1" services="$2"; shift 3
  local svc before_cpu=() before_ctx=()
  echo "bench: $name" >&2
  # The exact commands, once: the other rounds repeat them.
  local record=1
  [[ "$name" == *.r[0-9]* && "$name" != *.r1 ]] && record=0
  [[ "$record" == 1 ]] && COMMANDS+=("$(pin_words "$LOADGEN_CPUS")$(words "$BIN/loadgen" "$@" --duration "$WARMUP")")
  pin "$LOADGEN_CPUS" "$BIN/loadgen" "$@" --duration "$WARMUP" > /dev/null 2>> "$WORK/loadgen.log"
  for svc in $services; do before_cpu+=("$(cpu_ticks "${PID[$svc]}")"); before_ctx+=("$(ctx_switches "${PID[$svc]}")"); done
  local steal_before; steal_before="$(steal_ticks)"
  [[ "$record" == 1 ]] && COMMANDS+=("$(pin_words "$LOADGEN_CPUS")$(words "$BIN/loadgen" "$@" --duration "$DURATION" --json)")
  pin "$LOADGEN_CPUS" "$BIN/loadgen" "$@" --duration "$DURATION" --json > "$WORK/$name.load.json" 2>> "$WORK/loadgen.log"
  local steal_after; steal_after="$(steal_ticks)"
  local i=0 extra='{}'
  for svc in $services; do
    local cpu=$(( $(cpu_ticks "${PID[$svc]}") - before_cpu[i] ))
    local ctx=$(( $(ctx_switches "${PID[$svc]}") - before_ctx[i] ))
    extra="$(jq -c --arg s "$svc" --argjson cpu "$cpu" --argjson ctx "$ctx" --argjson tck "$CLK_TCK" \
      '.[$s] = {cpu_secs: ($cpu / $tck), ctx_switches: $ctx}' <<<"$extra")"
    i=$((i + 1))
  done
  local steal_pct
  steal_pct="$(awk -v a="$steal_before" -v b="$steal_after" 'BEGIN { split(a, x, " "); split(b, y, " ")
    t = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }')"
  jq -c --argjson services "$extra" --argjson steal "$steal_pct" '. + {services: $services, steal_pct: $steal}' \
    "$WORK/$name.load.json" > "$WORK/$name.json"
}

# median_round NAME KEY: of the rounds NAME.r1.. ($ROUNDS of them), the one with the median
# KEY (a jq path) becomes NAME.json, with every round's KEY and steal beside it, so that the
# report shows how far the rounds were apart.
median_round() {
  local name="$1" key="$2" r files=()
  for r in $(seq "$ROUNDS"); do files+=("$WORK/$name.r$r.json"); done
  jq -s -c --arg key "$key" '
    (map(getpath($key | ltrimstr(".") | split(".")))) as $values
    | (sort_by(getpath($key | ltrimstr(".") | split(".")))[(length - 1) / 2 | floor])
    + {rounds: $values, rounds_steal_pct: map(.steal_pct)}' "${files[@]}" > "$WORK/$name.json"
}

# Each measured run follows a warm-up run of its own, so that CPU time is read over the
# measured calls only.
COMMON=("${TARGETS[@]}" --wait-timeout 30s)
COMMON2=("${TWO_HOPS[@]}" --wait-timeout 30s)
# Rounds: each ratio's runs back to back, round after round, so that whatever else the
# machine does (see *steal*) hits the read path and its baselines alike; each figure is then
# its median round.
for c in $LEVELS; do
  for r in $(seq "$ROUNDS"); do
    load "echo-c$c.r$r" "echo" -- "${COMMON[@]}" --mix echo --concurrency "$c"
    load "echo2-c$c.r$r" "echo2 echo" -- "${COMMON2[@]}" --mix echo --concurrency "$c"
    load "get-c$c.r$r" "catalog inventory" -- "${COMMON[@]}" --mix get-product --concurrency "$c"
    load "list-c$c.r$r" "catalog inventory" -- "${COMMON[@]}" --mix list-products --page-size 10 --concurrency "$c"
  done
  for n in echo echo2 get list; do median_round "$n-c$c" .total.throughput; done
done
for r in $(seq "$ROUNDS"); do
  load "echo-open.r$r" "echo" -- "${COMMON[@]}" --mix echo --rate "$RATE"
  load "echo2-open.r$r" "echo2 echo" -- "${COMMON2[@]}" --mix echo --rate "$RATE"
  load "get-open.r$r" "catalog inventory" -- "${COMMON[@]}" --mix get-product --rate "$RATE"
done
for n in echo echo2 get; do median_round "$n-open" .total.latency_us.p99; done
declare -A LOAD_RSS
for svc in echo catalog inventory; do LOAD_RSS[$svc]="$(status_kib "${PID[$svc]}" VmRSS)"; done

profile_ok=0
if [[ "$PROFILE" == 1 ]]; then
  echo "bench: profiling catalog and inventory under load" >&2
  COMMANDS+=("$(pin_words "$LOADGEN_CPUS")$(words "$BIN/loadgen" "${TARGETS[@]}" --mix get-product --concurrency 16 --duration 7s) &")
  pin "$LOADGEN_CPUS" "$BIN/loadgen" "${TARGETS[@]}" --mix get-product --concurrency 16 --duration 7s \
    > /dev/null 2>> "$WORK/loadgen.log" &
  loadgen_pid=$!
  sleep 1.5
  for svc in catalog inventory; do
    COMMANDS+=("perf record -q -F 999 -o \$WORK/$svc.perf -p <$svc pid> -- sleep 2")
    perf record -q -F 999 -o "$WORK/$svc.perf" -p "${PID[$svc]}" -- sleep 2 > /dev/null 2>&1 || true
  done
  wait "$loadgen_pid" || true
  [[ -s "$WORK/catalog.perf" && -s "$WORK/inventory.perf" ]] && profile_ok=1
fi

declare -A PEAK_RSS
for svc in echo catalog inventory; do
  # VmHWM is updated lazily and can trail a VmRSS read earlier; the peak is the larger.
  PEAK_RSS[$svc]="$(printf '%s\n' "$(status_kib "${PID[$svc]}" VmHWM)" "$(status_kib "${PID[$svc]}" VmRSS)" "${LOAD_RSS[$svc]}" | sort -n | tail -1)"
done

# Stop the services as Kubernetes would, and check that each drains and exits cleanly.
declare -A EXIT
for svc in catalog echo2 echo inventory; do kill -TERM "${PID[$svc]}"; done
for svc in catalog echo2 echo inventory; do
  if wait "${PID[$svc]}"; then EXIT[$svc]=0; else EXIT[$svc]=$?; fi
done
PIDS=()

# --- the read path on PostgreSQL: a throwaway server, pinned with the services ----------
postgres_ok=0
if [[ "$POSTGRES" == 1 ]]; then
  echo "bench: the read path on PostgreSQL" >&2
  # scripts/with-postgres.sh runs the server for as long as its command runs: here, until
  # this script leaves pg.stop (or 15 minutes pass). The server inherits the pinning.
  COMMANDS+=("$(pin_words "$SERVICE_CPUS")scripts/with-postgres.sh ...   # a throwaway PostgreSQL 15, a database each for catalog and inventory")
  # shellcheck disable=SC2016 # the inner bash expands them
  pin "$SERVICE_CPUS" timeout 900 scripts/with-postgres.sh bash -c \
    'printf "%s\n" "$MESHMART_TEST_POSTGRES_URL" > "$1.tmp" && mv "$1.tmp" "$1"; while [[ ! -e "$2" ]]; do sleep 0.2; done' \
    _ "$WORK/pg.url" "$WORK/pg.stop" > "$WORK/postgres.log" 2>&1 &
  pg_pid=$!
  for _ in $(seq 600); do [[ -s "$WORK/pg.url" ]] || ! kill -0 "$pg_pid" 2>/dev/null && break; sleep 0.1; done
  if [[ -s "$WORK/pg.url" ]]; then
    pg_url="$(cat "$WORK/pg.url")"
    for db in catalog inventory; do /usr/lib/postgresql/15/bin/psql -q "$pg_url" -c "CREATE DATABASE $db" >> "$WORK/postgres.log" 2>&1; done
    start_service inventory inventory DATABASE_URL="${pg_url%/*}/inventory"
    start_service catalog catalog DATABASE_URL="${pg_url%/*}/catalog"
    run "$BIN/loadgen" wait "${TARGETS[@]}" --mix get-product --wait-timeout 30s 2>> "$WORK/loadgen.log"
    for c in $LEVELS; do
      for r in $(seq "$ROUNDS"); do
        load "get-pg-c$c.r$r" "catalog inventory" -- "${COMMON[@]}" --mix get-product --concurrency "$c"
        load "list-pg-c$c.r$r" "catalog inventory" -- "${COMMON[@]}" --mix list-products --page-size 10 --concurrency "$c"
      done
      for n in get-pg list-pg; do median_round "$n-c$c" .total.throughput; done
    done
    for r in $(seq "$ROUNDS"); do
      load "get-pg-open.r$r" "catalog inventory" -- "${COMMON[@]}" --mix get-product --rate "$RATE"
    done
    median_round get-pg-open .total.latency_us.p99
    for svc in catalog inventory; do kill -TERM "${PID[$svc]}"; done
    for svc in catalog inventory; do wait "${PID[$svc]}" || true; done
    postgres_ok=1
  else
    echo "bench: PostgreSQL did not start (its log follows); no PostgreSQL figures" >&2
    cat "$WORK/postgres.log" >&2
  fi
  touch "$WORK/pg.stop"
  wait "$pg_pid" || true
  PIDS=()
fi

# --- instructions per call, by the sibling script -------------------------------------
if [[ "$CALLGRIND" == 1 ]]; then
  echo "bench: instructions per call (scripts/bench-callgrind.sh)" >&2
  COMMANDS+=("scripts/bench-callgrind.sh   # the \"Instructions per call\" section; its settings are at its top")
  BENCH_BIN="$BIN" BENCH_CALLGRIND_SECTION="$WORK/callgrind.md" scripts/bench-callgrind.sh
fi
measure_secs=$(( $(date +%s) - measure_start ))

# --- placing orders: both setups, by the sibling script, into a section of the report ---
if [[ "$ORDERS" == 1 ]]; then
  echo "bench: placing orders (scripts/bench-orders.sh)" >&2
  COMMANDS+=("scripts/bench-orders.sh   # the \"Placing orders\" section; its own commands are listed there")
  BENCH_ORDERS_SECTION="$WORK/orders.md" scripts/bench-orders.sh
elif [[ -f "$OUT" ]]; then
  # Not run (make bench-orders runs it): the section measured last, as it was (it says
  # when and how it was measured).
  awk '/^<!-- orders:begin/ { keep = 1; next } /^<!-- orders:end/ { keep = 0 } keep' "$OUT" > "$WORK/orders.md"
fi

# --- the mesh's cost: with BENCH_MESH=1 as root, by the sibling script (make bench-mesh
# alone); otherwise the section it wrote last is kept ----------------------------------
if [[ "${BENCH_MESH:-0}" == 1 && $EUID -eq 0 ]]; then
  echo "bench: the mesh's cost (scripts/bench-mesh.sh)" >&2
  COMMANDS+=("scripts/bench-mesh.sh   # the \"The mesh's cost\" section (as root)")
  BENCH_MESH_SECTION="$WORK/mesh.md" scripts/bench-mesh.sh
elif [[ -f "$OUT" ]]; then
  # Not root: the section measured last, as it was (it says how it was measured).
  awk '/^<!-- mesh:begin/ { keep = 1; next } /^<!-- mesh:end/ { keep = 0 } keep' "$OUT" > "$WORK/mesh.md"
fi

# --- report ---------------------------------------------------------------------------
j() { jq -r "$2" "$WORK/$1.json"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
size_mib() { [[ -n "$1" ]] && awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }' || echo "n/a"; }
per_call_us() { awk -v s="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", s * 1e6 / n; else print "n/a" }'; }
per_call() { awk -v s="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", s / n; else print "n/a" }'; }
util() { awk -v s="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f%%", 100 * s / t; else print "n/a" }'; }
# met VALUE TARGET min|max: "met", or "missed" and by what factor.
met() {
  awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN {
    ok = (dir == "min") ? v >= t : v <= t
    if (ok) { print "met"; exit }
    if (dir == "min") printf "**missed**: %.2fx short\n", (v > 0 ? t / v : 0)
    else printf "**missed**: %.2fx over\n", v / t
  }'
}
errors() { j "$1" '.total.requests - .total.ok'; }
# round_ratios A B: A's throughput over B's in each round, in round order.
round_ratios() {
  jq -r -s '[.[0].rounds, .[1].rounds] | transpose | map(if .[1] > 0 then (.[0] / .[1] * 100 | round / 100 | tostring) + "x" else "n/a" end) | join(", ")' \
    "$WORK/$1.json" "$WORK/$2.json"
}
exact() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", (b > 0 ? a / b : 0) }'; }
latency_row() {
  echo "| $1 | $(j "$1" .total.requests) | $(ms "$(j "$1" '.total.latency_us.p50')") | $(ms "$(j "$1" '.total.latency_us.p90')") | $(ms "$(j "$1" '.total.latency_us.p99')") | $(ms "$(j "$1" '.total.latency_us["p99.9"]')") | $(ms "$(j "$1" '.total.latency_us.max')") |"
}
version() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock; }

model="$(lscpu | awk -F: '/^Model name/ { gsub(/^ +/, "", $2); print $2; exit }')"
cpus="$(nproc)"
kernel="$(uname -sr)"
memory="$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$( [[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo " (with uncommitted changes)" || true)"
# What the build used, read from Cargo.toml's [profile.dist] (not restated here, so it cannot
# go stale), plus any CARGO_PROFILE_* override from the environment below.
profile_settings="$(python3 -c 'import tomllib
profile = tomllib.load(open("Cargo.toml", "rb"))["profile"]["dist"]
print(", ".join(f"{k} = {v!r}".replace(chr(39), chr(34)) for k, v in profile.items()))')"
profile_note="\`dist\` (\`[profile.dist]\` in Cargo.toml: $profile_settings), as the images"
overrides="$(env | grep -E '^CARGO_PROFILE_(RELEASE|DIST)_' | sort | tr '\n' ' ' || true)"
[[ -n "$overrides" ]] && profile_note="$profile_note, with \`$overrides\`"
placement="services on CPU $SERVICE_CPUS, load generator on CPU $LOADGEN_CPUS (\`taskset\`)"
[[ "$PIN" == 1 ]] || placement="not pinned: services and load generator share all $cpus CPUs"

mkdir -p "$(dirname "$OUT")"
{
cat <<EOF
# Benchmarks

Generated by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) at commit \`$commit\`$dirty. Do not edit by hand:
run the script again. Every figure below comes from that one run, on one machine, over loopback.

## What is measured

- **echo** is the raw tonic baseline: \`meshmart.echo.v1.EchoService/Echo\` (\`bench/echo\`) served by the
  same \`ServiceHost\` and \`runtime::main\` as every meshmart service (the same layers, health,
  reflection, metrics, telemetry and drain), doing no work of its own.
- **two-hop echo** is the floor for GetProduct's two hops: a second echo with \`ECHO_NEXT_ADDR\` set passes
  each call on to the first over the client stack catalog uses for inventory
  (\`meshmart::client::connect_lazy\`, the call context propagated), and returns its reply. What
  GetProduct costs beyond it is the catalog's and inventory's own work.
- **GetProduct** is \`CatalogService/GetProduct\` of a random demo product, answered with live stock
  (one \`BatchGetStock\` call to inventory per request); **ListProducts** a page of 10 products from a
  random start, each with live stock (one batched call).
- The load generator is \`bench/loadgen\`: closed loop (N callers, each waiting for its last reply) and
  open loop (a fixed rate; latency counts from each call's due time, so queueing is not hidden),
  HdrHistogram latencies, errors by gRPC code. Echo sends a 64-byte message each way; a GetProduct
  request is about 25 bytes and its reply about 120.
- Placement: $placement. Catalog and inventory share their one CPU, as the two echoes of the two-hop
  echo do; the one-hop echo has it to itself. Where the load generator is the bottleneck (see
  *CPU busy*), the figures are lower than what the services could do.
- Each run: $WARMUP of the same load to warm up (a separate loadgen process), then $DURATION measured; every run is repeated in $ROUNDS rounds and reported by its median round (closed loop: by throughput; open loop: by p99). Services log JSON at \`RUST_LOG=$RUST_LOG\`,
  as in the cluster. Unless a table says PostgreSQL, catalog and inventory run on SQLite, the embedded default.
- *steal* is the share of the services' CPU time that the hypervisor gave to something else during a
  measured run (\`/proc/stat\`). On a virtual machine it is the noise floor of every throughput figure:
  a run with more steal than another is not comparable with it, and throughput ratios between runs
  with different steal mean little. Instructions per call (callgrind, below) do not depend on it.

## Machine and versions

| | |
|---|---|
| CPU | $model, $cpus CPUs |
| memory | $memory |
| kernel | $kernel |
| load average at the end | $loadavg (other work on the machine shows here) |
| rustc | $(rustc -V) |
| tonic / hyper / h2 / tokio / sqlx | $(version tonic) / $(version hyper) / $(version h2) / $(version tokio) / $(version sqlx) |
| profile | $profile_note |
| build | ${build_secs}s (incremental when the binaries were already built); measuring: ${measure_secs}s |

## The read path against the echo baselines, closed loop

Calls per second, each the median of $ROUNDS rounds of $DURATION (the rounds of one level run back to
back: echo, two-hop echo, GetProduct, ListProducts, then again). The **bold** ratios are the
targets' (below), from the medians; GetProduct against the one-hop echo is reported too. *steal*
is the median round's.

| callers | echo | two-hop echo | GetProduct | ListProducts (10) | **GetProduct ÷ two-hop echo** | GetProduct ÷ echo | **ListProducts ÷ two-hop echo** | GetProduct ÷ two-hop echo, each round | errors (echo / two-hop / get / list) | steal (echo / two-hop / get / list) |
|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|
EOF
for c in $LEVELS; do
  et="$(j "echo-c$c" .total.throughput)"; e2t="$(j "echo2-c$c" .total.throughput)"
  gt="$(j "get-c$c" .total.throughput)"; lt="$(j "list-c$c" .total.throughput)"
  echo "| $c | $et | $e2t | $gt | $lt | **$(ratio "$gt" "$e2t")x** | $(ratio "$gt" "$et")x | **$(ratio "$lt" "$e2t")x** | $(round_ratios "get-c$c" "echo2-c$c") | $(errors "echo-c$c") / $(errors "echo2-c$c") / $(errors "get-c$c") / $(errors "list-c$c") | $(j "echo-c$c" .steal_pct)% / $(j "echo2-c$c" .steal_pct)% / $(j "get-c$c" .steal_pct)% / $(j "list-c$c" .steal_pct)% |"
done
cat <<EOF

Latency distributions (ms):

| run | requests | p50 | p90 | p99 | p99.9 | max |
|---|---:|---:|---:|---:|---:|---:|
EOF
for c in $LEVELS; do
  for run_name in "echo-c$c" "echo2-c$c" "get-c$c" "list-c$c"; do latency_row "$run_name"; done
done
cat <<EOF

## Where the CPU goes, per call

CPU time (user + system, from \`/proc/<pid>/stat\`) and context switches (every thread, from
\`/proc/<pid>/task/*/status\`) of each service over a run, divided by the calls of that run.
*CPU busy* is that CPU time over the run's length: near 100% means the services' CPU was the
bottleneck; well below means the load generator was. Instructions per call, which do not move
with the machine's load, are in *Instructions per call* below.

| callers | echo µs | two-hop echo µs (front + next) | catalog µs | inventory µs | **GetProduct µs** | two-hop ÷ GetProduct | CPU busy: two-hop / GetProduct | context switches per call: two-hop front / next, catalog / inventory |
|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
for c in $LEVELS; do
  en="$(j "echo-c$c" .total.requests)"; e2n="$(j "echo2-c$c" .total.requests)"; gn="$(j "get-c$c" .total.requests)"
  ecpu="$(j "echo-c$c" .services.echo.cpu_secs)"
  fcpu="$(j "echo2-c$c" .services.echo2.cpu_secs)"; ncpu="$(j "echo2-c$c" .services.echo.cpu_secs)"
  ccpu="$(j "get-c$c" .services.catalog.cpu_secs)"; icpu="$(j "get-c$c" .services.inventory.cpu_secs)"
  e2cpu="$(awk -v a="$fcpu" -v b="$ncpu" 'BEGIN { print a + b }')"; gcpu="$(awk -v a="$ccpu" -v b="$icpu" 'BEGIN { print a + b }')"
  e2us="$(per_call_us "$e2cpu" "$e2n")"; gus="$(per_call_us "$gcpu" "$gn")"
  echo "| $c | $(per_call_us "$ecpu" "$en") | $e2us ($(per_call_us "$fcpu" "$e2n") + $(per_call_us "$ncpu" "$e2n")) | $(per_call_us "$ccpu" "$gn") | $(per_call_us "$icpu" "$gn") | **$gus** | $(ratio "$e2us" "$gus")x | $(util "$e2cpu" "$(j "echo2-c$c" .elapsed_secs)") / $(util "$gcpu" "$(j "get-c$c" .elapsed_secs)") | $(per_call "$(j "echo2-c$c" .services.echo2.ctx_switches)" "$e2n") / $(per_call "$(j "echo2-c$c" .services.echo.ctx_switches)" "$e2n"), $(per_call "$(j "get-c$c" .services.catalog.ctx_switches)" "$gn") / $(per_call "$(j "get-c$c" .services.inventory.ctx_switches)" "$gn") |"
done
cat <<EOF

The CPU ratio (the two-hop echo's CPU per call over GetProduct's) is what the throughput ratio tends
to once the services' CPU, not the load generator, is the bottleneck.

## Open loop at $RATE calls/s

Latency from each call's due time, so that a stall is charged to every call it delayed.

| run | requests | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | late sends | errors | steal |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
open_runs="echo-open echo2-open get-open"
[[ "$postgres_ok" == 1 ]] && open_runs="$open_runs get-pg-open"
for run_name in $open_runs; do
  echo "| $run_name | $(j "$run_name" .total.requests) | $(ms "$(j "$run_name" '.total.latency_us.p50')") | $(ms "$(j "$run_name" '.total.latency_us.p90')") | $(ms "$(j "$run_name" '.total.latency_us.p99')") | $(ms "$(j "$run_name" '.total.latency_us["p99.9"]')") | $(ms "$(j "$run_name" '.total.latency_us.max')") | $(j "$run_name" .late_sends) | $(errors "$run_name") | $(j "$run_name" .steal_pct)% |"
done
if [[ "$postgres_ok" == 1 ]]; then
cat <<EOF

## The read path on PostgreSQL

The same runs with catalog and inventory on PostgreSQL 15 (a throwaway server from
\`scripts/with-postgres.sh\`, a database for each, pinned to the services' CPU with them), against the
echo figures above. The targets are for SQLite; these are reported. The CPU columns are the
services' own: the database server's work (on the same CPU) is not in them, but it is in the
throughput.

| callers | GetProduct calls/s | ÷ two-hop echo | p99 ms | ListProducts (10) calls/s | ÷ two-hop echo | catalog µs | inventory µs | context switches per call: catalog / inventory | errors (get / list) | steal (get / list) |
|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|
EOF
for c in $LEVELS; do
  e2t="$(j "echo2-c$c" .total.throughput)"; gt="$(j "get-pg-c$c" .total.throughput)"; lt="$(j "list-pg-c$c" .total.throughput)"
  gn="$(j "get-pg-c$c" .total.requests)"
  echo "| $c | $gt | $(ratio "$gt" "$e2t")x | $(ms "$(j "get-pg-c$c" '.total.latency_us.p99')") | $lt | $(ratio "$lt" "$e2t")x | $(per_call_us "$(j "get-pg-c$c" .services.catalog.cpu_secs)" "$gn") | $(per_call_us "$(j "get-pg-c$c" .services.inventory.cpu_secs)" "$gn") | $(per_call "$(j "get-pg-c$c" .services.catalog.ctx_switches)" "$gn") / $(per_call "$(j "get-pg-c$c" .services.inventory.ctx_switches)" "$gn") | $(errors "get-pg-c$c") / $(errors "list-pg-c$c") | $(j "get-pg-c$c" .steal_pct)% / $(j "list-pg-c$c" .steal_pct)% |"
done
fi
if [[ -s "$WORK/callgrind.md" ]]; then
  echo
  cat "$WORK/callgrind.md"
fi
if [[ -s "$WORK/orders.md" ]]; then
  echo
  echo "<!-- orders:begin (scripts/bench-orders.sh) -->"
  cat "$WORK/orders.md"
  echo "<!-- orders:end -->"
fi
if [[ -s "$WORK/mesh.md" ]]; then
  echo
  echo "<!-- mesh:begin (scripts/bench-mesh.sh) -->"
  cat "$WORK/mesh.md"
  echo "<!-- mesh:end -->"
fi
cat <<EOF

## Footprint

| service | binary MiB (as built / stripped) | start to SERVING ms: first (new database) / restart median / max | RSS idle MiB (anon + file) | RSS after the closed-loop runs MiB | peak RSS (VmHWM) MiB | exit on SIGTERM |
|---|---:|---:|---:|---:|---:|---:|
EOF
for svc in echo catalog inventory; do
  echo "| $svc | $(size_mib "${SIZE[$svc]}") / $(size_mib "${STRIPPED[$svc]}") | $(j "startup-$svc" .first_ms) / $(j "startup-$svc" .restart_median_ms) / $(j "startup-$svc" .max_ms) | $(mib "${IDLE_RSS[$svc]}") ($(mib "${IDLE_ANON[$svc]}") + $(mib "${IDLE_FILE[$svc]}")) | $(mib "${LOAD_RSS[$svc]}") | $(mib "${PEAK_RSS[$svc]}") | ${EXIT[$svc]} |"
done
echo "| loadgen | $(size_mib "${SIZE[loadgen]}") / $(size_mib "${STRIPPED[loadgen]}") | | | | | |"
cat <<EOF

- Binaries as \`cargo build --profile dist\` leaves them ($debug_info); *stripped* is \`strip\` of a copy.
- Start to SERVING: \`loadgen startup\` spawns the binary and polls \`grpc.health.v1.Health/Check\`: refused
  connections are retried every 1 ms, and once the port is bound the check waits in the backlog and is
  answered the moment the server runs, so the figure is late by at most ~1 ms and never early. The
  first of 5 starts creates and seeds the SQLite database; the others reopen it. Not pinned.
- RSS is \`VmRSS\` of \`/proc/<pid>/status\`; *anon* is heap and stacks, *file* is mapped pages of the
  binary and libraries (shared, and reclaimable under memory pressure). Idle is 2 s after SERVING.
  Peak is \`VmHWM\` at the end of every run, so it covers all the load above (up to $(echo "$LEVELS" | awk '{ print $NF }') callers).

## Targets

| target | measured | |
|---|---|---|
EOF
# target NAME VALUE TARGET min|max SHOWN: a row of the targets table, judged (and the
# shortfall computed) on the unrounded VALUE.
target() { echo "| $1 | $5 | $(met "$2" "$3" "$4") |"; }
for c in $LEVELS; do
  e2t="$(j "echo2-c$c" .total.throughput)"; gt="$(j "get-c$c" .total.throughput)"
  target "GetProduct throughput ≥ 0.80x the two-hop echo, $c callers" "$(exact "$gt" "$e2t")" 0.80 min "$(ratio "$gt" "$e2t")x"
done
for c in $LEVELS; do
  e2t="$(j "echo2-c$c" .total.throughput)"; lt="$(j "list-c$c" .total.throughput)"
  target "ListProducts (10) throughput ≥ 0.50x the two-hop echo, $c callers" "$(exact "$lt" "$e2t")" 0.50 min "$(ratio "$lt" "$e2t")x"
done
g99="$(j get-open '.total.latency_us.p99')"; e99="$(j echo2-open '.total.latency_us.p99')"
target "GetProduct p99 ≤ 1.5x the two-hop echo's, open loop at $RATE calls/s" "$(exact "$g99" "$e99")" 1.5 max "$(ratio "$g99" "$e99")x ($(ms "$g99") ms against $(ms "$e99") ms)"
for svc in echo catalog inventory; do
  # Judged on KiB, not on the rounded MiB shown.
  idle="$(mib "${IDLE_RSS[$svc]}")"; peak="$(mib "${PEAK_RSS[$svc]}")"; first="$(j "startup-$svc" .max_ms)"
  echo "| $svc RSS idle ≤ 10 MiB | $idle MiB (${IDLE_RSS[$svc]} KiB) | $(met "${IDLE_RSS[$svc]}" 10240 max) |"
  echo "| $svc RSS under load ≤ 30 MiB | $peak MiB peak | $(met "${PEAK_RSS[$svc]}" 30720 max) |"
  echo "| $svc SERVING within 100 ms of start | $first ms, slowest of 5 | $(met "$first" 100 max) |"
done

if [[ "$profile_ok" == 1 ]]; then
cat <<EOF

## Profile: catalog and inventory under GetProduct load (16 callers)

\`perf record -F 999 -p <pid> -- sleep 2\` of each service during a closed-loop GetProduct run, grouped by
where the samples fall (a rough grouping by symbol name):

| where | catalog | inventory |
|---|---:|---:|
EOF
  categorize() {
    perf report -i "$1" --no-children --sort dso,sym --stdio -g none 2>/dev/null | awk '
      /^ +[0-9.]+%/ {
        pct = $1; sub(/%/, "", pct); line = $0
        if (line ~ /\[k\]/ && line ~ /finish_task_switch|schedule|futex|wake_up|switch_to|_raw_spin_unlock_irq|pick_next|enqueue|dequeue|update_curr|idle/) c = "kernel: thread sleeps and wake-ups (futex, scheduler)"
        else if (line ~ /\[k\]/) c = "kernel: sockets, system calls, other"
        else if (line ~ /sqlite|btree|pcache|[Vv]dbe|pager|Pager|walIndex|sqlite3/) c = "SQLite engine"
        else if (line ~ /sqlx|flume/) c = "sqlx (pool, worker-thread channels, Any driver)"
        else if (line ~ /h2::|hyper|tonic|prost|hpack|http::|bytes::/) c = "HTTP/2 and gRPC (h2, hyper, tonic, prost)"
        else if (line ~ /tracing|opentelemetry|sharded_slab/) c = "tracing spans and OpenTelemetry"
        else if (line ~ /libc\.so|ld-linux|malloc|free|memmove|memcpy/) c = "libc: allocator, memcpy"
        else if (line ~ /tokio|mio|parking/) c = "tokio runtime"
        else c = "other"
        share[c] += pct
      }
      END { for (c in share) printf "%s\t%.1f\n", c, share[c] }'
  }
  categorize "$WORK/catalog.perf" | sort > "$WORK/catalog.cat"
  categorize "$WORK/inventory.perf" | sort > "$WORK/inventory.cat"
  join -t $'\t' -a1 -a2 -e 0 -o 0,1.2,2.2 "$WORK/catalog.cat" "$WORK/inventory.cat" \
    | sort -t $'\t' -k2 -nr | awk -F'\t' '{ printf "| %s | %s%% | %s%% |\n", $1, $2, $3 }'
  echo
  echo "Samples by thread:"
  echo
  echo '```'
  for svc in catalog inventory; do
    echo "$svc:"
    perf report -i "$WORK/$svc.perf" --no-children --sort comm --stdio -g none 2>/dev/null | awk '/^ +[0-9.]+%/ { print "  " $0 }'
  done
  echo '```'
  echo
  echo "Top symbols of catalog:"
  echo
  echo '```'
  perf report -i "$WORK/catalog.perf" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
    | awk '/^ +[0-9.]+%/ && n++ < 15' | cut -c1-150
  echo '```'
fi

if [[ -f bench/analysis.md ]]; then
  echo
  cat bench/analysis.md
fi

cat <<'EOF'

## Commands

Exactly what ran (`$WORK` is a fresh temporary directory; the services get `LOG_FORMAT=json`):

```sh
EOF
printf '%s\n' "${COMMANDS[@]}" | sed "s|$WORK|\$WORK|g"
cat <<'EOF'
```

Run it yourself with `scripts/bench.sh` (settings at the top of the script). The smoke run of the load
generator, with no timing in it, is part of the tests: `cargo test -p loadgen`.
EOF
} > "$OUT"

echo "bench: wrote $OUT in $(( $(date +%s) - started_at ))s (build ${build_secs}s, measuring ${measure_secs}s)" >&2
total_secs=$(( $(date +%s) - started_at ))
if (( total_secs > BUDGET_SECS )); then
  if (( total_secs - build_secs <= BUDGET_SECS )); then
    echo "bench: took ${total_secs}s, over the $((BUDGET_SECS / 60))-minute budget of \`make bench\` because the build took ${build_secs}s (a cold build); with the binaries built it takes $((total_secs - build_secs))s" >&2
  else
    echo "bench: took ${total_secs}s, over the $((BUDGET_SECS / 60))-minute budget of \`make bench\` even without the build (${build_secs}s): the runs above are too long for it" >&2
  fi
fi
