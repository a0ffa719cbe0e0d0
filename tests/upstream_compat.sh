#!/usr/bin/env bash
# Checks drop-in compatibility with the upstream Go operator's samples (kept outside the repo, in
# shared/upstream/samples beside the work tree): every SpinApp and SpinAppExecutor there must be
# admitted by `spin-operator validate`, except private-image.yaml, whose image is the placeholder
# `ghcr.io/<username>/<image>:<tag>` and must be denied with an image error.
# Usage: tests/upstream_compat.sh [path/to/spin-operator]   (skips cleanly when samples are absent)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
samples="${UPSTREAM_SAMPLES:-}"
if [ -z "$samples" ]; then
    for candidate in "$here/../shared/upstream/samples" "$here/../../shared/upstream/samples"; do
        if [ -d "$candidate" ]; then samples="$candidate"; break; fi
    done
fi
if [ -z "$samples" ] || [ ! -d "$samples" ]; then
    echo "upstream samples not found; skipping (set UPSTREAM_SAMPLES to their directory)"
    exit 0
fi
bin="${1:-${CARGO_TARGET_DIR:-$here/target}/debug/spin-operator}"
executors=("$samples/spin-shim-executor.yaml" "$samples/spintainer-executor.yaml")
passed=0
failed=0
for f in "$samples"/*.yaml; do
    name="$(basename "$f")"
    set +e
    out="$("$bin" validate -f "$f" "${executors[@]}" 2>&1)"
    code=$?
    set -e
    if [ "$name" = private-image.yaml ]; then
        if [ $code -eq 1 ] && grep -q 'spec.image: Invalid value: "ghcr.io/<username>/<image>:<tag>"' <<<"$out"; then
            passed=$((passed + 1))
        else
            echo "FAIL $name: expected an image denial (exit $code)"
            echo "$out"
            failed=$((failed + 1))
        fi
    elif [ $code -eq 0 ]; then
        passed=$((passed + 1))
    else
        echo "FAIL $name (exit $code)"
        echo "$out"
        failed=$((failed + 1))
    fi
done
echo "upstream samples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
