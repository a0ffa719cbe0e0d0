#!/usr/bin/env bash
# The stand-in Spin app image (see ./spin): Debian's busybox-static, the `spin` entrypoint script
# and the pages under www/, built with crane into an OCI image layout,
# target/image/spin-hello by default. Prints the layout's path and the image digest.
#   BUSYBOX=PATH     a static busybox (default /bin/busybox, Debian's busybox-static)
#   IMAGE_PUSH=REF   also push it, e.g. 127.0.0.1:5000/spin-hello:v1 (image/registry.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
cd "$repo"

busybox=${BUSYBOX:-/bin/busybox}
out=${IMAGE_OUT:-target/image/spin-hello}
if ! [ -x "$busybox" ] || readelf --program-headers --wide "$busybox" | grep -q INTERP; then
  echo "$busybox is not a static busybox: apt-get install -y busybox-static" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
install -D -m 0755 "$busybox" "$rootfs/bin/busybox"
# Every applet as /bin/NAME, so `kubectl exec` has sh, cat, ls, wget.
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
install -m 0755 "$here/spin" "$rootfs/bin/spin"
install -d "$rootfs/var"
cp -a "$here/www" "$rootfs/var/www"
cp -a "$repo/image/rootfs/etc" "$rootfs/etc"
chmod -R u=rwX,go=rX "$rootfs/var/www"

digest=$(build_image spin-hello "$rootfs" "$out" \
  --entrypoint /bin/spin \
  --exposed-ports 80/tcp \
  --env PATH=/bin \
  --label org.opencontainers.image.title=spin-hello \
  --label "org.opencontainers.image.description=Stand-in for a Spin app: busybox httpd on Spin's port and health paths")

if [ -n "${IMAGE_PUSH:-}" ]; then
  "$crane" push "$out" "$IMAGE_PUSH" >&2
fi
echo "$out $digest"
