#!/usr/bin/env bash
# Usage: scripts/publish-contracts.sh [--allow-breaking]
# Records proto/ as the published contracts: rewrites contracts/meshmart.binpb, the buf image
# that `make test` runs `buf breaking --against` (FILE rules, buf.yaml). Run it as part of a
# deliberate release, then commit the image with the release; nothing else writes it.
#
# It refuses when proto/ breaks the contracts published so far: a breaking change means a
# new package version (meshmart.<domain>.v2) beside the old one, not an edit of v1. Pass
# --allow-breaking only when clients of the old contracts are known to be gone.
#
# The image leaves out source info (comments, line numbers): those never make a change
# breaking, and without them the image changes only when the contracts do.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IMAGE=contracts/meshmart.binpb

allow_breaking=0
case "${1:-}" in
  "") ;;
  --allow-breaking) allow_breaking=1 ;;
  *) echo "usage: $0 [--allow-breaking]" >&2; exit 2 ;;
esac

scripts/install-tools.sh >/dev/null
# shellcheck source=scripts/tools.env
. scripts/tools.env

buf lint
if [[ -f "$IMAGE" ]] && ! buf breaking --against "$IMAGE"; then
  if [[ "$allow_breaking" != 1 ]]; then
    echo "publish-contracts: proto/ breaks the published contracts (above); not publishing." >&2
    echo "publish-contracts: add a new package version instead, or pass --allow-breaking." >&2
    exit 1
  fi
  echo "publish-contracts: publishing breaking changes (--allow-breaking)" >&2
fi

mkdir -p "$(dirname "$IMAGE")"
tmp="$(mktemp "$IMAGE.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
buf build --exclude-source-info -o "$tmp#format=binpb"
chmod 644 "$tmp"  # mktemp makes it private
mv "$tmp" "$IMAGE"
trap - EXIT

if git diff --quiet -- "$IMAGE" 2>/dev/null && git ls-files --error-unmatch "$IMAGE" >/dev/null 2>&1; then
  echo "publish-contracts: $IMAGE unchanged (the contracts are as published)"
else
  echo "publish-contracts: wrote $IMAGE ($(wc -c <"$IMAGE") bytes); commit it with the release"
fi
