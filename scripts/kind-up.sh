#!/usr/bin/env bash
# meshmart on a local kind cluster: the cluster, Istio, the images, the manifests, and a
# port-forward to the ingress gateway. Re-running it is safe (each step reconciles).
#
#   scripts/kind-up.sh            then follow docs/deploy.md from "Call the shop"
#   scripts/kind-down.sh          deletes the cluster
#
# Environment: CLUSTER_NAME (meshmart), ISTIO_VERSION (1.30.1), LOCAL_PORT (8080),
# PORT_FORWARD=0 to finish without forwarding.
set -euo pipefail
# shellcheck source=scripts/kind-minikube-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kind-minikube-lib.sh"

CLUSTER_NAME="${CLUSTER_NAME:-meshmart}"
require docker kind kubectl istioctl

say "kind cluster $CLUSTER_NAME"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  kind create cluster --name "$CLUSTER_NAME" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME"

install_istio
build_images
say "loading the images into the kind nodes"
for image in $(image_names); do
  kind load docker-image --name "$CLUSTER_NAME" "$image"
done
deploy_meshmart kind
port_forward
