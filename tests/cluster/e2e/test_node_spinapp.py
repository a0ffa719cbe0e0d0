"""SpinApp workloads run: what the operator (its image, in pods) renders works as a workload on the
node, and the pods go Ready through the probes the operator rendered. The Wasm runtime is the one
stand-in: the executors' RuntimeClass handler `spin` runs the stand-in app image
(image/spin-standin: busybox httpd on Spin's port and health paths) under runc (through
runc-spin), and an executor's `spinImage` runs the same image as a container. Everything else is
the operator's and Kubernetes' own."""

from __future__ import annotations

import base64
import urllib.request

import pytest

from conftest import SHIPPED_VALUES, apply, new_namespace, spinapp, wait_for
from controlplane import ControlPlane, free_port, install_chart_in_pods, start_process, wait_until
from node import BUSYBOX_IMAGE, STANDIN_RUNC


# Probes on Spin's health and info paths, served by the stand-in as by Spin.
CHECKS = {"readiness": {"httpGet": {"path": "/.well-known/spin/health"}, "periodSeconds": 1},
          "liveness": {"httpGet": {"path": "/.well-known/spin/info"}, "periodSeconds": 1}}


@pytest.fixture(scope="module")
def app(in_pods: ControlPlane):
    if not STANDIN_RUNC.exists():
        pytest.skip("image/spin-standin (branch image's stand-in app) is not in this tree")
    cp = in_pods
    image = cp.node.push_app_image()
    # The chart's RuntimeClass (handler `spin`) that the executors name, for this module only:
    # a value that changes no pod template, so the upgrade rolls nothing.
    install_chart_in_pods(cp, {**SHIPPED_VALUES, "runtimeClass": {"enabled": True}}, upgrade=True)
    try:
        yield from _running_app(cp, image)
    finally:
        install_chart_in_pods(cp, SHIPPED_VALUES, upgrade=True)


def _running_app(cp: ControlPlane, image: str):
    ns = new_namespace(cp, "e2e-spinapp")
    apply(cp, ns, spinapp("hello", image=image, replicas=1, checks=CHECKS))
    client = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"containers": [{"name": "main", "image": BUSYBOX_IMAGE, "command": ["sleep", "100000"]}],
                 "terminationGracePeriodSeconds": 1},
    }
    apply(cp, ns, client)
    wait_until("the SpinApp to report a ready replica", lambda: cp.get_json("spinapp", "hello", "-n", ns)
               .get("status", {}).get("readyReplicas") == 1, timeout=180, interval=1)
    yield cp, ns


