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
scripts/check-deploy.sh

step "tests (SQLite and PostgreSQL)"
# MESHMART_REQUIRE_POSTGRES turns a missing PostgreSQL into a failure, not a skip.
MESHMART_REQUIRE_POSTGRES=1 scripts/with-postgres.sh cargo test --workspace --locked
