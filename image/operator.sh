#!/usr/bin/env bash
# `make image`: the operator image, built without Docker. The same files, user, entrypoint, cmd,
# ports and labels as the Dockerfile's image (tests/image/test_operator_image.py checks that);
# written as an OCI image layout to target/image/spin-operator, whose path and digest are printed.
#
#   IMAGE_PROFILE=release  (default) the static binary the Dockerfile builds: release profile,
#                          -C target-feature=+crt-static, under target/<triple>/ so the normal
#                          build cache is untouched (~10 min cold on 2 cores).
#   IMAGE_PROFILE=debug    the e2e tests' debug build (target/debug/spin-operator, dynamically
#                          linked) with the glibc libraries it loads copied in from the build
#                          host (ldd): no second compile, for test images only.
#                          IMAGE_BIN=PATH packs that binary instead, built already (the
#                          benchmarks' release build, so a pod runs what the local process ran).
#   IMAGE_PUSH=REF         also push the image to REF, e.g. 127.0.0.1:5000/spin-operator:0.1.0
#                          (a registry on loopback, see image/registry.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo"

profile=${IMAGE_PROFILE:-release}
out=${IMAGE_OUT:-target/image/spin-operator}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
cp -a image/rootfs "$rootfs"
install -d "$rootfs/usr/local/bin"

case $profile in
  release)
    triple=$(rustc -vV | sed -n 's/^host: //p')
    # --target keeps these RUSTFLAGS away from build scripts and proc-macros (which cannot be
    # static) and puts the artifacts in target/<triple>/, beside the normal build's.
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
      cargo build --release --locked --target "$triple" --bin spin-operator >&2
    bin=target/$triple/release/spin-operator
    if readelf --program-headers --wide "$bin" | grep -q INTERP; then
      echo "$bin is not statically linked" >&2
      exit 1
    fi
    ;;
  debug)
    if [ -n "${IMAGE_BIN:-}" ]; then
      bin=$IMAGE_BIN
    else
      cargo build --locked --bin spin-operator >&2
      bin=target/debug/spin-operator
    fi
    # The shared libraries and the loader, at the paths the binary asks for.
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
      install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
    done
    ;;
  *) echo "IMAGE_PROFILE must be release or debug, not '$profile'" >&2; exit 2 ;;
esac
install -m 0755 "$bin" "$rootfs/usr/local/bin/spin-operator"

# Keep in step with the Dockerfile's final stage (the test compares them).
digest=$(build_image spin-operator "$rootfs" "$out" \
  --user 65532:65532 \
  --entrypoint /usr/local/bin/spin-operator --cmd run \
  --exposed-ports 9443/tcp,8080/tcp \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --label org.opencontainers.image.title=spin-operator \
  --label "org.opencontainers.image.description=Kubernetes operator for Spin (WebAssembly) applications" \
  --label org.opencontainers.image.licenses=Apache-2.0)

if [ -n "${IMAGE_PUSH:-}" ]; then
  "$crane" push "$out" "$IMAGE_PUSH" >&2
fi
echo "$out $digest"
