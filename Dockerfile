# syntax=docker/dockerfile:1
# One image per service, all from the one Cargo workspace:
#   docker buildx build --build-arg SERVICE=catalog -t meshmart/catalog:0.1.0 .
# scripts/build-images.sh builds and tags every service, for linux/amd64 and linux/arm64.
#
# The build stage runs on the build platform ($BUILDPLATFORM), never emulated: for another
# target platform it cross-compiles, with Rust's target for $TARGETARCH and Debian's cross C
# toolchain for the C that the workspace compiles (bundled SQLite, ring). Only the runtime
# stage is of the target platform, and nothing runs in it.

# The channel of rust-toolchain.toml (tests/deploy checks they agree).
ARG RUST_VERSION=1.95.0

# ---- build: one service's binary in the dist profile (fat LTO: what the benchmarks
# measure), with the dependencies Cargo.lock pins.
FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG RUST_VERSION
ARG SERVICE
ARG TARGETARCH
ARG BUILDARCH
# The image's own toolchain, which is rust-toolchain.toml's: rustup must not download
# another, nor the rustfmt and clippy components that the file asks for and a build never uses.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The Rust target and the C cross compiler for the target architecture (none when it is the
# build machine's own). Debian's cross packages follow the base image's release.
# hadolint ignore=DL3008
RUN case "${TARGETARCH}" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu; pkg=gcc-x86-64-linux-gnu; libc=libc6-dev-amd64-cross ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; pkg=gcc-aarch64-linux-gnu; libc=libc6-dev-arm64-cross ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    echo "${triple}" > /rust-target; \
    if [ "${TARGETARCH}" != "${BUILDARCH}" ]; then \
      apt-get update && apt-get install -y --no-install-recommends "${pkg}" "${libc}" && rm -rf /var/lib/apt/lists/*; \
      rustup target add "${triple}"; \
      var="${triple//-/_}"; \
      printf 'export CC_%s=%s-gcc\nexport AR_%s=%s-ar\nexport CARGO_TARGET_%s_LINKER=%s-gcc\n' \
        "${var}" "${gnu}" "${var}" "${gnu}" "${var^^}" "${gnu}" > /rust-cross.env; \
    else \
      : > /rust-cross.env; \
    fi
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds of the
# services (the target directory once per architecture, so the two never mix).
RUN --mount=type=cache,id=meshmart-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=meshmart-target-${TARGETARCH},target=/src/target,sharing=locked \
    test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<service>" >&2; exit 1; }; \
    . /rust-cross.env; \
    triple="$(cat /rust-target)"; \
    cargo build --profile dist --locked --target "${triple}" -p "${SERVICE}" --bin "${SERVICE}" \
    && install -D -m 0755 "target/${triple}/dist/${SERVICE}" /out/service \
    && install -d -o 65532 -g 65532 /out/data

# ---- runtime: glibc and CA certificates, no shell, no package manager, a non-root user.
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK, there is no shell to run one; Kubernetes probes grpc.health.v1
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="meshmart-${SERVICE}" \
      org.opencontainers.image.description="meshmart ${SERVICE} gRPC service"
COPY --from=build /out/service /usr/local/bin/service
# Where the SQLite fallback writes when no DATABASE_URL is set (an emptyDir in Kubernetes,
# where the root filesystem is read-only).
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data
# Numeric, so that Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/service"]
