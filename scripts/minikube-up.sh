#!/usr/bin/env bash
# meshmart on a local minikube cluster: the cluster (with metrics-server, so the HPAs work),
# Istio, the images, the manifests, and a port-forward to the ingress gateway.
# Re-running it is safe (each step reconciles).
#
#   scripts/minikube-up.sh        then follow docs/deploy.md from "Call the shop"
#   scripts/minikube-down.sh      deletes the cluster
#
# Environment: MINIKUBE_PROFILE (meshmart), MINIKUBE_CPUS (4), MINIKUBE_MEMORY (6g),
# ISTIO_VERSION (1.31.4), LOCAL_PORT (8080), PORT_FORWARD=0 to finish without forwarding.
set -euo pipefail
# shellcheck source=scripts/kind-minikube-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kind-minikube-lib.sh"

PROFILE="${MINIKUBE_PROFILE:-meshmart}"
require docker minikube kubectl istioctl

say "minikube profile $PROFILE"
if ! minikube -p "$PROFILE" status >/dev/null 2>&1; then
  minikube start -p "$PROFILE" --cpus="${MINIKUBE_CPUS:-4}" --memory="${MINIKUBE_MEMORY:-6g}"
fi
minikube -p "$PROFILE" addons enable metrics-server
kubectl config use-context "$PROFILE"

install_istio
build_images
say "loading the images into minikube"
for image in $(image_names); do
  minikube -p "$PROFILE" image load "$image"
done
deploy_meshmart minikube
port_forward
