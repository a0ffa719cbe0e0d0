"""The operator as it ships: its image (`make image`, image/operator.sh) pulled by the node from the
node's registry, the chart installed with `helm install --wait` and its defaults apart from the
image and the certificate source. Asserts on what helm, the API server and the kernel report for
the running containers (/proc of each operator process, found by its pod's cgroup)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from controlplane import CHART, OPERATOR_NAMESPACE, RELEASE, REPO, ControlPlane, wait_for_webhooks
from conftest import apply, new_namespace, spinapp
from test_certmanager_and_leader import issue, openssl

CERT_DIR = "/var/run/spin-operator/certs"
NONROOT = "65532"


@pytest.fixture(scope="module")
def operator_image(node_cluster: ControlPlane, bin_dir: Path, tmp_path_factory) -> dict:
    """The image built by image/operator.sh and pushed to the node's registry; chart values for it.
    TEST_IMAGE_PROFILE (Makefile, default debug) picks the binary it packs."""
    out = tmp_path_factory.mktemp("image") / "spin-operator"
    node = node_cluster.node
    ref = f"{node.registry}/spin-operator:e2e"
    built = subprocess.run(["bash", str(REPO / "image/operator.sh")], cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "CRANE": str(bin_dir / "crane"), "IMAGE_OUT": str(out),
                                "IMAGE_PUSH": ref,
                                "IMAGE_PROFILE": os.environ.get("IMAGE_TEST_PROFILE", "debug")},
                           timeout=3600)
    assert built.returncode == 0, built.stderr
    _, digest = built.stdout.split()
    # The node resolves its registry as spin-e2e.local (node.py); pinned by the digest built here.
    return {"repository": "spin-e2e.local/spin-operator", "digest": digest}


def helm_install(cp: ControlPlane, image: dict, *values: str) -> None:
    cp.helm("install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, "--create-namespace", "--wait",
            "--timeout=5m", f"--set=image.repository={image['repository']}", f"--set=image.digest={image['digest']}",
            *values, timeout=400)
    # Ready pods are not yet a patched caBundle: the leader writes it (self-signed) once elected.
    wait_for_webhooks(cp)


def helm_uninstall(cp: ControlPlane) -> None:
    cp.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)


def operator_pods(cp: ControlPlane) -> list[dict]:
    return cp.get_json("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"]


def container_pid(pod: dict) -> int:
    """The operator process of `pod` on this machine: its cgroup path names the pod's UID."""
    marker = "pod" + pod["metadata"]["uid"]
    for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            if marker not in cgroup.read_text():
                continue
            cmdline = (cgroup.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[:2] == [b"/usr/local/bin/spin-operator", b"run"]:
            return int(cgroup.parent.name)
    raise AssertionError(f"no operator process in pod {pod['metadata']['name']}")


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def mount_options(pid: int, mount_point: str) -> set[str]:
    """The per-mount options of the last mount at `mount_point` in the process's view."""
    found = None
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            found = set(fields[5].split(","))
    assert found is not None, f"{mount_point} not mounted in {pid}"
    return found


def assert_hardened(pod: dict) -> int:
    pid = container_pid(pod)
    status = proc_status(pid)
    assert status["Uid"].split() == [NONROOT] * 4 and status["Gid"].split() == [NONROOT] * 4
    assert NONROOT in status["Groups"].split()  # fsGroup
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, caps  # drop: [ALL]
    assert status["NoNewPrivs"] == "1"  # allowPrivilegeEscalation: false
    assert status["Seccomp"] == "2"  # a filter: RuntimeDefault
    assert "ro" in mount_options(pid, "/")  # readOnlyRootFilesystem
    assert "rw" in mount_options(pid, "/tmp")
    return pid


def assert_admits_through_pods(cp: ControlPlane) -> None:
    """The API server calls the webhooks at the pods (no ExternalName, no url): a SpinApp is defaulted."""
    webhook_svc = cp.get_json("service", f"{RELEASE}-webhook", "-n", OPERATOR_NAMESPACE)
    assert webhook_svc["spec"]["type"] == "ClusterIP"
    endpoints = cp.get_json("endpoints", f"{RELEASE}-webhook", "-n", OPERATOR_NAMESPACE)
    ips = {a["ip"] for s in endpoints["subsets"] for a in s["addresses"]}
    assert ips == {p["status"]["podIP"] for p in operator_pods(cp)}
    ns = new_namespace(cp, "pod-admission")
    app = spinapp("defaulted")
    del app["spec"]["executor"]
    apply(cp, ns, app)
    assert cp.get_json("spinapp", "defaulted", "-n", ns)["spec"]["executor"] == "containerd-shim-spin"


def test_self_signed_install_runs_hardened(node_cluster, operator_image):
    cp = node_cluster
    helm_install(cp, operator_image, "--set=certManager.enabled=false")
    try:
        deployment = cp.get_json("deployment", RELEASE, "-n", OPERATOR_NAMESPACE)
        assert deployment["status"]["readyReplicas"] == 2
        pods = operator_pods(cp)
        assert len(pods) == 2
        for pod in pods:
            assert pod["spec"]["containers"][0]["image"].endswith(operator_image["digest"])
            assert_hardened(pod)
        assert_admits_through_pods(cp)
    finally:
        helm_uninstall(cp)


def test_certificate_secret_is_readable_by_the_operator_user(node_cluster, operator_image, tmp_path):
    """tls.existingSecret: a Secret volume (mode 0440, root-owned files but group fsGroup) that the
    operator, uid 65532, must read to become Ready."""
    cp = node_cluster
    service = f"{RELEASE}-webhook.{OPERATOR_NAMESPACE}.svc"
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-days", "1", "-subj", "/CN=e2e-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.crt"))
    files = issue(tmp_path, tmp_path, [service, f"{service}.cluster.local"], "own")
    cp.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    cp.kubectl("create", "secret", "tls", "own-cert", "-n", OPERATOR_NAMESPACE,
               f"--cert={tmp_path / 'own/tls.crt'}", f"--key={tmp_path / 'own/tls.key'}")
    helm_install(cp, operator_image, "--set=tls.existingSecret=own-cert",
                 f"--set=tls.caBundle={base64.b64encode(files['ca.crt']).decode()}")
    try:
        for pod in operator_pods(cp):
            pid = assert_hardened(pod)
            key_file = Path(f"/proc/{pid}/root{CERT_DIR}/tls.key")
            st = key_file.stat()
            assert st.st_gid == int(NONROOT) and st.st_mode & 0o777 == 0o440, oct(st.st_mode)
        assert_admits_through_pods(cp)
    finally:
        helm_uninstall(cp)
        cp.kubectl("delete", "secret", "own-cert", "-n", OPERATOR_NAMESPACE, check=False)
