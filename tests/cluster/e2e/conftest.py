"""Fixtures of the end-to-end tests: one real control plane for the session, the chart installed
with the real Helm CLI (self-signed certificates), and the operator running as a local process
with the chart's ServiceAccount. Every process is stopped at the end, also when a test fails."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
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
def cluster(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    yield from _session_cluster(tmp_path_factory.mktemp("cluster"), bin_dir, with_node=False)


@pytest.fixture(scope="session")
def node_cluster(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A control plane with a node (tests/cluster/node.py): pods run."""
    yield from _session_cluster(tmp_path_factory.mktemp("node-cluster"), bin_dir, with_node=True)


@pytest.fixture(scope="module")
def in_pods(node_cluster: ControlPlane):
    """The node cluster with the chart installed by `helm install --wait`: the operator in its pods.
    Uninstalled after the module, so other modules may install the release their own way."""
    if not (REPO / "image" / "operator.sh").exists():
        pytest.skip("image/operator.sh (`make image`) is not in this tree")
    install_chart_in_pods(node_cluster, {"certManager": {"enabled": False}})
    try:
        wait_for_webhooks(node_cluster)
        yield node_cluster
    finally:
        node_cluster.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)


@pytest.fixture(scope="session")
def operator(cluster: ControlPlane) -> Operator:
    """The chart installed in self-signed mode and one operator process serving its webhooks."""
    webhook_port = free_port()
    install_chart(cluster, webhook_port, {"certManager": {"enabled": False}})
    args, service_account = chart_operator(cluster)
    assert "--self-signed" in args, args
    op = start_operator(cluster, "a", webhook_port, [*args, f"--resync-seconds={RESYNC_SECONDS}"],
                        service_account=service_account)
    wait_for_webhooks(cluster)
    return op


@pytest.fixture(scope="session")
def apps_ns(cluster: ControlPlane, operator: Operator) -> str:
    """A namespace with the example executors, shared by tests that only add their own apps."""
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
def namespace(cluster: ControlPlane, operator: Operator, request) -> str:
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


def operator_requests(cp: ControlPlane, op: Operator, since: str | None = None,
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
    "OPERATOR_NAMESPACE", "EXAMPLES", "apply", "new_namespace", "operator_requests", "render",
    "resource_of", "spinapp", "wait_for", "wait_for_executors", "wait_for_webhooks",
]
