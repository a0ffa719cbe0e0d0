"""A real node beside the test control plane: containerd, runc, kubelet and kube-proxy, built from Go
modules by build.sh, running on this machine without Docker.

Network. The node lives in a network namespace of its own (`spin-node-<k>`), joined to the host by a
veth pair (host `10.250.<k>.1/30`, node `10.250.<k>.2/30`). kube-apiserver binds the host end, the
kubelet the node end. containerd, the kubelet and kube-proxy run in that namespace (`nsenter --net`,
same mount namespace as the host, so the kubelet's volumes are what runc mounts), so the CNI bridge
(`cni0`, pods in `10.244.<k>.0/24`) and every iptables rule kube-proxy and portmap write exist only
there: the host's own iptables and interfaces are not touched, and deleting the namespace removes
them all. No packet can leave the machine: the namespace has no default route (a pod's packet to
anything but the node, its pods and the host end is answered "unreachable" inside the namespace),
the host's `net.ipv4.ip_forward` is left as it is (0 here) so the host forwards nothing from the
node, and `unreachable` routes cover the pod range 10.244.0.0/16 and the Service range
10.96.0.0/16, in the namespace and on the host, so a Service IP with no kube-proxy rule, or a pod
range with no route, fails at once instead of following the default route out of eth0. The host
reaches ClusterIPs only through pods (kube-apiserver calls webhooks at the Endpoints' pod IPs:
`--enable-aggregator-routing`); tests reach pods from the host with `kubectl port-forward` to
loopback.

cgroups. This machine mounts cgroup v1 controllers under /sys/fs/cgroup (cgroup2 only at
/sys/fs/cgroup/unified, with no controllers: every controller is bound to its v1 hierarchy, and a
controller can be in only one hierarchy), so a cgroup v2 node is not possible without taking the
controllers away from the host. The kubelet runs on cgroup v1 with the cgroupfs driver and
`failCgroupV1: false` (from 1.35 it refuses v1 unless told), under a cgroup root of its own
(`/spin-node-<k>`) so teardown can kill every container process and remove every cgroup it made.

Images. Nothing is pulled from outside. The sandbox image is Kubernetes' own pause
(build/pause/linux/pause.c from the pinned k8s.io/kubernetes module, compiled static with gcc), the
test image is Debian's busybox-static; both are made into OCI images by go-containerregistry's
`crane` and pushed to a `crane registry serve` on the host end of the link, which containerd reaches
as `spin-e2e.local` (hosts.toml, plain HTTP).

The RuntimeClass handler `spin` (what the executors name) is mapped to runc: it is a stand-in for
Spin's containerd Wasm shim, which cannot be built here.

Teardown (also when `up` or a test fails, and from `controlplane.py down`): stop the processes, kill
every process in the node's cgroups and netns (shims, containers), unmount everything mounted under
the node's directories (overlay rootfs, shm, volumes, netns), remove the cgroups, the namespace (with
its bridge, veths and iptables rules), the veth pair and the host routes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from procs import free_port, start_process, wait_until

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

NODE_NAME = "e2e-node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDRS = "10.244.0.0/16"
# The unreachable routes of different nodes on one host coexist by metric (one per node).
GUARD_METRIC = 4000
MAX_NODES = 64
IMAGE_HOST = "spin-e2e.local"
PAUSE_IMAGE = f"{IMAGE_HOST}/pause:3.10"
BUSYBOX_IMAGE = f"{IMAGE_HOST}/busybox:1.35"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Finds the real runc on containerd's PATH (bin_dir first).
STANDIN_RUNC = HERE.parents[1] / "image" / "spin-standin" / "runc-spin"


class NodeError(RuntimeError):
    """A node step failed; the message says which and carries the tool's output."""


