#!/usr/bin/env bash
# The whole test suite, as the README promises and CI runs it: installs the pinned tools,
# then lints, checks the contracts against the published ones and the dependencies against
# deny.toml, checks the deployment files, runs every Rust test against SQLite, a
# throwaway PostgreSQL and a throwaway NATS with JetStream, the observability tests (the
# shop under a real Jaeger and Prometheus) and the edge's (REST/JSON through Envoy).
# Stops at the first failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Each step says how long it took when the next one starts (and the last at the end).
step_name="" step_start=0
step_done() {
    [[ -z "$step_name" ]] || printf '<== %s: %ds\n' "$step_name" "$((SECONDS - step_start))"
}
step() {
    step_done
    step_name="$1" step_start=$SECONDS
    printf '\n==> %s\n' "$1"
}

# Everything the test runners print also goes here, to add up the counts at the end.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step "tools (pinned, into .tools/)"
scripts/install-tools.sh
# etcd, kube-apiserver, kube-controller-manager, istioctl and istiod (pilot-discovery and
# pilot-agent, for the mesh test), Prometheus, promtool and Jaeger (the observability
# tests), built from their Go modules into
# a cache outside the clone (the first time on a machine takes long: docs/development.md,
# "Time budget"; links after that), and kubectl 1.37.
scripts/install-go-tools.sh
# shellcheck source=scripts/tools.env
. scripts/tools.env

step "rustfmt"
cargo fmt --all --check
# The fuzz targets are a workspace of their own (fuzz/), which --all does not reach.
cargo fmt --manifest-path fuzz/Cargo.toml --all --check

step "buf lint (STANDARD)"
buf lint

step "buf breaking (FILE, against the published contracts/meshmart.binpb)"
buf breaking --against contracts/meshmart.binpb
# ...and proof that it fails when it should (scripts/publish-contracts.sh updates the image).
PYTHONDONTWRITEBYTECODE=1 .tools/venv/bin/python -m pytest tests/contracts -p no:cacheprovider -ra 2>&1 \
    | tee -a "$log"

step "cargo deny (licenses, bans, sources; deny.toml)"
# --workspace: the root manifest is also a package, and every member must be checked.
# -D warnings: an allowed licence that no crate uses, or a skip that matches nothing, fails.
# No advisories: that needs the RustSec database from outside the package registries.
cargo deny --workspace --locked check -D warnings licenses bans sources

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "fuzz targets (clippy only; running them: docs/development.md)"
# So they cannot rot unseen. Not fuzzing (minutes per target, nightly-only sanitizer flags),
# and without libFuzzer's C++ runtime (--no-default-features): type checking needs none of
# it. In the workspace's target/, the dependencies the step above checked are reused: about
# 40 s cold, a second or two warm.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" cargo clippy --manifest-path fuzz/Cargo.toml --locked \
    --no-default-features --bins -- -D warnings

step "deployment files"
scripts/check-deploy.sh 2>&1 | tee -a "$log"

step "tests (SQLite, PostgreSQL, NATS JetStream, a Kubernetes API server and the mesh)"
# MESHMART_REQUIRE_POSTGRES, MESHMART_REQUIRE_NATS, MESHMART_REQUIRE_KUBE and
# MESHMART_REQUIRE_ISTIOCTL turn a missing server or tool into a failure, not a skip. The
# servers are throwaway ones on free loopback ports; the API server (tests/kube-harness) is
# started by its tests. The mesh tests (tests/kube-harness/tests/mesh) need root for their
# network namespaces: as root (CI) a missing piece fails them (MESHMART_REQUIRE_MESH); any
# other user gets a loud skip.
require_mesh=0
[[ $EUID -eq 0 ]] && require_mesh=1
MESHMART_REQUIRE_POSTGRES=1 MESHMART_REQUIRE_NATS=1 MESHMART_REQUIRE_KUBE=1 MESHMART_REQUIRE_ISTIOCTL=1 \
    MESHMART_REQUIRE_MESH=$require_mesh \
    scripts/with-postgres.sh scripts/with-nats.sh cargo test --workspace --locked 2>&1 | tee -a "$log"

step "observability (real Jaeger and Prometheus)"
# The alert rules and dashboards checked by promtool, then the whole shop (meshctl up)
# traced by Jaeger v2 and scraped by Prometheus, both built by install-go-tools.sh above.
# They run target/debug/meshctl as `cargo test` built it for meshctl's own black-box tests
# (with the test features, inert unless asked for): a separate `cargo build -p meshctl`
# would relink the whole shop without them, about 90 s for nothing.
# MESHMART_REQUIRE_OBSERVABILITY: a missing tool fails, not skips.
MESHMART_REQUIRE_OBSERVABILITY=1 PYTHONDONTWRITEBYTECODE=1 .tools/venv/bin/python -m pytest tests/observability \
    -p no:cacheprovider -ra 2>&1 | tee -a "$log"

step "edge (REST/JSON through meshctl edge's Envoy, grpcurl, Newman, schemathesis)"
# The shop behind `meshctl edge` (Envoy with the gateway's transcoder config): REST calls and
# their JSON errors, gRPC on the same port, the served OpenAPI, the Postman collection under
# Newman, and schemathesis from the OpenAPI.
PYTHONDONTWRITEBYTECODE=1 .tools/venv/bin/python -m pytest tests/edge -p no:cacheprovider -ra 2>&1 | tee -a "$log"
step_done

# One closing line for the whole suite: cargo's last lines are per-binary (often a crate's
# doc tests, with nothing in them), and pytest's come before them (past a minute, pytest
# adds the time as "(0:01:52)" to its summary line).
awk '
    /^test result: / { passed += $4; failed += $6; skipped += $8 }
    /^=+ .*(passed|failed).* in [0-9.]+s( \([0-9:]+\))? =+$/ {
        for (i = 2; i < NF; i++) {
            n = $i + 0; word = $(i + 1); sub(/,$/, "", word)
            if (word == "passed") passed += n
            if (word == "failed") failed += n
            if (word == "skipped") skipped += n
        }
    }
    END { printf "total: %d passed, %d failed, %d skipped\n", passed, failed, skipped }
' "$log"
