# syntax=docker/dockerfile:1
# The image the Helm chart runs (helm/spin-operator, image.repository). Build from the repo root:
#   docker build -t ghcr.io/spinkube-rs/spin-operator:0.1.0 .

# Builder and runtime must share a Debian release: the binary links glibc dynamically, and a
# newer builder glibc than the runtime's fails at start with "GLIBC_2.xx not found".
ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Symbols are not needed at runtime and make up most of the binary.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
COPY . .
# Cache mounts keep the registry and target dir across builds (BuildKit); the binary is copied
# out of the cached target dir because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package spin-operator --bin spin-operator \
    && install -D -m 0755 target/release/spin-operator /out/spin-operator

# distroless/cc: glibc, libgcc and CA certificates, no shell or package manager.
# The :nonroot tag runs as uid/gid 65532, which the chart's securityContext also sets.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="spin-operator" \
      org.opencontainers.image.description="Kubernetes operator for Spin (WebAssembly) applications" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/spin-operator /usr/local/bin/spin-operator
USER 65532:65532
# 9443: HTTPS admission webhooks; 8080: /healthz, /readyz, /metrics.
EXPOSE 9443 8080
ENTRYPOINT ["/usr/local/bin/spin-operator"]
CMD ["run"]
