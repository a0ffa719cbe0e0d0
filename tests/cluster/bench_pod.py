"""The fleet phases with our operator in the chart's pods on a node (`BENCH_WHERE=pod`).

A fresh control plane with a node (node.py) per round; the chart installed with `helm install
--wait` from an image of the same binary the process rounds run (SPIN_OPERATOR_BIN, packed by
image/operator.sh with IMAGE_BIN), self-signed certificates, the webhooks registered through the
chart's configurations and served by the pods throughout. The fleet is created through them, with
`--disable-controllers` in the chart's `extraArgs` (as the process rounds admit it);
then, scaled to 0, the Deployment's `--disable-controllers` is dropped, and each phase that starts
an operator (cold, restart) scales it back to the chart's replicas: the clock starts at the scale-up, so it includes scheduling and starting the
containers (the image is on the node already). The measured process is the leader's (the Lease's
holder), found on this machine by its pod's cgroup; CPU and RSS are read from /proc as for a local
process. Requests are those of the chart's ServiceAccount: both replicas.

Differences from the process rounds, all as the chart ships: both replicas run (the standby serves
webhooks); the live and spec phases go through the webhooks; the container's CPU share is its
request (`cpu.shares` recorded in the row). The bench sets the chart's logLevel to `warn` as the
process rounds set RUST_LOG. The apps' RuntimeClass carries a nodeSelector no node has, so their
pods stay Pending as without a node (kube-scheduler marks them unschedulable: its writes are in
the API server's load, not in the operator's counts). Before the floor, the webhook
configurations are removed, as in the process rounds.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_floor import Api, prepare
from controlplane import OPERATOR_NAMESPACE, RELEASE, ControlPlane, install_chart_in_pods, operator_binary, \
    wait_for_webhooks, wait_until
from test_operator_pod import container_pid

LABELS = "app.kubernetes.io/component=operator"
# Seconds from the scale-up: a leader not Ready by then is failing (RBAC, certificates), and the
# bench stops with its /readyz and log instead of waiting out the convergence timeout.
READY_LIMIT = 180.0
USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"
VALUES = {
    "certManager": {"enabled": False},
    "logLevel": "warn",
    # The apps' pods must not run on the node (module docstring).
    "runtimeClass": {"enabled": True, "nodeSelector": {"spin-bench/no-such-node": "true"}},
}


def pod_control_plane(tmp: Path, bin_dir: Path, n: int) -> tuple[ControlPlane, "PodOperators"]:
    """A control plane with a node, the chart in pods, `n` apps in `fleet` admitted by them, and
    the operator Deployment scaled to 0."""
    cp = ControlPlane(tmp / "pod", bin_dir, with_node=True).start()
    try:
        # Webhooks only while the fleet is created (the process rounds' `--disable-controllers`).
        # Not the chart's `controllers.enabled=false`: that also leaves out the controllers' RBAC
        # (rbac.yaml), and the pods started later without the flag would be refused every list
        # (403) and never get Ready. The flag through `extraArgs` keeps the shipped ClusterRole.
        install_chart_in_pods(cp, {**VALUES, "extraArgs": ["--disable-controllers"]}, binary=operator_binary())
        wait_for_webhooks(cp)
        prepare(cp, "fleet", n)
        ops = PodOperators(cp)
        ops.stop()
        ops.enable_controllers()
        return cp, ops
    except BaseException:
        cp.stop()
        raise


class PodOperators:
    """Scales the chart's Deployment; its leader as the process the fleet phases measure."""

    def __init__(self, cp: ControlPlane):
        self.cp, self.api = cp, Api.of(cp)
        [deployment] = cp.get_json("deployments", "-n", OPERATOR_NAMESPACE, "-l", LABELS)["items"]
        self.deployment = deployment["metadata"]["name"]
        self.replicas = deployment["spec"]["replicas"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        self.lease = next(a.split("=", 1)[1] for a in args if a.startswith("--leader-election-lease="))
        self.last: PodOperator | None = None

    def pods(self) -> list[dict]:
        return self.api.items(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods?labelSelector={LABELS}")

    def scale(self, replicas: int) -> None:
        self.cp.kubectl("scale", "deployment", self.deployment, "-n", OPERATOR_NAMESPACE, f"--replicas={replicas}")

    def stop(self) -> None:
        """Scale to 0 and wait until every pod is gone (lame duck and drain included)."""
        self.scale(0)
        self.wait_gone()

    def enable_controllers(self) -> None:
        """Drops `--disable-controllers` (from `extraArgs`) from the Deployment's arguments: the
        chart's defaults then (a `helm upgrade` would also start the chart's replicas, and its
        schema allows no fewer than 1)."""
        args = self.cp.get_json("deployment", self.deployment, "-n", OPERATOR_NAMESPACE)[
            "spec"]["template"]["spec"]["containers"][0]["args"]
        path = f"/spec/template/spec/containers/0/args/{args.index('--disable-controllers')}"
        self.cp.kubectl("patch", "deployment", self.deployment, "-n", OPERATOR_NAMESPACE, "--type=json", "-p",
                        json.dumps([{"op": "test", "path": path, "value": "--disable-controllers"},
                                    {"op": "remove", "path": path}]))

    def wait_gone(self) -> None:
        wait_until("the operator pods gone", lambda: not self.pods(), timeout=300, interval=0.5)

    def start(self, name: str) -> tuple["PodOperator", str]:
        """Scale up; returns once a new pod holds the Lease and its process is found."""
        t0 = time.monotonic()
        self.scale(self.replicas)

        def leader() -> PodOperator | None:
            holder = json.loads(self.api.send(
                "GET", f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/{self.lease}"
            ))["spec"].get("holderIdentity")
            pod = next((p for p in self.pods() if p["metadata"]["name"] == holder
                        and p["metadata"].get("deletionTimestamp") is None and p["status"].get("podIP")), None)
            return PodOperator(self, pod, container_pid(pod)) if pod else None

        self.last = wait_until(f"a leader among the operator pods ({name})", leader, timeout=300, interval=0.5)
        self.last.t0, self.last.found_s = t0, round(time.monotonic() - t0, 1)
        return self.last, USER


class PodOperator:
    """The leader pod's operator process, seen from this machine (like procs.Proc)."""

    def __init__(self, owner: PodOperators, pod: dict, pid: int):
        self.owner, self.pod, self.pid = owner, pod, pid
        self.name, self.ip = pod["metadata"]["name"], pod["status"]["podIP"]
        self.returncode: int | str | None = None
        self.t0 = time.monotonic()  # the scale-up
        self.found_s = 0.0  # from the scale-up until this process was found leading
        self.ready_seen = False

    def alive(self) -> bool:
        """The process runs and its pod has been Ready, or may still become so (READY_LIMIT)."""
        if not Path(f"/proc/{self.pid}").exists():
            return False
        if not self.ready_seen:
            try:
                self.ready_seen = self.ready()
            except Exception:  # noqa: BLE001 - the API server busy: asked again on the next poll
                pass
            if not self.ready_seen and time.monotonic() - self.t0 > READY_LIMIT:
                self.returncode = f"running, but not Ready {READY_LIMIT:.0f} s after the scale-up"
                return False
        return True

    def ready(self) -> bool:
        pod = json.loads(self.owner.api.send("GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{self.name}"))
        return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))

    def stop(self) -> None:
        self.owner.stop()

    def tail(self, lines: int = 40) -> str:
        out = self.owner.cp.kubectl("logs", "-n", OPERATOR_NAMESPACE, self.name, f"--tail={lines}", check=False)
        return f"/readyz: {self.readyz()}\n{out.stdout}{out.stderr}"

    def readyz(self) -> str:
        try:
            with urllib.request.urlopen(f"http://{self.ip}:8080/readyz", timeout=5) as r:
                return f"{r.status} {r.read().decode(errors='replace')}"
        except urllib.error.HTTPError as e:
            return f"{e.code} {e.read().decode(errors='replace')}"
        except OSError as e:
            return f"unreachable: {e}"

    def metrics(self) -> str:
        # The pod's health port on its IP: a network namespace this bench created (node.py).
        return urllib.request.urlopen(f"http://{self.ip}:8080/metrics", timeout=5).read().decode()

    def cpu_shares(self) -> int:
        """The container's cgroup v1 `cpu.shares` (from its CPU request)."""
        for line in Path(f"/proc/{self.pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                return int((Path("/sys/fs/cgroup") / controllers / path.lstrip("/") / "cpu.shares").read_text())
        return 0