def run(*argv: str, check: bool = True, input: str | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and out.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@dataclass
class NodeNetwork:
    """The node's network namespace, its link to the host and the guard routes (see module doc)."""

    index: int

    @property
    def netns(self) -> str:
        return f"spin-node-{self.index}"

    @property
    def host_if(self) -> str:
        return f"spinh{self.index}"

    @property
    def node_if(self) -> str:
        return f"spinn{self.index}"

    @property
    def host_ip(self) -> str:
        return f"10.250.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.index}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def metric(self) -> str:
        return str(GUARD_METRIC + self.index)

    def nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--"]

    @classmethod
    def create(cls) -> "NodeNetwork":
        """Claim the first free index (`ip netns add` is the lock) and wire it up."""
        for index in range(MAX_NODES):
            net = cls(index)
            if run("ip", "netns", "add", net.netns, check=False).returncode != 0:
                continue
            try:
                net._setup()
            except BaseException:
                net.teardown()
                raise
            return net
        raise NodeError(f"no free node network: {MAX_NODES} namespaces spin-node-* exist")

    def _setup(self) -> None:
        ns = self.netns
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.node_if, "netns", ns)
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "addr", "add", f"{self.node_ip}/30", "dev", self.node_if)
        run("ip", "-n", ns, "link", "set", self.node_if, "up")
        # Guards first, then the one route that is meant to work (more specific than the guard).
        for cidr in (POD_CIDRS, SERVICE_CIDR):
            run("ip", "route", "add", "unreachable", cidr, "metric", self.metric)
            run("ip", "-n", ns, "route", "add", "unreachable", cidr)
        run("ip", "route", "add", self.pod_cidr, "via", self.node_ip, "dev", self.host_if)
        # Forwarding inside the namespace only (pods <-> host end); the host's own stays as it is.
        run(*self.nsenter(), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
            "net.bridge.bridge-nf-call-iptables=1")

    def teardown(self) -> None:
        """Remove the routes, the link and the namespace (with everything inside it). Idempotent."""
        for cidr in (POD_CIDRS, SERVICE_CIDR):
            run("ip", "route", "del", "unreachable", cidr, "metric", self.metric, check=False)
        run("ip", "route", "del", self.pod_cidr, "via", self.node_ip, check=False)
        run("ip", "link", "del", self.host_if, check=False)
        run("ip", "netns", "del", self.netns, check=False)

    def pids(self) -> list[int]:
        out = run("ip", "netns", "pids", self.netns, check=False)
        return [int(p) for p in out.stdout.split()]


# -- images ------------------------------------------------------------------------------------

