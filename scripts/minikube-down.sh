#!/usr/bin/env bash
# Delete the minikube cluster that scripts/minikube-up.sh made, and everything in it.
set -euo pipefail
minikube delete -p "${MINIKUBE_PROFILE:-meshmart}"
