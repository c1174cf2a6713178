#!/usr/bin/env bash
# meshmart on a local kind cluster: the cluster, Istio, the images, the manifests, and a
# port-forward to the ingress gateway. Re-running it is safe (each step reconciles).
#
#   scripts/kind-up.sh            then follow docs/deploy.md from "Call the shop"
#   scripts/kind-down.sh          deletes the cluster
#
# Environment: CLUSTER_NAME (meshmart), ISTIO_VERSION (1.31.4), LOCAL_PORT (8080),
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
# Through an archive: `kind load docker-image` fails on Docker's containerd image store
# whenever an image carries more than the node's platform; `docker save` writes just the image.
archive_dir="$(mktemp -d)"
trap 'rm -rf "$archive_dir"' EXIT
for image in $(image_names); do
  archive="$archive_dir/$(echo "$image" | tr '/:' '__').tar"
  docker save --output "$archive" "$image"
  kind load image-archive --name "$CLUSTER_NAME" "$archive"
  rm -f "$archive"
done
rmdir "$archive_dir"
trap - EXIT
deploy_meshmart kind
port_forward
