# syntax=docker/dockerfile:1
# The image the Helm chart runs (helm/spin-operator, image.repository). Build from the repo root:
#   docker build -t ghcr.io/spinkube-rs/spin-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/spinkube-rs/spin-operator:0.1.0 .
# The builder runs on the build platform and cross-compiles for TARGETARCH (no emulation) a static
# binary (glibc, crt-static), so the runtime image needs no libc. `make image` (image/operator.sh)
# builds the same image without Docker; tests/image/test_operator_image.py checks they agree.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
ARG BUILDARCH
ARG TARGETARCH
WORKDIR /src
# Symbols are not needed at runtime and make up most of the binary. The C parts (ring, psm) and
# the link use the target's gcc, which is the native one when TARGETARCH is the build arch.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
RUN case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      arm64) triple=aarch64-unknown-linux-gnu cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH' (amd64, arm64)" >&2; exit 1 ;; \
    esac \
    && echo "$triple" >/rust-target \
    && if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
         apt-get update && apt-get install -y --no-install-recommends $cross \
         && rm -rf /var/lib/apt/lists/*; \
       fi \
    && rustup target add "$triple"
COPY . .
# Cache mounts keep the registry and target dir across builds (BuildKit); the binary is copied
# out of the cached target dir because cache mounts are not part of the layer. --target keeps
# RUSTFLAGS off build scripts and proc-macros, which cannot be static.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    triple=$(cat /rust-target) \
    && cargo build --release --locked --target "$triple" --package spin-operator --bin spin-operator \
    && install -D -m 0755 "target/$triple/release/spin-operator" /out/spin-operator

# A static binary needs nothing from the base: scratch, plus the same /etc/passwd and /etc/group
# as `make image` (uid/gid 65532 "nonroot", which the chart's securityContext also sets).
FROM scratch
LABEL org.opencontainers.image.title="spin-operator" \
      org.opencontainers.image.description="Kubernetes operator for Spin (WebAssembly) applications" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY image/rootfs/ /
COPY --from=builder /out/spin-operator /usr/local/bin/spin-operator
USER 65532:65532
# 9443: HTTPS admission webhooks; 8080: /healthz, /readyz, /metrics.
EXPOSE 9443 8080
ENTRYPOINT ["/usr/local/bin/spin-operator"]
CMD ["run"]
