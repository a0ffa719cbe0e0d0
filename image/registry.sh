#!/usr/bin/env bash
# A registry on loopback for the test node to pull the images from: go-containerregistry's
# registry (`crane registry serve`), contents in memory. containerd pulls from it over plain
# HTTP (README.md, "Images").
#   image/registry.sh up                 start it on $REGISTRY (default 127.0.0.1:5000); no-op if
#                                        one this script started still runs
#   image/registry.sh push LAYOUT REPO:TAG   push an OCI layout (target/image/...) as
#                                        $REGISTRY/REPO:TAG and print that reference by digest
#   image/registry.sh down               stop the registry this script started on $REGISTRY
set -euo pipefail
source "$(dirname "$0")/lib.sh"

registry=${REGISTRY:-127.0.0.1:5000}
state=$repo/target/registry
pidfile=$state/${registry//[^0-9a-z]/_}.pid
case ${registry%:*} in
  127.*|localhost|\[::1\]) ;;
  *) echo "REGISTRY must be a loopback address (127.0.0.0/8, localhost, [::1]), not $registry" >&2; exit 2 ;;
esac

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case ${1:-} in
  up)
    if running; then
      echo "$registry"
      exit 0
    fi
    mkdir -p "$state"
    # setsid: the registry outlives this script and the make that ran it.
    setsid "$crane" registry serve --address "$registry" >"${pidfile%.pid}.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if "$crane" catalog "$registry" >/dev/null 2>&1; then
        echo "$registry"
        exit 0
      fi
      running || break
      sleep 0.1
    done
    echo "registry did not start on $registry: $(cat "${pidfile%.pid}.log")" >&2
    exit 1
    ;;
  push)
    [ $# -eq 3 ] || { echo "usage: $0 push LAYOUT REPO:TAG" >&2; exit 2; }
    ref=$registry/$3
    mkdir -p "$state"
    "$crane" push "$2" "$ref" >/dev/null 2>"$state/push.log" || { cat "$state/push.log" >&2; exit 1; }
    echo "$ref@$("$crane" digest "$ref")"
    ;;
  down)
    if running; then
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    rm -f "$pidfile"
    ;;
  *)
    echo "usage: $0 up | push LAYOUT REPO:TAG | down" >&2
    exit 2
    ;;
esac
