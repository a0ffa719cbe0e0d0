"""The node (tests/cluster/node.py): pods run under containerd and runc, Services answer through
kube-proxy, `kubectl port-forward`, `logs` and `exec` work, the network guard holds, and teardown
leaves nothing behind."""

from __future__ import annotations

import errno
import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from controlplane import ControlPlane, cmd_down, free_port, start_process, wait_until
from node import BUSYBOX_IMAGE, NODE_NAME, POD_CIDRS, SERVICE_CIDR, NodeNetwork, run

NAMESPACE = "e2e-node"
PAGE = "hello from a pod"
# Read before any node starts: the node must not turn on the host's forwarding.
IP_FORWARD_AT_START = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def busybox_pod(name: str, command: str, labels: dict[str, str] | None = None, probe: bool = False) -> dict:
    container = {
        "name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", command],
    }
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 1},
    }


def pod_ready(cp: ControlPlane, name: str, timeout: float = 120) -> dict:
    def ready():
        pod = cp.get_json("pod", name, "-n", NAMESPACE)
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True" else None

    return wait_until(f"pod {name} Running and Ready", ready, timeout=timeout, interval=0.5)


@pytest.fixture(scope="module")
def web(node_cluster: ControlPlane):
    """A busybox httpd pod behind a Service, and a client pod to call it from."""
    cp = node_cluster
    cp.kubectl("create", "namespace", NAMESPACE)
    server = busybox_pod("web", f"echo started web; mkdir -p /www && echo '{PAGE}' > /www/index.html && "
                                "exec httpd -f -p 8080 -h /www", labels={"app": "web"}, probe=True)
    client = busybox_pod("client", "exec sleep 100000")
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cp.kubectl("apply", "-f", "-", input="\n".join(json.dumps(o) for o in (server, client, service)))
    pod = pod_ready(cp, "web")
    pod_ready(cp, "client")
    cluster_ip = cp.get_json("service", "web", "-n", NAMESPACE)["spec"]["clusterIP"]
    return cp, pod, cluster_ip


