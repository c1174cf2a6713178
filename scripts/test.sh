#!/usr/bin/env bash
# The whole test suite, as the README promises and CI runs it: installs the pinned tools,
# then lints, checks the deployment files, and runs every Rust test against SQLite and a
# throwaway PostgreSQL. Stops at the first failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() {
    printf '\n==> %s\n' "$1"
}

# Everything the test runners print also goes here, to add up the counts at the end.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

step "tools (pinned, into .tools/)"
scripts/install-tools.sh
# shellcheck source=scripts/tools.env
. scripts/tools.env

step "rustfmt"
cargo fmt --all --check

step "buf lint (STANDARD)"
buf lint

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "deployment files"
scripts/check-deploy.sh 2>&1 | tee -a "$log"

step "tests (SQLite and PostgreSQL)"
# MESHMART_REQUIRE_POSTGRES turns a missing PostgreSQL into a failure, not a skip.
MESHMART_REQUIRE_POSTGRES=1 scripts/with-postgres.sh cargo test --workspace --locked 2>&1 | tee -a "$log"

# One closing line for the whole suite: cargo's last lines are per-binary (often a crate's
# doc tests, with nothing in them), and pytest's come before them.
awk '
    /^test result: / { passed += $4; failed += $6; skipped += $8 }
    /^=+ .*(passed|failed).* in [0-9.]+s =+$/ {
        for (i = 2; i < NF; i++) {
            n = $i + 0; word = $(i + 1); sub(/,$/, "", word)
            if (word == "passed") passed += n
            if (word == "failed") failed += n
            if (word == "skipped") skipped += n
        }
    }
    END { printf "total: %d passed, %d failed, %d skipped\n", passed, failed, skipped }
' "$log"
