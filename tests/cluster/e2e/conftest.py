"""Fixtures of the end-to-end tests. The default path (`cluster`, `operator`, `namespace`) is the
operator the way it ships: one control plane with a node for the session, the chart installed
there once with `helm install --wait` (self-signed certificates), the operator in the chart's
pods from the image `make image` builds, the webhooks called through the chart's own webhook
configurations and Service. Modules that need process-level control of the operator (signals,
its stdout, a second process with other flags) use `local_cluster` and `local_operator`: a
control plane without a node, the chart's webhooks pointed at a local process that runs with the
chart's arguments and ServiceAccount. Every process is stopped at the end, also when a test
fails."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controlplane import (  # noqa: E402
    OPERATOR_NAMESPACE,
    RELEASE,
    REPO,
    ControlPlane,
    Operator,
    build_binaries,
    chart_operator,
    free_port,
    install_chart,
    install_chart_in_pods,
    operator_binary,
    start_operator,
    wait_for_webhooks,
    wait_until,
)

EXAMPLES = REPO / "examples"
# Short enough that a test can watch a whole resync window, long enough to be a real window.
RESYNC_SECONDS = 15


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    return build_binaries()


def _session_cluster(workdir: Path, bin_dir: Path, with_node: bool):
    # The API server presents a client certificate to webhooks that ask (test_server_hardening).
    cp = ControlPlane(workdir, bin_dir, with_node=with_node, webhook_client_cert=True).start()
    try:
        yield cp
    finally:
        cp.stop()
        print(f"\ncontrol plane logs: {cp.workdir / 'logs'}")


@pytest.fixture(scope="session")
def local_cluster(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A control plane without a node, for the modules that run the operator as a local process."""
    yield from _session_cluster(tmp_path_factory.mktemp("cluster"), bin_dir, with_node=False)


@pytest.fixture(scope="session")
def node_cluster(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A control plane with a node (tests/cluster/node.py): pods run."""
    yield from _session_cluster(tmp_path_factory.mktemp("node-cluster"), bin_dir, with_node=True)


# The chart's defaults apart from the image (install_chart_in_pods) and a resync period short
# enough for test_steady_state to watch a whole window; `extraArgs` is how a user sets it too.
# No RuntimeClass (the default): the API server refuses the pods of apps whose executor names
# one, so the tests' apps make Deployments and ReplicaSets but no pods on the node (as without
# a node); test_node_spinapp turns it on for the apps it runs.
SHIPPED_VALUES = {"certManager": {"enabled": False}, "runtimeClass": {"enabled": False},
                  "extraArgs": [f"--resync-seconds={RESYNC_SECONDS}"]}
# Modules that change or remove the shared release run after the modules that only use it, so
# the release is installed once for all of those: test_operator_pod upgrades, rolls back and
# reinstalls it (and leaves it as it found it), test_leader_loss leaves its 1,000 apps behind,
# test_rollout replaces it with releases of its own.
CHANGES_THE_RELEASE = ("test_operator_pod", "test_leader_loss", "test_rollout")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def last(item: pytest.Item) -> int:
        name = item.module.__name__
        return CHANGES_THE_RELEASE.index(name) + 1 if name in CHANGES_THE_RELEASE else 0

    items[:] = sorted(items, key=last)  # stable: modules stay whole and in their order


def ensure_shipped(cp: ControlPlane) -> None:
    """The shared release (SHIPPED_VALUES) installed and its webhooks answering: installed once,
    and again only after a module removed it or left other values."""
    recorded = cp.workdir / "values-shipped.json"

    def installed() -> subprocess.CompletedProcess:
        return cp.helm("get", "values", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json", check=False)

    current = installed()
    if current.returncode != 0 or not recorded.exists() or json.loads(current.stdout) != json.loads(recorded.read_text()):
        if current.returncode == 0:
            cp.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)
        install_chart_in_pods(cp, SHIPPED_VALUES)
        recorded.write_text(installed().stdout)
    wait_for_webhooks(cp)


def remove_shipped(cp: ControlPlane) -> None:
    """For a module that installs the release its own way."""
    if cp.helm("status", RELEASE, "-n", OPERATOR_NAMESPACE, check=False).returncode == 0:
        cp.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)


@pytest.fixture(scope="module")
def in_pods(node_cluster: ControlPlane):
    """The node cluster with the shared release: the operator in the chart's pods, 2 replicas."""
    if not (REPO / "image" / "operator.sh").exists():
        pytest.skip("image/operator.sh (`make image`) is not in this tree")
    ensure_shipped(node_cluster)
    try:
        yield node_cluster
    finally:
        save_operator_logs(node_cluster)


@pytest.fixture(scope="module")
def cluster(in_pods: ControlPlane) -> ControlPlane:
    """The default path: the control plane where the operator runs the way it ships."""
    return in_pods


def operator_pods(cp: ControlPlane) -> list[dict]:
    """The operator's pods, without those already terminating."""
    pods = cp.get_json("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def save_operator_logs(cp: ControlPlane) -> None:
    """`kubectl logs` of the operator's pods into the control plane's log directory, for failures."""
    for pod in operator_pods(cp):
        name = pod["metadata"]["name"]
        out = cp.kubectl("logs", "-n", OPERATOR_NAMESPACE, name, check=False, timeout=60)
        (cp.workdir / "logs" / f"{name}.log").write_text(out.stdout + out.stderr)


@dataclass
class PodOperator:
    """The operator replicas in the chart's pods, seen as one operator: the audit log's user (the
    chart's ServiceAccount) and the sum of their metrics."""

    cp: ControlPlane
    user: str

    def metrics(self) -> str:
        """Every replica's /metrics, concatenated (counters of one name add up across replicas),
        through the API server's pod proxy (it reaches the pods as it does for the webhooks)."""
        texts = []
        for pod in operator_pods(self.cp):
            # The chart names the health and metrics port `http`; the pod proxy takes its number.
            port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "http")
            texts.append(self.cp.kubectl("get", "--raw", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/"
                                         f"{pod['metadata']['name']}:{port}/proxy/metrics").stdout)
        return "".join(texts)


@pytest.fixture(scope="module")
def operator(cluster: ControlPlane) -> PodOperator:
    """The shipped operator: what tests ask of it goes through the API server and the pods."""
    _, service_account = chart_operator(cluster)
    return PodOperator(cluster, f"system:serviceaccount:{OPERATOR_NAMESPACE}:{service_account}")


@pytest.fixture(scope="session")
def local_operator(local_cluster: ControlPlane) -> Operator:
    """The chart installed in self-signed mode and one operator process serving its webhooks."""
    webhook_port = free_port()
    install_chart(local_cluster, webhook_port, {"certManager": {"enabled": False}})
    args, service_account = chart_operator(local_cluster)
    assert "--self-signed" in args, args
    op = start_operator(local_cluster, "a", webhook_port, [*args, f"--resync-seconds={RESYNC_SECONDS}"],
                        service_account=service_account)
    wait_for_webhooks(local_cluster)
    return op


@pytest.fixture(scope="module")
def apps_ns(cluster: ControlPlane, operator: PodOperator) -> str:
    """A namespace with the example executors, shared by a module's tests that only add their own apps."""
    return new_namespace(cluster, "e2e-apps")


def new_namespace(cp: ControlPlane, prefix: str, executors: bool = True) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    if executors:
        cp.kubectl("apply", "-n", name, "-f", str(EXAMPLES / "executors.yaml"))
        wait_for_executors(cp, name)
    return name


def wait_for_executors(cp: ControlPlane, namespace: str, executor: str = "containerd-shim-spin") -> None:
    """The webhooks learn of executors from a watch: until their cache has caught up, an app
    naming one is denied with "executor not found" (as it is for a user applying both at once
    without --allow-missing-executor). Wait for the webhooks' view, not a fixed time."""
    probe = json.dumps(spinapp("executor-probe", replicas=1, executor=executor))
    wait_until(f"the webhooks to see the executors of {namespace}", lambda: cp.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=probe, check=False).returncode == 0,
        timeout=60, interval=0.3)