def _layer(path: Path, files: dict[str, Path], symlinks: dict[str, str] = {}) -> Path:  # noqa: B006
    """A layer tarball: `files` (name in the image -> file here) owned by root, plus symlinks."""
    with tarfile.open(path, "w") as tar:
        dirs = sorted({str(Path(name).parent) for name in [*files, *symlinks]} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, src in files.items():
            info = tar.gettarinfo(str(src), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(src, "rb") as f:
                tar.addfile(info, f)
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return path


def kubernetes_source() -> Path:
    """The pinned k8s.io/kubernetes module's source (downloaded by build.sh)."""
    out = run("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes", timeout=300, cwd=HERE / "go" / "kube")
    return Path(out.stdout.strip())


def build_pause(workdir: Path) -> Path:
    src = kubernetes_source() / "build" / "pause" / "linux" / "pause.c"
    binary = workdir / "pause"
    run("gcc", "-Os", "-static", "-DVERSION=v3.10-spin-e2e", "-o", str(binary), str(src))
    run("strip", str(binary), check=False)
    return _layer(workdir / "pause.tar", {"pause": binary})


def build_busybox(workdir: Path) -> Path:
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    if not busybox.exists():
        raise NodeError("busybox not found: apt-get install -y busybox-static")
    applets = run(str(busybox), "--list").stdout.split()
    return _layer(workdir / "busybox.tar", {"bin/busybox": busybox},
                  {f"bin/{a}": "busybox" for a in applets if a != "busybox"})


# -- the node ----------------------------------------------------------------------------------

@dataclass
class Node:
    """containerd + kubelet + kube-proxy in the node's network namespace, registered with `cp`."""

    cp: Any  # controlplane.ControlPlane (which imports this module)
    net: NodeNetwork

    @property
    def dir(self) -> Path:
        return self.cp.workdir / "node"

    @property
    def run_dir(self) -> Path:
        # Unix sockets need a short path (108 bytes); the test work directories are long (and grow
        # with pytest's run counter). containerd's and the kubelet's sockets (pod-resources,
        # device-plugins, plugins_registry under its root dir) all live here.
        return Path("/run") / self.net.netns

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def cgroup_name(self) -> str:
        return self.net.netns

    @property
    def registry(self) -> str:
        return f"{self.net.host_ip}:{self.registry_port}"

    def start(self) -> "Node":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._cgroups_create()
        bin_dir = self.cp.bin_dir
        self.registry_port = free_port(self.net.host_ip)
        (self.dir / "registry").mkdir(exist_ok=True)
        self.cp.add_process(start_process("registry", [
            str(bin_dir / "crane"), "registry", "serve", f"--address={self.registry}",
            f"--disk={self.dir / 'registry'}"], self.cp.workdir))
        wait_until("the image registry", lambda: _can_connect(self.net.host_ip, self.registry_port), timeout=30)
        self.push_image(PAUSE_IMAGE, [build_pause(self.dir)], entrypoint="/pause", user="65535:65535")
        self.push_image(BUSYBOX_IMAGE, [build_busybox(self.dir)], cmd="sh")

        self._write_containerd_config()
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   SPIN_STANDIN_RUNC=str(bin_dir / "runc"))
        self.cp.add_process(start_process("containerd", [
            *self.net.nsenter(), str(bin_dir / "containerd"), f"--config={self.dir / 'containerd.toml'}"],
            self.cp.workdir, env))
        wait_until("containerd", lambda: self.cp.check_alive() or self.ctr("version", check=False).returncode == 0,
                   timeout=60)

        self._write_kubelet_config()
        self.cp.add_process(start_process("kubelet", [
            *self.net.nsenter(), str(bin_dir / "kubelet"), f"--config={self.dir / 'kubelet.json'}",
            f"--kubeconfig={self.cp.node_kubeconfig}", f"--root-dir={self.run_dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet-pki'}",
            f"--node-ip={self.net.node_ip}", f"--hostname-override={NODE_NAME}", "--v=1"],
            self.cp.workdir, env))
        self._write_proxy_config()
        self.start_proxy()

        def ready() -> bool:
            self.cp.check_alive()
            node = self.cp.get_json("node", NODE_NAME, check=False)
            return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])

        wait_until(f"node {NODE_NAME} Ready", ready, timeout=180, interval=1)
        # The kubelet registers with this taint; kube-controller-manager's node lifecycle
        # controller would lift it, but would also evict pods whenever a heartbeat is late on a
        # loaded machine. Nothing else sets it, so lifting it once is enough.
        self.cp.kubectl("taint", "node", NODE_NAME, "node.kubernetes.io/not-ready:NoSchedule-")
        return self

    def start_proxy(self) -> None:
        self.cp.add_process(start_process("kube-proxy", [
            *self.net.nsenter(), str(self.cp.bin_dir / "kube-proxy"), f"--config={self.dir / 'kube-proxy.json'}",
            "--v=1"], self.cp.workdir))

    def push_operator_image(self, tag: str = "e2e", binary: Path | None = None) -> tuple[str, str]:
        """`make image` (image/operator.sh, IMAGE_PROFILE=debug: the e2e tests' debug build, no second
        compile; or `binary`, e.g. the benchmarks' release build) pushed to the node's registry;
        returns (repository, tag) as the chart takes them."""
        extra = {"IMAGE_BIN": str(binary)} if binary is not None else {}
        return self._push_built("image/operator.sh", "spin-operator", tag, IMAGE_PROFILE="debug", **extra)

    def push_app_image(self, tag: str = "v1") -> str:
        """The stand-in Spin app image (image/spin-standin/build.sh) in the node's registry."""
        repository, tag = self._push_built("image/spin-standin/build.sh", "spin-hello", tag)
        return f"{repository}:{tag}"

    def _push_built(self, script: str, name: str, tag: str, **env: str) -> tuple[str, str]:
        """Run one of the repo's image scripts (an OCI layout made with crane) and push the layout."""
        path = REPO / script
        if not path.exists():
            raise NodeError(f"{path} is missing (the images are built by `make image`)")
        layout = self.dir / f"image-{name}"
        proc_env = dict(os.environ, IMAGE_OUT=str(layout), IMAGE_PUSH="", **env)
        out = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=proc_env, cwd=REPO, timeout=1800)
        if out.returncode != 0:
            raise NodeError(f"{script} failed ({out.returncode}):\n{out.stderr[-4000:]}")
        run(str(self.cp.bin_dir / "crane"), "push", "--insecure", str(layout), f"{self.registry}/{name}:{tag}")
        return f"{IMAGE_HOST}/{name}", tag

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(str(self.cp.bin_dir / "ctr"), f"--address={self.containerd_socket}", "-n", "k8s.io", *args,
                   check=check)

    def push_image(self, name: str, layers: Sequence[Path], entrypoint: str | None = None, cmd: str | None = None,
                   user: str | None = None) -> str:
        """Push an image made of `layers` to the node's registry as `name` (in `spin-e2e.local/`)."""
        assert name.startswith(f"{IMAGE_HOST}/"), name
        ref = f"{self.registry}/{name.removeprefix(IMAGE_HOST + '/')}"
        crane = str(self.cp.bin_dir / "crane")
        run(crane, "append", "--insecure", "--oci-empty-base", "--platform=linux/amd64", "-t", ref,
            *[a for layer in layers for a in ("-f", str(layer))])
        mutate = [crane, "mutate", "--insecure", ref, "-t", ref, "--set-platform=linux/amd64"]
        if entrypoint:
            mutate.append(f"--entrypoint={entrypoint}")
        if cmd:
            mutate.append(f"--cmd={cmd}")
        if user:
            mutate.append(f"--user={user}")
        run(*mutate)
        return name

    # -- configuration -------------------------------------------------------------------------

    def _write_containerd_config(self) -> None:
        certs = self.dir / "certs.d" / IMAGE_HOST
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "hosts.toml").write_text(
            f'server = "http://{self.registry}"\n\n[host."http://{self.registry}"]\n'
            '  capabilities = ["pull", "resolve"]\n')
        cni_conf = self.dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-spin-e2e.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "spin-e2e",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.net.pod_cidr}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.dir / "cni" / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2))
        runc = f"""
          runtime_type = 'io.containerd.runc.v2'
          [{{section}}.options]
            BinaryName = '{{binary}}'
            Root = '{self.run_dir / 'runc'}'
            SystemdCgroup = false
"""
        runtimes = "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes"
        config = f"""version = 3
root = '{self.dir / 'containerd'}'
state = '{self.run_dir / 'containerd'}'

[grpc]
  address = '{self.containerd_socket}'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{PAUSE_IMAGE}'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '{self.dir / 'certs.d'}'

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its OOM score (the pause container
  # asks for -998): keep every container's at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [{runtimes}.runc]{runc.format(section=f'{runtimes}.runc', binary=self.cp.bin_dir / 'runc')}
    # Stand-in: the executors' RuntimeClass handler, run by runc instead of Spin's Wasm shim;
    # runc-spin runs the stand-in app's entrypoint for the command "/" the shim would ignore.
    [{runtimes}.spin]{runc.format(section=f'{runtimes}.spin', binary=STANDIN_RUNC)}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{self.cp.bin_dir / 'cni'}']
    conf_dir = '{cni_conf}'

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'

[plugins.'io.containerd.internal.v1.opt']
  path = '{self.dir / 'opt'}'

[plugins.'io.containerd.nri.v1.nri']
  disable = true
"""
        (self.dir / "containerd.toml").write_text(config)

    def _write_kubelet_config(self) -> None:
        (self.dir / "resolv.conf").write_text("")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            # cgroup v1 is what this machine has (module doc).
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{self.cgroup_name}",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": self.net.node_ip, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            # Only kube-apiserver on the host end of the link reaches this address.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "failSwapOn": False, "resolvConf": str(self.dir / "resolv.conf"),
            "podLogsDir": str(self.dir / "pod-logs"),
            # A shared disk and memory: evict only when nearly nothing is left.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%", "imagefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 250,
        }
        (self.dir / "kubelet.json").write_text(json.dumps(config, indent=2))

    def _write_proxy_config(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "clusterCIDR": self.net.pod_cidr, "hostnameOverride": NODE_NAME,
            "clientConnection": {"kubeconfig": str(self.cp.node_kubeconfig)},
            "bindAddress": self.net.node_ip,
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            # nf_conntrack_max is global (host-wide): leave it and the timeouts alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        (self.dir / "kube-proxy.json").write_text(json.dumps(config, indent=2))

    # -- cgroups -------------------------------------------------------------------------------

    def _cgroups_create(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            path = hierarchy / self.cgroup_name
            path.mkdir(exist_ok=True)
            for f in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset child starts empty
                if (hierarchy / f).exists() and not (path / f).read_text().strip():
                    (path / f).write_text((hierarchy / f).read_text())


def _cgroup_hierarchies() -> list[Path]:
    hierarchies = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point = Path(fields[4])
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2") and mount_point.is_relative_to(CGROUP_ROOT):
            hierarchies.append(mount_point)
    return hierarchies


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# -- teardown ----------------------------------------------------------------------------------

def teardown(workdir: Path, index: int) -> list[str]:
    """Remove everything a node left: processes, mounts, cgroups, netns, link, routes. Returns what
    it found still there (for the log); safe to run twice and after a crash."""
    net = NodeNetwork(index)
    cgroup = net.netns
    done = []
    run_dir = Path("/run") / net.netns
    ids = _containerd_ids(run_dir / "containerd")
    # Shims and containers outlive containerd by design; kill what runs in the node's cgroups and
    # netns (the daemons themselves were stopped by pid before).
    for _ in range(50):
        pids = set(net.pids())
        for hierarchy in _cgroup_hierarchies():
            root = hierarchy / cgroup
            if root.is_dir():
                for procs in root.rglob("cgroup.procs"):
                    pids.update(int(p) for p in procs.read_text().split())
        pids.discard(os.getpid())
        if not pids:
            break
        done.append(f"killed {len(pids)} processes")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    for mount_point in _mounts_under([workdir / "node", Path("/run") / net.netns]):
        if run("umount", str(mount_point), check=False).returncode != 0:
            run("umount", "-l", str(mount_point), check=False)
        done.append(f"unmounted {mount_point}")
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / cgroup
        if root.is_dir():
            for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                d.rmdir()
            root.rmdir()
            done.append(f"removed cgroup {root}")
    net.teardown()
    shutil.rmtree(run_dir, ignore_errors=True)
    # Files containerd's shims and the CNI library keep in fixed host directories, named after the
    # sandbox and container IDs (killed shims leave their sockets behind).
    socket = run_dir / "containerd.sock"
    for container_id in ids:
        digest = hashlib.sha256(f"{socket}/k8s.io/{container_id}".encode()).hexdigest()
        for leftover in (Path("/run/containerd/s") / digest, *Path("/var/lib/cni/results").glob(f"*-{container_id}-*")):
            leftover.unlink(missing_ok=True)
    # The kubelet links container logs into this fixed directory.
    containers = Path("/var/log/containers")
    if containers.is_dir():
        for link in containers.iterdir():
            if link.is_symlink() and Path(os.readlink(link)).is_relative_to(workdir):
                link.unlink()
    return done


def _containerd_ids(state: Path) -> set[str]:
    """The IDs of the sandboxes and containers a containerd state directory knows."""
    dirs = [state / "io.containerd.runtime.v2.task" / "k8s.io", state / "io.containerd.grpc.v1.cri" / "sandboxes"]
    return {child.name for d in dirs if d.is_dir() for child in d.iterdir()}


def _mounts_under(roots: Sequence[Path]) -> list[Path]:
    """Mount points at or below `roots`, deepest first (so nested mounts go before their parent)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = Path(line.split()[4].encode().decode("unicode_escape"))
        if any(mount_point.is_relative_to(r) for r in roots):
            found.append(mount_point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)
