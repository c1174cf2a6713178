"""The image build, statically (no Docker engine here): one multi-stage Dockerfile for any
service, a distroless non-root runtime, a context that leaves out what the build does not
read, and a build script that covers every service for both platforms."""

from __future__ import annotations

import re
import tomllib

import deploylib
import yaml
from deploylib import CHART, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _stages() -> list[tuple[str, str]]:
    return re.findall(
        r"^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", DOCKERFILE, flags=re.MULTILINE | re.IGNORECASE
    )


def test_the_dockerfile_builds_one_service_by_build_arg():
    assert [name for _, name in _stages()] == ["build", "runtime"]
    assert re.search(r"^ARG SERVICE$", DOCKERFILE, flags=re.MULTILINE)
    # The dist profile: what the benchmarks measure (docs/benchmarks.md), not the everyday release.
    assert '-p "${SERVICE}" --bin "${SERVICE}"' in DOCKERFILE
    dist = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]["dist"]
    assert dist["inherits"] == "release" and dist["lto"] == "fat" and dist["codegen-units"] == 1
    assert _stages()[0][0].startswith("docker.io/library/rust:${RUST_VERSION}-bookworm")


def test_the_build_stage_cross_compiles_on_the_build_platform():
    """arm64 images from an amd64 machine (and back) are cross-compiled, not built under QEMU:
    the build stage is of $BUILDPLATFORM and cargo builds for $TARGETARCH's Rust target."""
    build = re.search(r"^FROM\s+(--platform=\S+\s+)?\S+\s+AS build$", DOCKERFILE, flags=re.MULTILINE | re.IGNORECASE)
    assert build and (build.group(1) or "").strip() == "--platform=$BUILDPLATFORM", "build stage on BUILDPLATFORM"
    runtime = re.search(r"^FROM\s+(\S+)\s+AS runtime$", DOCKERFILE, flags=re.MULTILINE)
    assert runtime and not runtime.group(1).startswith("--platform"), "the runtime is of the target platform"
    for arch, triple in (("amd64", "x86_64-unknown-linux-gnu"), ("arm64", "aarch64-unknown-linux-gnu")):
        assert re.search(rf"^\s+{arch}\) triple={triple};", DOCKERFILE, flags=re.MULTILINE)
    assert 'cargo build --profile dist --locked --target "${triple}"' in DOCKERFILE
    assert 'install -D -m 0755 "target/${triple}/dist/${SERVICE}" /out/service' in DOCKERFILE
    assert "gcc-aarch64-linux-gnu" in DOCKERFILE and "_LINKER=" in DOCKERFILE


def test_the_build_image_is_the_pinned_toolchain():
    channel = re.search(r'^channel = "([^"]+)"', (ROOT / "rust-toolchain.toml").read_text(), flags=re.MULTILINE)
    assert channel, "rust-toolchain.toml names a channel"
    assert re.search(rf"^ARG RUST_VERSION={re.escape(channel.group(1))}$", DOCKERFILE, flags=re.MULTILINE)


def test_the_runtime_is_distroless_non_root_and_needs_no_shell():
    image, _ = _stages()[-1]
    assert image == "gcr.io/distroless/cc-debian12:nonroot"
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.search(r"^USER 65532:65532$", runtime, flags=re.MULTILINE), "a numeric non-root user"
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/service"\]$', runtime, flags=re.MULTILINE), "exec form, no shell"
    assert not re.search(r"^RUN ", runtime, flags=re.MULTILINE), "nothing runs in the runtime stage"


def test_the_image_user_is_the_pods_user():
    docs = deploylib.split_stream(deploylib.helm_template().stdout, "helm")
    for doc in docs:
        if doc.kind == "Deployment" and doc.name != "meshmart-gateway":  # the gateway is Istio's proxy
            assert doc.spec["template"]["spec"]["securityContext"]["runAsUser"] == 65532


def test_the_build_context_leaves_out_what_the_build_does_not_read():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".git", "target", ".tools", "k8s", "istio", "helm", "tests/deploy"} <= ignored
    for needed in ("Cargo.toml", "Cargo.lock", "src", "services", "proto", "build.rs"):
        assert needed not in ignored and f"/{needed}" not in ignored


def test_build_images_covers_every_service_for_both_platforms():
    chart_services = sorted(yaml.safe_load((CHART / "values.yaml").read_text())["services"])
    listed = deploylib.run([str(ROOT / "scripts" / "build-images.sh"), "--list"]).stdout.split()
    assert listed == [f"meshmart/{s}:0.1.0" for s in chart_services], "the script's default services are the chart's"
    commands = deploylib.run(
        [str(ROOT / "scripts" / "build-images.sh"), "--dry-run", "--all-platforms", "--push"],
        env={"REGISTRY": "registry.example.com/shop", "TAG": "1.2.3"},
    ).stdout.splitlines()
    assert len(commands) == len(chart_services)
    for service, command in zip(chart_services, commands):
        assert command.startswith("docker buildx build ")
        assert "--platform linux/amd64\\,linux/arm64" in command
        # No attestations: kind and minikube cannot load an image index that carries them.
        assert "--provenance=false" in command and "--sbom=false" in command
        assert f"--build-arg SERVICE={service}" in command
        assert f"--tag registry.example.com/shop/{service}:1.2.3" in command
        assert command.rstrip().endswith(f"--push {ROOT}")


def test_kind_loads_an_image_archive():
    """`kind load docker-image` fails on Docker's containerd image store; an archive does not."""
    script = (ROOT / "scripts" / "kind-up.sh").read_text()
    assert not re.search(r"^\s*kind load docker-image", script, flags=re.MULTILINE)
    assert 'docker save --output "$archive" "$image"' in script
    assert 'kind load image-archive --name "$CLUSTER_NAME" "$archive"' in script


def test_the_default_tag_is_the_chart_s_app_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    listed = deploylib.run([str(ROOT / "scripts" / "build-images.sh"), "--list", "catalog"]).stdout.split()
    assert listed == [f"meshmart/catalog:{chart['appVersion']}"]