def http_get_in_pod(cp: ControlPlane, pod: str, host: str, port: int = 80,
                    check: bool = True) -> subprocess.CompletedProcess:
    """An HTTP GET from inside `pod` with busybox nc (Debian's static busybox wget crashes: static
    glibc cannot load NSS). stdout is the whole response."""
    return cp.kubectl("exec", pod, "-n", NAMESPACE, "--", "sh", "-c",
                      f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {host} {port}", check=check)


def body(response: str) -> str:
    # kubectl's output is read as text: "\r\n" arrives as "\n".
    return response.replace("\r\n", "\n").split("\n\n", 1)[-1].strip()


def test_busybox_pod_runs_with_logs_and_exec(web):
    cp, pod, _ = web
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["podIP"].startswith("10.244."), pod["status"]
    assert cp.kubectl("logs", "web", "-n", NAMESPACE).stdout.strip() == "started web"
    out = cp.kubectl("exec", "web", "-n", NAMESPACE, "--", "cat", "/www/index.html")
    assert out.stdout.strip() == PAGE


def test_service_answers_through_kube_proxy_from_another_pod(web):
    cp, pod, cluster_ip = web
    endpoints = cp.get_json("endpointslices", "-n", NAMESPACE, "-l", "kubernetes.io/service-name=web")["items"]
    assert [a for s in endpoints for e in s["endpoints"] for a in e["addresses"]] == [pod["status"]["podIP"]]
    out = http_get_in_pod(cp, "client", cluster_ip)
    assert out.stdout.startswith("HTTP/1.") and body(out.stdout) == PAGE, out.stdout


def test_port_forward_to_loopback(web):
    cp, _, _ = web
    port = free_port()
    proc = start_process("port-forward", [str(cp.bin_dir / "kubectl"), "port-forward", "-n", NAMESPACE, "pod/web",
                                          f"{port}:8080", "--address=127.0.0.1"], cp.workdir, cp.env())
    try:
        body = wait_until("port-forward to answer", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/", timeout=5).read().decode(), timeout=60, interval=0.5)
        assert body.strip() == PAGE
    finally:
        proc.stop()


def _default_interface() -> str:
    route = run("ip", "-j", "route", "show", "default").stdout
    return json.loads(route)[0]["dev"]


def test_guard_clusterip_without_kube_proxy_is_unreachable_and_nothing_leaves(web):
    """kube-proxy stopped and its rules removed: a connect to the ClusterIP fails at once, from the
    host and from a pod, and no packet for the pod or Service ranges goes out of the default-route
    interface (iptables counters on the host's way out)."""
    cp, _, cluster_ip = web
    node = cp.node
    out_if = _default_interface()
    rules = [["-o", out_if, "-d", SERVICE_CIDR], ["-o", out_if, "-d", POD_CIDRS], ["-o", out_if, "-s", POD_CIDRS]]
    comment = ["-m", "comment", "--comment", "spin-e2e-guard"]
    for r in rules:
        run("iptables", "-t", "mangle", "-I", "POSTROUTING", *r, *comment)
    proxy = next(p for p in cp.procs if p.name == "kube-proxy")
    try:
        proxy.stop()
        cp.procs.remove(proxy)
        run(*node.net.nsenter(), str(cp.bin_dir / "kube-proxy"), "--cleanup", f"--config={node.dir / 'kube-proxy.json'}")
        assert "KUBE-SERVICES" not in run(*node.net.nsenter(), "iptables-save", "-t", "nat").stdout

        with socket.socket() as s:
            s.settimeout(10)
            started = time.monotonic()
            code = s.connect_ex((cluster_ip, 80))
            elapsed = time.monotonic() - started
        assert code == errno.EHOSTUNREACH, errno.errorcode.get(code, code)
        out = http_get_in_pod(cp, "client", cluster_ip, check=False)
        assert out.returncode != 0
        assert "No route to host" in out.stderr, out.stderr
        # "At once": far below the 10 s connect timeout that a silently dropped packet would hit.
        assert elapsed < 5, elapsed

        counters = run("iptables", "-t", "mangle", "-L", "POSTROUTING", "-n", "-v", "-x").stdout
        guard = [line.split() for line in counters.splitlines() if "spin-e2e-guard" in line]
        assert len(guard) == len(rules), counters
        assert [int(g[0]) for g in guard] == [0] * len(rules), counters
    finally:
        for r in rules:
            run("iptables", "-t", "mangle", "-D", "POSTROUTING", *r, *comment, check=False)
        node.start_proxy()
    # kube-proxy back: the Service answers again.
    wait_until("the Service through the restarted kube-proxy", lambda: body(
        http_get_in_pod(cp, "client", cluster_ip, check=False).stdout) == PAGE, timeout=60, interval=1)


def _leftovers(workdir: Path, net: NodeNetwork, cgroup: str) -> dict[str, list[str]]:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    links = json.loads(run("ip", "-j", "link", "show").stdout)
    routes = run("ip", "route", "show", "table", "all").stdout.splitlines()
    return {
        "mounts": [m for m in mounts if m.startswith((str(workdir), f"/run/{net.netns}"))],
        "netns": [n for n in run("ip", "netns", "list").stdout.split() if n == net.netns],
        "links": [link["ifname"] for link in links if link["ifname"] in (net.host_if, net.node_if, "cni0")],
        "routes": [r for r in routes if f"metric {net.metric}" in r or net.pod_cidr in r],
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{cgroup}")],
        "processes": [str(p) for p in net.pids()],
    }


def test_down_leaves_no_process_mount_interface_route_or_rule(bin_dir, tmp_path):
    """`controlplane.py down` (what `make cluster-down` runs) after a node ran a pod."""
    before = run("iptables-save").stdout
    cp = ControlPlane(tmp_path / "cluster", bin_dir, with_node=True).start()
    try:
        net = cp.net
        cp.kubectl("create", "namespace", NAMESPACE)
        cp.kubectl("apply", "-f", "-", input=json.dumps(busybox_pod("sleeper", "exec sleep 100000")))
        pod_ready(cp, "sleeper")
        during = _leftovers(cp.workdir, net, net.netns)
        assert during["mounts"] and during["links"] and during["routes"] and during["cgroups"], during
    except BaseException:
        cp.stop()
        raise
    assert cmd_down(cp.workdir) == 0
    assert _leftovers(cp.workdir, net, net.netns) == {k: [] for k in during}
    # The host's iptables: the node's rules were all inside its namespace.
    assert _rules(run("iptables-save").stdout) == _rules(before)


def _rules(saved: str) -> list[str]:
    """iptables-save without comments and packet counters."""
    return [re.sub(r"\[\d+:\d+\]", "", line) for line in saved.splitlines() if not line.startswith("#")]


def test_host_ip_forward_untouched(node_cluster):
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == IP_FORWARD_AT_START
