#!/usr/bin/env bash
# Checks here what the GitHub workflows run there (`make release-check`, part of `make test`):
# 1. actionlint on .github/workflows/ (expressions, action inputs, permissions, job outputs),
#    built from the Go module proxy at a pinned version and cached by version;
# 2. `helm package` of the chart with the control plane's Helm (tests/cluster/build.sh), as the
#    release workflow packages it, and the package carries Chart.yaml's version.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION=v1.7.12
cache_root=${SPIN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spin-operator/tools}
actionlint_dir=$cache_root/actionlint-$ACTIONLINT_VERSION-$(go env GOVERSION)-$(go env GOOS)-$(go env GOARCH)
if [ ! -x "$actionlint_dir/actionlint" ]; then
  mkdir -p "$actionlint_dir"
  echo "building actionlint $ACTIONLINT_VERSION into $actionlint_dir" >&2
  GOBIN=$actionlint_dir go install -trimpath -ldflags "-s -w" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
# shellcheck/pyflakes integration off: the result must not depend on what the machine has installed.
"$actionlint_dir/actionlint" -no-color -shellcheck= -pyflakes= .github/workflows/*.yml
echo "actionlint $ACTIONLINT_VERSION: .github/workflows/ clean"

bin=$(bash tests/cluster/build.sh)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
version=$(sed -n 's/^version: *//p' helm/spin-operator/Chart.yaml)
"$bin/helm" package helm/spin-operator --destination "$out" >/dev/null
test -f "$out/spin-operator-$version.tgz" || { echo "helm package did not write spin-operator-$version.tgz" >&2; exit 1; }
# The package holds what the chart needs at install time (CRDs, permission list, webhooks).
listing=$(tar -tzf "$out/spin-operator-$version.tgz")
grep -qx 'spin-operator/files/permissions.json' <<<"$listing"
grep -q '^spin-operator/crds/.*\.yaml$' <<<"$listing"
echo "helm package: spin-operator-$version.tgz"
