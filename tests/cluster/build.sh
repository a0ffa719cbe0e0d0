#!/usr/bin/env bash
# Builds the test control plane from Go modules (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, helm, etcd; go-containerregistry's crane and registry for the images) and
# its node (kubelet, kube-proxy, containerd with its runc shim and ctr, runc, the CNI plugins bridge,
# host-local, loopback and portmap) and prints the directory holding them. The binaries are cached
# under a key made of the pinned module versions, so only a change of go/*/go.{mod,sum} rebuilds them.
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
if ! pkg-config --exists libseccomp; then
  echo "build.sh: runc needs libseccomp's headers: apt-get install -y libseccomp-dev pkg-config" >&2
  exit 1
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
containerd_version=$(required github.com/containerd/containerd/v2 "$go_dir/containerd/go.mod")
runc_version=$(required github.com/opencontainers/runc "$go_dir/runc/go.mod")
cni_version=$(required github.com/containernetworking/plugins "$go_dir/cni/go.mod")

start=$(date +%s)
echo "building kube-apiserver, kube-controller-manager, kubectl $k8s_version; helm $helm_version; etcd $etcd_version;" \
  "crane, registry $ggcr_version; kube-scheduler, kubelet, kube-proxy $k8s_version; containerd $containerd_version;" \
  "runc $runc_version; CNI plugins $cni_version into $bin" >&2
(cd "$go_dir/kube" && go build -trimpath -ldflags "$ldflags" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
(cd "$go_dir/helm" && go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" -o "$bin/" helm.sh/helm/v4/cmd/helm)
(cd "$go_dir/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
(cd "$go_dir/ggcr" && go build -trimpath \
  -ldflags "-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$ggcr_version" -o "$bin/" \
  github.com/google/go-containerregistry/cmd/crane github.com/google/go-containerregistry/cmd/registry)
# The node. containerd without the snapshotters that need C headers (only overlayfs is used) and
# without tracing; the shim static and without cgo, as upstream's Makefile builds it.
ctd=github.com/containerd/containerd/v2
ctd_ldflags="-s -w -X $ctd/version.Version=$containerd_version -X $ctd/version.Revision=gomod"
(cd "$go_dir/containerd" && go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_tracing urfave_cli_no_docs" \
  -ldflags "$ctd_ldflags" -o "$bin/" $ctd/cmd/containerd $ctd/cmd/ctr)
(cd "$go_dir/containerd" && CGO_ENABLED=0 go build -trimpath -tags "no_grpc urfave_cli_no_docs" \
  -ldflags "$ctd_ldflags" -o "$bin/" $ctd/cmd/containerd-shim-runc-v2)
# runc needs cgo (its nsexec) and, with the `seccomp` tag, libseccomp (libseccomp-dev, pkg-config):
# the chart's pods ask for the RuntimeDefault seccomp profile, which a runc without seccomp refuses.
(cd "$go_dir/runc" && CGO_ENABLED=1 go build -trimpath -tags "seccomp urfave_cli_no_docs" \
  -ldflags "-s -w -X main.gitCommit=gomod" -o "$bin/runc" github.com/opencontainers/runc)
mkdir -p "$bin/cni"
cni=github.com/containernetworking/plugins
(cd "$go_dir/cni" && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X $cni/pkg/utils/buildversion.BuildVersion=$cni_version" -o "$bin/cni/" \
  $cni/plugins/main/bridge $cni/plugins/ipam/host-local $cni/plugins/main/loopback $cni/plugins/meta/portmap)
echo "control plane built in $(( $(date +%s) - start )) s" >&2
touch "$bin/.complete"
echo "$bin"
