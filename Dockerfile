# syntax=docker/dockerfile:1
# One image per service, all from the one Cargo workspace:
#   docker buildx build --build-arg SERVICE=catalog -t meshmart/catalog:0.1.0 .
# scripts/build-images.sh builds and tags every service, for linux/amd64 and linux/arm64.
#
# The build stage runs on the target platform: native on that machine (an arm64 Mac builds
# arm64 natively), under QEMU emulation otherwise. Slow when emulated, but it needs no cross
# toolchain for the C that the workspace compiles (bundled SQLite).

# The channel of rust-toolchain.toml (tests/deploy checks they agree).
ARG RUST_VERSION=1.95.0

# ---- build: one service's binary in the dist profile (fat LTO: what the benchmarks
# measure), with the dependencies Cargo.lock pins.
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG RUST_VERSION
ARG SERVICE
ARG TARGETARCH
# The image's own toolchain, which is rust-toolchain.toml's: rustup must not download
# another, nor the rustfmt and clippy components that the file asks for and a build never uses.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds of the
# services (the target directory once per architecture, so the two never mix).
RUN --mount=type=cache,id=meshmart-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=meshmart-target-${TARGETARCH},target=/src/target,sharing=locked \
    test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<service>" >&2; exit 1; }; \
    cargo build --profile dist --locked -p "${SERVICE}" --bin "${SERVICE}" \
    && install -D -m 0755 "target/dist/${SERVICE}" /out/service \
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
