"""A second control plane with the chart's default certificate path (cert-manager), one
webhook-only replica and two controller replicas: certificate issue and rotation through the
API server, and leader handover on a real Lease.

cert-manager itself is not run (its controller is not built here): the test stands in for it.
It registers minimal cert-manager.io CRDs so the chart's Issuer/Certificate objects install,
issues the serving certificate for exactly the dnsNames of the chart's Certificate into the
Secret it names (as cert-manager would), and copies the CA into the webhook configurations named
by their `cert-manager.io/inject-ca-from` annotation (as its CA injector would). Files reach the
operator's --cert-dir the way kubelet projects a Secret: a `..data` symlink swapped atomically.

The operator runs as local processes here, not in pods: the test writes the files of each
process's --cert-dir itself (to rotate at a moment it picks), runs a webhook-only replica beside
controller-only ones with flags the chart does not produce, reads each process's own /metrics and
stops processes one by one to hand the Lease over. test_rollout.py runs cert-manager mode in pods.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import apply, new_namespace, operator_requests, resource_of, spinapp, wait_for, wait_for_webhooks
from test_admission import admission_requests as admissions
from test_steady_state import now_rfc3339
from controlplane import (
    OPERATOR_NAMESPACE,
    ControlPlane,
    free_port,
    install_chart,
    start_operator,
    wait_until,
)

UPSTREAM_CHILDREN = Path(__file__).parent / "fixtures" / "upstream-children.yaml"
CERT_MANAGER_CRDS = [("certificates", "Certificate"), ("issuers", "Issuer")]


def stand_in_crd(plural: str, kind: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cert-manager.io"},
        "spec": {
            "group": "cert-manager.io", "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


def install_stand_in_crds(cp: ControlPlane) -> None:
    """The stand-in cert-manager.io CRDs, established."""
    for plural, kind in CERT_MANAGER_CRDS:
        cp.kubectl("apply", "-f", "-", input=json.dumps(stand_in_crd(plural, kind)))
    wait_until("cert-manager stand-in CRDs", lambda: cp.kubectl(
        "get", "certificates.cert-manager.io", "-A", check=False).returncode == 0, timeout=30)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue(workdir: Path, ca: Path, dns_names: list[str], name: str) -> dict[str, bytes]:
    """A serving pair for dns_names signed by the CA in `ca` (ca.crt, ca.key), as cert-manager's CA issuer."""
    out = workdir / name
    out.mkdir(parents=True, exist_ok=True)
    openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", f"/CN={dns_names[0]}", "-keyout", str(out / "tls.key"), "-out", str(out / "tls.csr"))
    (out / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=" + ",".join(f"DNS:{d}" for d in dns_names) + "\n")
    openssl("x509", "-req", "-in", str(out / "tls.csr"), "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
            "-CAcreateserial", "-CAserial", str(out / "ca.srl"), "-days", "30", "-sha256",
            "-extfile", str(out / "ext.cnf"), "-out", str(out / "tls.crt"))
    return {"tls.crt": (out / "tls.crt").read_bytes(), "tls.key": (out / "tls.key").read_bytes(),
            "ca.crt": (ca / "ca.crt").read_bytes()}


def project(cert_dir: Path, files: dict[str, bytes]) -> None:
    """Write a Secret's files the way kubelet updates a Secret volume: new dir, `..data` swapped."""
    stamp = cert_dir / f"..{time.time_ns()}"
    stamp.mkdir()
    for key, data in files.items():
        (stamp / key).write_bytes(data)
    tmp_link = cert_dir / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(stamp.name)
    os.replace(tmp_link, cert_dir / "..data")
    for key in files:
        link = cert_dir / key
        if not link.is_symlink():
            link.symlink_to(f"..data/{key}")


def served_certificate(port: int, server_name: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


class CertManagerStandIn:
    def __init__(self, cp: ControlPlane):
        self.cp = cp
        self.ca = cp.workdir / "cm-ca"
        self.ca.mkdir(exist_ok=True)
        openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-days", "365", "-subj", "/CN=stand-in-cert-manager-ca",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", str(self.ca / "ca.key"), "-out", str(self.ca / "ca.crt"))
        self.serial = 0

    def serving_certificate(self) -> dict:
        certs = self.cp.get_json("certificates.cert-manager.io", "-n", OPERATOR_NAMESPACE)["items"]
        # The chart's serving Certificate is the one that is not a CA.
        return next(c for c in certs if not c["spec"].get("isCA"))

    def issue(self) -> dict[str, bytes]:
        cert = self.serving_certificate()
        self.serial += 1
        files = issue(self.cp.workdir, self.ca, cert["spec"]["dnsNames"], f"issued-{self.serial}")
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": cert["spec"]["secretName"], "namespace": OPERATOR_NAMESPACE},
                  "data": {k: base64.b64encode(v).decode() for k, v in files.items()}}
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(secret))
        return files

    def inject_ca(self) -> list[str]:
        """What the CA injector does: caBundle from the annotated Certificate's Secret."""
        injected = []
        for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
            for cfg in self.cp.get_json(kind)["items"]:
                source = cfg["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
                if not source:
                    continue
                ns, name = source.split("/")
                cert = self.cp.get_json("certificates.cert-manager.io", name, "-n", ns)
                secret = self.cp.get_json("secret", cert["spec"]["secretName"], "-n", ns)
                patch = [{"op": "replace", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": secret["data"]["ca.crt"]}
                         for i in range(len(cfg["webhooks"]))]
                self.cp.kubectl("patch", kind, cfg["metadata"]["name"], "--type=json", "-p", json.dumps(patch))
                injected.append(cfg["metadata"]["name"])
        return injected


@pytest.fixture(scope="module")
def cm_cluster(bin_dir, tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("cluster-cm"), bin_dir).start()
    try:
        install_stand_in_crds(cp)
        cp.webhook_port = free_port()
        install_chart(cp, cp.webhook_port)  # the chart's defaults: certManager.enabled=true
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def cert_manager(cm_cluster):
    return CertManagerStandIn(cm_cluster)


@pytest.fixture(scope="module")
def webhook_replica(cm_cluster, cert_manager):
    files = cert_manager.issue()
    assert sorted(cert_manager.inject_ca()) == ["spin-operator-mutating-webhook-configuration",
                                                "spin-operator-validating-webhook-configuration"]
    cert_dir = cm_cluster.workdir / "webhook-cert-volume"
    cert_dir.mkdir()
    project(cert_dir, files)
    op = start_operator(cm_cluster, "webhooks", cm_cluster.webhook_port, ["--disable-controllers"], cert_dir=cert_dir)
    op.cert_dir = cert_dir
    wait_for_webhooks(cm_cluster)
    return op


def test_chart_certificate_names_the_service_the_api_server_calls(cm_cluster, cert_manager):
    cert = cert_manager.serving_certificate()
    svc = cm_cluster.get_json("service", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=webhook")["items"]
    assert len(svc) == 1
    name = svc[0]["metadata"]["name"]
    assert f"{name}.{OPERATOR_NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        cfg = cm_cluster.get_json(kind, f"spin-operator-{kind[:-len('webhookconfiguration')]}-webhook-configuration")
        assert cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
            f"{OPERATOR_NAMESPACE}/{cert['metadata']['name']}"
        assert {w["clientConfig"]["service"]["name"] for w in cfg["webhooks"]} == {name}


def test_api_server_calls_the_webhooks_with_the_issued_certificate(cm_cluster, webhook_replica):
    ns = new_namespace(cm_cluster, "e2e-cm")
    out = apply(cm_cluster, ns, spinapp("bad", replicas=-1), check=False)
    assert out.returncode != 0
    assert "spec.replicas: Invalid value: -1" in out.stderr, out.stderr


def test_rotation_fails_no_admission(cm_cluster, cert_manager, webhook_replica):
    ns = new_namespace(cm_cluster, "e2e-rotate")
    app = json.dumps(spinapp("probe", replicas=1))
    before = served_certificate(webhook_replica.webhook_port, "spin-operator-webhook.spin-operator.svc")
    failures: list[str] = []
    done = threading.Event()
    count = 0

    def admit_in_a_loop():
        nonlocal count
        while not done.is_set():
            out = cm_cluster.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=app, check=False)
            count += 1
            if out.returncode != 0:
                failures.append(out.stderr)

    loop = threading.Thread(target=admit_in_a_loop)
    loop.start()
    try:
        wait_until("admissions before the rotation", lambda: count >= 2, timeout=60)
        # cert-manager renews: a new pair in the Secret; kubelet swaps the volume's files.
        files = cert_manager.issue()
        project(webhook_replica.cert_dir, files)
        wait_until("the new certificate served", lambda: served_certificate(
            webhook_replica.webhook_port, "spin-operator-webhook.spin-operator.svc") == pem_to_der(files["tls.crt"]),
            timeout=60, interval=0.5)
        served_at = count
        wait_until("admissions after the rotation", lambda: count >= served_at + 3, timeout=60)
    finally:
        done.set()
        loop.join()
    assert before != pem_to_der(files["tls.crt"])
    assert failures == [], failures[:3]


def test_a_burst_of_admissions_makes_no_api_requests(cm_cluster, webhook_replica):
    ns = new_namespace(cm_cluster, "e2e-burst")
    apps = {"apiVersion": "v1", "kind": "List",
            "items": [spinapp(f"burst-{i}", replicas=1 + i % 3) for i in range(60)]}
    before = dict(admissions(webhook_replica))
    start = now_rfc3339()
    for _ in range(3):
        # Server-side dry runs: each item is defaulted and validated by our webhooks.
        cm_cluster.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(apps))
    end = now_rfc3339()
    after = dict(admissions(webhook_replica))
    admitted = sum(after.values()) - sum(before.values())
    assert admitted >= 360, (before, after)  # 180 objects, a mutating and a validating call each
    # Only the webhook replica runs here (it holds no Lease): nothing at all may be in the log.
    requests = [f"{e['verb']} {resource_of(e)}" for e in operator_requests(cm_cluster, webhook_replica,
                                                                          since=start, until=end)]
    assert requests == [], requests


def test_switching_from_upstream_adopts_its_children_without_a_roll(cm_cluster, webhook_replica):
    """No controller runs yet in this cluster: the app and its children are left as the Go operator
    leaves them; then our controller starts and takes them over."""
    ns = new_namespace(cm_cluster, "e2e-switch")
    apply(cm_cluster, ns, spinapp("switched", image="ghcr.io/example/switched:v1.2.3", replicas=2))
    app = cm_cluster.get_json("spinapp", "switched", "-n", ns)
    owner = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "name": "switched",
             "uid": app["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    children = [d for d in yaml.safe_load_all(UPSTREAM_CHILDREN.read_text()) if d]
    for child in children:
        child["metadata"]["ownerReferences"] = [owner]
        # Upstream's controller applies its children server-side as field manager spin-operator.
        cm_cluster.kubectl("apply", "--server-side", "--field-manager=spin-operator", "-n", ns, "-f", "-",
                           input=json.dumps(child))
    # Let kube-controller-manager settle first: its revision annotation bumps the generation.
    wait_for(cm_cluster, "the deployment controller", "deployment", "switched", ns,
             lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"]
             and "deployment.kubernetes.io/revision" in o["metadata"].get("annotations", {}))
    before = {c["kind"]: cm_cluster.get_json(c["kind"], c["metadata"]["name"], "-n", ns) for c in children}

    replica = start_operator(cm_cluster, "switch", free_port(), ["--disable-webhooks"])
    try:
        wait_for(cm_cluster, "status written by our controller", "spinapp", "switched", ns,
                 lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])
        after = {c["kind"]: cm_cluster.get_json(c["kind"], c["metadata"]["name"], "-n", ns) for c in children}
    finally:
        replica.proc.stop()
    deployment_before, deployment_after = before["Deployment"], after["Deployment"]
    # Same pod template: no new ReplicaSet, no pod restarted by the switch.
    assert deployment_after["spec"]["template"] == deployment_before["spec"]["template"]
    # Our controller records what it applied in an annotation (which bumps a Deployment's
    # generation, as any annotation change does) but leaves the pod template alone.
    assert "core.spinkube.dev/applied-hash" in deployment_after["metadata"]["annotations"]
    assert after["Secret"]["data"] == before["Secret"]["data"]
    assert after["Service"]["spec"]["selector"] == before["Service"]["spec"]["selector"]
    wait_for(cm_cluster, "the deployment controller to see the change", "deployment", "switched", ns,
             lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])
    rs = cm_cluster.get_json("replicasets", "-n", ns, "-l", "core.spinkube.dev/app-name=switched")["items"]
    assert len(rs) == 1, [r["metadata"]["name"] for r in rs]
    # The runtime-config Secret kept its upstream name; no second one was created.
    secrets = cm_cluster.get_json("secrets", "-n", ns, "-l", "core.spinkube.dev/app-name=switched")["items"]
    assert [s["metadata"]["name"] for s in secrets] == ["switched-760b133c"]