def app_pods(cp: ControlPlane, ns: str) -> list[dict]:
    pods = cp.get_json("pods", "-n", ns, "-l", "core.spinkube.dev/app-name=hello")["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def test_spinapp_pods_run_ready_through_the_rendered_probes(app):
    cp, ns = app
    [pod] = app_pods(cp, ns)
    assert pod["spec"]["runtimeClassName"] == "wasmtime-spin-v2"
    container = pod["spec"]["containers"][0]
    # The shim ignores the command; runc-spin runs the stand-in's entrypoint for it.
    assert container["command"] == ["/"], container
    assert container["readinessProbe"]["httpGet"]["path"] == "/.well-known/spin/health", container
    assert container["livenessProbe"]["httpGet"]["path"] == "/.well-known/spin/info", container
    assert pod["status"]["phase"] == "Running"
    assert [c["ready"] for c in pod["status"]["containerStatuses"]] == [True]
    deployment = cp.get_json("deployment", "hello", "-n", ns)
    assert cp.get_json("spinapp", "hello", "-n", ns)["status"]["readyReplicas"] == \
        deployment["status"]["readyReplicas"] == 1


def test_spinapp_service_answers_from_a_pod_and_through_port_forward(app):
    cp, ns = app
    wait_until("the client pod", lambda: cp.get_json("pod", "client", "-n", ns)["status"].get("phase") == "Running",
               timeout=120, interval=0.5)
    service = cp.get_json("service", "hello", "-n", ns)
    ip, port = service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]
    out = cp.kubectl("exec", "client", "-n", ns, "--", "sh", "-c",
                     f"printf 'GET /.well-known/spin/health HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} {port}")
    assert out.stdout.startswith("HTTP/1.") and " 200 " in out.stdout.splitlines()[0], out.stdout
    assert out.stdout.rstrip().endswith("OK"), out.stdout

    local = free_port()
    proc = start_process("port-forward-app", [str(cp.bin_dir / "kubectl"), "port-forward", "-n", ns, "svc/hello",
                                              f"{local}:{port}", "--address=127.0.0.1"], cp.workdir, cp.env())
    try:
        status = wait_until("the app through port-forward", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{local}/.well-known/spin/health", timeout=5).status, timeout=60, interval=0.5)
        assert status == 200
    finally:
        proc.stop()


def test_scale_spinapp_changes_running_pods(app):
    cp, ns = app
    cp.kubectl("scale", "spinapp", "hello", "-n", ns, "--replicas=2")
    wait_until("two Running and Ready app pods", lambda: len([
        p for p in app_pods(cp, ns) if p["status"].get("phase") == "Running"
        and all(c["ready"] for c in p["status"].get("containerStatuses", [{"ready": False}]))]) == 2,
        timeout=180, interval=1)
    wait_until("the SpinApp to report 2 ready replicas", lambda: cp.get_json("spinapp", "hello", "-n", ns)
               ["status"].get("readyReplicas") == 2, timeout=60, interval=1)


def test_runtime_config_and_ca_bundle_are_mounted_where_spin_reads_them(app):
    cp, ns = app
    runtime_config = '[key_value_store.default]\ntype = "spin"\npath = "/tmp/kv.db"\n'
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rc"}, "type": "Opaque",
              "stringData": {"runtime-config.toml": runtime_config}}
    configured = spinapp("configured", image=cp.get_json("spinapp", "hello", "-n", ns)["spec"]["image"], replicas=1,
                         runtimeConfig={"loadFromSecret": "rc"})
    apply(cp, ns, secret, configured)
    wait_until("the configured SpinApp ready", lambda: cp.get_json("spinapp", "configured", "-n", ns)
               .get("status", {}).get("readyReplicas") == 1, timeout=180, interval=1)
    [pod] = [p for p in cp.get_json("pods", "-n", ns, "-l", "core.spinkube.dev/app-name=configured")["items"]
             if p["metadata"].get("deletionTimestamp") is None]
    name = pod["metadata"]["name"]
    assert cp.kubectl("exec", name, "-n", ns, "--", "cat", "/runtime-config.toml").stdout == runtime_config
    ca_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "spin-ca")
    ca_secret = cp.get_json("secret", ca_volume["secret"]["secretName"], "-n", ns)
    in_pod = cp.kubectl("exec", name, "-n", ns, "--", "cat", "/etc/ssl/certs/ca-certificates.crt").stdout
    assert in_pod == base64.b64decode(ca_secret["data"]["ca-certificates.crt"]).decode()
    assert "BEGIN CERTIFICATE" in in_pod


def test_spin_image_app_goes_ready(app):
    """An executor with `spinImage`: the app runs as a container of that image, `spin up` arguments."""
    cp, hello_ns = app
    image = cp.get_json("spinapp", "hello", "-n", hello_ns)["spec"]["image"]
    ns = new_namespace(cp, "e2e-spin-image", executors=False)
    executor = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                "metadata": {"name": "stand-in-spin"},
                "spec": {"createDeployment": True, "deploymentConfig": {"spinImage": image}}}
    apply(cp, ns, executor)
    containerized = spinapp("containerized", image="spin-e2e.local/some-app:v1", executor="stand-in-spin",
                            checks=CHECKS)
    wait_until("the webhooks to see the executor", lambda: apply(cp, ns, containerized, check=False).returncode == 0,
               timeout=60, interval=0.5)
    wait_for(cp, "the spinImage SpinApp ready", "spinapp", "containerized", ns,
             lambda o: o.get("status", {}).get("readyReplicas") == 1, timeout=180)
    [pod] = [p for p in cp.get_json("pods", "-n", ns, "-l", "core.spinkube.dev/app-name=containerized")["items"]
             if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    assert "runtimeClassName" not in pod["spec"], pod["spec"]
    assert pod["spec"]["containers"][0]["image"] == image
    assert pod["spec"]["containers"][0]["args"][:3] == ["up", "--listen", "0.0.0.0:80"]
