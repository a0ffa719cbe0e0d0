"""SpinApps run on the node, with the Spin stand-in (image/spin-standin) in place of the Wasm runtime:
the operator (its image, in pods) renders the Deployment, the node runs it under the RuntimeClass
handler `spin` (runc through runc-spin) or as a spinImage container, and the pods go Ready through
the probes the operator rendered. Everything else is the operator's and Kubernetes' own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from controlplane import REPO, ControlPlane, wait_until
from conftest import apply, new_namespace, spinapp, wait_for
from test_operator_pod import helm_install, helm_uninstall, operator_image  # noqa: F401 (fixture)

CHECKS = {"readiness": {"httpGet": {"path": "/.well-known/spin/health"}, "periodSeconds": 1},
          "liveness": {"httpGet": {"path": "/.well-known/spin/info"}}}


@pytest.fixture(scope="module")
def standin(node_cluster: ControlPlane, bin_dir: Path, tmp_path_factory) -> str:
    """The stand-in app image in the node's registry; its name as pods pull it."""
    out = tmp_path_factory.mktemp("standin") / "spin-hello"
    built = subprocess.run(["bash", str(REPO / "image/spin-standin/build.sh")], cwd=REPO, capture_output=True,
                           text=True, timeout=600,
                           env={**os.environ, "CRANE": str(bin_dir / "crane"), "IMAGE_OUT": str(out),
                                "IMAGE_PUSH": f"{node_cluster.node.registry}/spin-hello:v1"})
    assert built.returncode == 0, built.stderr
    return "spin-e2e.local/spin-hello:v1"


@pytest.fixture(scope="module")
def operator_in_pods(node_cluster: ControlPlane, operator_image):  # noqa: F811
    helm_install(node_cluster, operator_image, "--set=certManager.enabled=false", "--set=runtimeClass.enabled=true")
    try:
        yield node_cluster
    finally:
        helm_uninstall(node_cluster)


def ready_app(cp: ControlPlane, namespace: str, name: str, replicas: int) -> dict:
    return wait_for(cp, f"SpinApp {name} with {replicas} ready replicas", "spinapp", name, namespace,
                    lambda o: o.get("status", {}).get("readyReplicas") == replicas, timeout=180)


def running_pods(cp: ControlPlane, namespace: str, app: str) -> list[dict]:
    pods = cp.get_json("pods", "-n", namespace, "-l", f"core.spinkube.dev/app-name={app}")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def test_runtime_class_app_goes_ready_and_scales(operator_in_pods, standin):
    cp = operator_in_pods
    ns = new_namespace(cp, "spin-shim")
    apply(cp, ns, spinapp("hello", image=standin, replicas=2, checks=CHECKS))
    ready_app(cp, ns, "hello", 2)
    pods = running_pods(cp, ns, "hello")
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["runtimeClassName"] == "wasmtime-spin-v2"
        assert pod["spec"]["containers"][0]["command"] == ["/"]
    # The app answers inside its pod on Spin's port (busybox wget cannot resolve; nc can).
    out = cp.kubectl("exec", "-n", ns, pods[0]["metadata"]["name"], "--", "sh", "-c",
                     "printf 'GET /.well-known/spin/health HTTP/1.0\\r\\n\\r\\n' | nc -w 5 127.0.0.1 80")
    assert out.stdout.startswith("HTTP/1.1 200") and out.stdout.rstrip().endswith("OK")
    cp.kubectl("scale", "spinapp", "hello", "-n", ns, "--replicas=3")
    ready_app(cp, ns, "hello", 3)
    assert len(running_pods(cp, ns, "hello")) == 3


def test_spin_image_app_goes_ready(operator_in_pods, standin):
    cp = operator_in_pods
    ns = new_namespace(cp, "spin-image", executors=False)
    executor = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                "metadata": {"name": "stand-in-spin"},
                "spec": {"createDeployment": True, "deploymentConfig": {"spinImage": standin}}}
    apply(cp, ns, executor)
    app = spinapp("containerized", image="spin-e2e.local/some-app:v1", executor="stand-in-spin", checks=CHECKS)

    def admitted() -> bool:
        return apply(cp, ns, app, check=False).returncode == 0

    wait_until("the webhooks to see the executor", admitted, timeout=60, interval=0.5)
    ready_app(cp, ns, "containerized", 1)
    [pod] = running_pods(cp, ns, "containerized")
    assert pod["spec"]["containers"][0]["args"][:3] == ["up", "--listen", "0.0.0.0:80"]
