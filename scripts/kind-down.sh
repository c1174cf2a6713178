#!/usr/bin/env bash
# Delete the kind cluster that scripts/kind-up.sh made, and everything in it.
set -euo pipefail
CLUSTER_NAME="${CLUSTER_NAME:-meshmart}"
kind delete cluster --name "$CLUSTER_NAME"