def lease_holder(cp: ControlPlane) -> str | None:
    out = cp.kubectl("get", "lease", "spin-operator-leader", "-n", OPERATOR_NAMESPACE, "-o", "json", check=False)
    return json.loads(out.stdout)["spec"].get("holderIdentity") if out.returncode == 0 else None


def reconciles(op) -> float:
    """Successful SpinApp reconciles of one operator, from its metrics."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith("spin_operator_controller_reconciles_total{")
               and 'controller="spinapp"' in line and 'result="success"' in line)


def test_leader_handover_on_a_real_lease(cm_cluster, webhook_replica):
    ns = new_namespace(cm_cluster, "e2e-leader")
    replicas = {name: start_operator(cm_cluster, name, free_port(), ["--disable-webhooks"]) for name in ("b", "c")}
    first = wait_until("a leader", lambda: lease_holder(cm_cluster) in replicas and lease_holder(cm_cluster), timeout=60)
    apply(cm_cluster, ns, spinapp("before", replicas=1))
    wait_for(cm_cluster, "reconciled by the first leader", "deployment", "before", ns, lambda o: True)
    # The webhook-only replica never campaigns.
    assert lease_holder(cm_cluster) == first

    replicas[first].proc.stop()
    second = next(n for n in replicas if n != first)
    wait_until(f"{second} to take the Lease", lambda: lease_holder(cm_cluster) == second, timeout=60)
    handover = now_rfc3339()
    lease = cm_cluster.get_json("lease", "spin-operator-leader", "-n", OPERATOR_NAMESPACE)
    assert lease["spec"].get("leaseTransitions", 0) >= 1, lease["spec"]
    apply(cm_cluster, ns, spinapp("after", replicas=1))
    wait_for(cm_cluster, "reconciled by the new leader", "deployment", "after", ns, lambda o: True)
    deployment = cm_cluster.get_json("deployment", "after", "-n", ns, "--show-managed-fields")
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert "spin-operator" in managers, managers
    # The new leader's caches start from lists (whose items carry no apiVersion/kind): every app
    # it took over, here and in the other tests' namespaces, was already converged, so it wrote
    # nothing but the new app's children.
    wait_until("the new leader's first reconciles", lambda: reconciles(replicas[second]) >= 2, timeout=30)
    time.sleep(2)
    writes = [f"{e['verb']} {resource_of(e)} {e['objectRef'].get('namespace')}/{e['objectRef'].get('name')}"
              for e in operator_requests(cm_cluster, replicas[second], since=handover)
              if e["verb"] in ("create", "update", "patch", "delete")
              and resource_of(e) in ("deployments", "services", "secrets")
              and not e["objectRef"].get("name", "").startswith("after")]
    assert writes == [], writes
    replicas[second].proc.stop()
