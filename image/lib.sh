# Shared by image/operator.sh and image/spin-standin/build.sh: turns a root filesystem directory
# into an OCI image with go-containerregistry's crane (built by tests/cluster/build.sh), so no
# image format is written by hand and no Docker daemon is needed. Sourced, not run.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
crane=${CRANE:-$(bash "$repo/tests/cluster/build.sh")/crane}
# Layers are reproducible: sorted entries, root-owned, one fixed mtime.
epoch=${SOURCE_DATE_EPOCH:-0}

# The image's platform is the build host's (the static binaries are built for it).
host_platform() {
  case $(uname -m) in
    x86_64) echo linux/amd64 ;;
    aarch64) echo linux/arm64 ;;
    *) echo "unsupported build architecture $(uname -m)" >&2; return 1 ;;
  esac
}

# layer_tar ROOTFS OUT: a reproducible tar layer of everything under ROOTFS.
layer_tar() {
  (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    tar --create --file "$2" --no-recursion --files-from - \
      --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=posix \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
}

# Throwaway in-memory registry on a loopback port: crane's append/mutate work on registry
# references. Sets $scratch_registry (host:port); stop_scratch_registry ends it.
start_scratch_registry() {
  local log=$1/registry.log
  "$crane" registry serve --address 127.0.0.1:0 >"$log" 2>&1 &
  scratch_pid=$!
  local i port=""
  for i in $(seq 1 100); do
    port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$scratch_pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    sleep 0.1
  done
  [ -n "$port" ] || { echo "crane registry did not start: $(cat "$log")" >&2; return 1; }
  scratch_registry=127.0.0.1:$port
}

stop_scratch_registry() {
  if [ -n "${scratch_pid:-}" ]; then
    kill "$scratch_pid" 2>/dev/null || true
    wait "$scratch_pid" 2>/dev/null || true
    scratch_pid=
  fi
}

# build_image NAME ROOTFS OUT_LAYOUT [crane mutate flags...]: one layer of ROOTFS on an empty OCI
# base, the config from the flags, written as an OCI image layout to OUT_LAYOUT. Prints the
# manifest digest (the digest a registry serves after `crane push OUT_LAYOUT REF`).
build_image() (
  set -euo pipefail
  local name=$1 rootfs=$2 out=$3
  shift 3
  local work
  work=$(mktemp -d)
  # A subshell, so this trap ends the registry and the files on every way out.
  trap 'stop_scratch_registry; rm -rf "$work"' EXIT
  layer_tar "$rootfs" "$work/layer.tar"
  start_scratch_registry "$work"
  local ref=$scratch_registry/$name:build
  quiet "$work" "$crane" append --oci-empty-base -f "$work/layer.tar" -t "$ref"
  quiet "$work" "$crane" mutate "$ref" --set-platform "$(host_platform)" "$@" -t "$ref"
  rm -rf "$out"
  quiet "$work" "$crane" pull --format oci "$ref" "$out"
  "$crane" digest "$ref"
)

# quiet WORK CMD...: crane's progress lines go to a log, shown only when CMD fails.
quiet() {
  local log=$1/crane.log
  shift
  "$@" >>"$log" 2>&1 || { cat "$log" >&2; return 1; }
}