@pytest.fixture
def namespace(cluster: ControlPlane, operator: PodOperator, request) -> str:
    """A fresh namespace with the example executors, one per test."""
    return new_namespace(cluster, request.node.name.replace("_", "-")[:40].strip("-").lower())


def spinapp(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": name},
        "spec": {"image": "ghcr.io/example/app:v1.0.0", "executor": "containerd-shim-spin", **spec},
    }


def apply(cp: ControlPlane, namespace: str, *objects: dict[str, Any], check: bool = True,
          extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    docs = "\n---\n".join(yaml.safe_dump(o) for o in objects)
    return cp.kubectl("apply", "-n", namespace, "-f", "-", *extra, input=docs, check=check)


def render(*files: Path, namespace: str, tmp: Path) -> list[dict[str, Any]]:
    """What `spin-operator render --show-secrets` prints for these inputs placed in `namespace`."""
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    for d in docs:
        d.setdefault("metadata", {})["namespace"] = namespace
    placed = tmp / f"render-{uuid.uuid4().hex[:6]}.yaml"
    placed.write_text(yaml.safe_dump_all(docs))
    out = subprocess.run([str(operator_binary()), "render", "--show-secrets", "-f", str(placed)],
                         capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def wait_for(cp: ControlPlane, what: str, kind: str, name: str, namespace: str, predicate, timeout: float = 60):
    """Poll `kubectl get kind name` until predicate(object) holds; returns the object."""
    def check():
        out = cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        obj = json.loads(out.stdout)
        return obj if predicate(obj) else None

    return wait_until(what, check, timeout=timeout, interval=0.3)


def operator_requests(cp: ControlPlane, op: Operator | PodOperator, since: str | None = None,
                      until: str | None = None) -> list[dict[str, Any]]:
    """Audit events of requests the operator made (received in [since, until), RFC 3339)."""
    events = [e for e in cp.audit_events() if e.get("user", {}).get("username") == op.user]
    if since:
        events = [e for e in events if e["requestReceivedTimestamp"] >= since]
    if until:
        events = [e for e in events if e["requestReceivedTimestamp"] < until]
    return events


def resource_of(event: dict[str, Any]) -> str:
    ref = event.get("objectRef", {})
    return ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")


__all__ = [
    "OPERATOR_NAMESPACE", "EXAMPLES", "apply", "new_namespace", "operator_pods", "operator_requests", "render",
    "resource_of", "spinapp", "wait_for", "wait_for_executors", "wait_for_webhooks",
]
