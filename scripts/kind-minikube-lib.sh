#!/usr/bin/env bash
# Steps that scripts/kind-up.sh and scripts/minikube-up.sh share, once the cluster exists
# and kubectl points at it. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAMESPACE=meshmart
# The Istio release these manifests are checked against (its CRD schemas); istioctl must match.
ISTIO_VERSION="${ISTIO_VERSION:-1.31.4}"
LOCAL_PORT="${LOCAL_PORT:-8080}"

say() { printf '\n== %s\n' "$*" >&2; }

require() {
  local missing=()
  for cmd in "$@"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing: ${missing[*]} (docs/deploy.md says where to get each)" >&2
    exit 1
  fi
}

# Istio's demo profile: istiod and small proxy requests. (It has a shared ingress gateway,
# istio-system/istio-ingressgateway, which meshmart does not use: the chart brings its own,
# meshmart/meshmart-gateway.) Idempotent: re-running reconciles the same install.
install_istio() {
  local have
  have="$(istioctl version --remote=false 2>/dev/null | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true)"
  if [ "$have" != "$ISTIO_VERSION" ]; then
    echo "istioctl is ${have:-unknown}, expected $ISTIO_VERSION. Install it with:" >&2
    echo "  curl -L https://istio.io/downloadIstio | ISTIO_VERSION=$ISTIO_VERSION sh -" >&2
    echo "or set ISTIO_VERSION=$have to use yours." >&2
    exit 1
  fi
  say "Istio $ISTIO_VERSION (demo profile)"
  istioctl install -y --set profile=demo
  kubectl -n istio-system rollout status deployment/istiod --timeout=300s
  kubectl -n istio-system rollout status deployment/istio-ingressgateway --timeout=300s
}

# The images, built on the host by scripts/build-images.sh, named as the manifests expect.
build_images() {
  say "images"
  "$ROOT/scripts/build-images.sh"
}

image_names() { "$ROOT/scripts/build-images.sh" --list; }

# The workloads (k8s/overlays/<overlay>), then the mesh configuration (istio/), then wait.
# Policies go in right behind the namespace, before the pods are ready to serve.
deploy_meshmart() {
  local overlay="$1"
  say "meshmart (k8s/overlays/$overlay, istio/)"
  kubectl apply -k "$ROOT/k8s/overlays/$overlay"
  kubectl apply -k "$ROOT/istio"
  kubectl -n "$NAMESPACE" rollout status statefulset/postgres --timeout=300s
  kubectl -n "$NAMESPACE" rollout status statefulset/nats --timeout=300s
  # The roles and databases (the setup Job, idempotent), then every Deployment, the gateway's too.
  kubectl -n "$NAMESPACE" wait --for=condition=Complete job -l app=meshmart-postgres-setup --timeout=300s
  kubectl -n "$NAMESPACE" wait --for=condition=Available deployment --all --timeout=300s
  kubectl -n "$NAMESPACE" get pods
}

# Forward localhost:$LOCAL_PORT to the ingress gateway, in the foreground (Ctrl-C stops it).
port_forward() {
  if [ "${PORT_FORWARD:-1}" = 0 ]; then
    return
  fi
  say "ingress on localhost:$LOCAL_PORT (Ctrl-C to stop forwarding; the cluster keeps running)"
  cat >&2 <<MSG
In another terminal:
  TOKEN=\$(python3 scripts/mint-jwt.py)
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" localhost:$LOCAL_PORT list
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{}' localhost:$LOCAL_PORT meshmart.catalog.v1.CatalogService/ListProducts
MSG
  # The release's own ingress gateway (helm/meshmart, ingress.gateway.create).
  exec kubectl -n "$NAMESPACE" port-forward svc/meshmart-gateway "$LOCAL_PORT:80"
}
