#!/usr/bin/env bash
# Builds the test control plane from Go modules (kube-apiserver, kube-controller-manager, kubectl,
# helm, etcd; go-containerregistry's crane and registry for the images) and prints the directory
# holding them. The binaries are cached under a key made of the pinned module versions, so only a
# change of go/*/go.{mod,sum} rebuilds them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
go_dir=$here/go

key=$( (go version; cat "$go_dir"/*/go.mod "$go_dir"/*/go.sum "$go_dir"/etcd/main.go "$0") | sha256sum | cut -c1-16)
cache_root=${SPIN_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spin-operator/cluster}
bin=$cache_root/$key/bin
if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"

# `/version` and `kubectl version` report the release the module pins, as a real build does.
# The version a go.mod requires of a module (single-line or block `require`).
required() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2 } $1 == "require" && $2 == m { print $3 }' "$2" | head -n 1; }
k8s_version=$(required k8s.io/kubernetes "$go_dir/kube/go.mod")
minor=$(echo "$k8s_version" | cut -d. -f2)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
helm_version=$(required helm.sh/helm/v4 "$go_dir/helm/go.mod")
etcd_version=$(required go.etcd.io/etcd/server/v3 "$go_dir/etcd/go.mod")
ggcr_version=$(required github.com/google/go-containerregistry "$go_dir/ggcr/go.mod")

start=$(date +%s)
echo "building kube-apiserver, kube-controller-manager, kubectl $k8s_version; helm $helm_version; etcd $etcd_version;" \
  "crane, registry $ggcr_version into $bin" >&2
(cd "$go_dir/kube" && go build -trimpath -ldflags "$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
(cd "$go_dir/helm" && go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" -o "$bin/" helm.sh/helm/v4/cmd/helm)
(cd "$go_dir/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
(cd "$go_dir/ggcr" && go build -trimpath \
  -ldflags "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$ggcr_version" -o "$bin/" \
  github.com/google/go-containerregistry/cmd/crane github.com/google/go-containerregistry/cmd/registry)
echo "control plane built in $(( $(date +%s) - start )) s" >&2
touch "$bin/.complete"
echo "$bin"
