"""The operator in its pods on the node, through its life: `helm install --wait` returning only once
the webhooks can be called, a rollout while a client admits SpinApps without pause (zero failed
admissions), and cert-manager mode with a certificate rotation picked up without a restart.

Admissions go through kube-apiserver (server-side dry-run creates, which call both webhooks with
failurePolicy Fail) on kept-alive connections from two threads; every answer other than 201 is a
failure. Printed counts and the measured Endpoints latency are what README/CHANGELOG report.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import EXAMPLES, new_namespace, remove_shipped, spinapp
from controlplane import CHART, OPERATOR_NAMESPACE, RELEASE, REPO, ClusterError, ControlPlane, free_port, \
    install_chart_in_pods, start_process, wait_until
from node import NodeError
from test_certmanager_and_leader import CERT_MANAGER_CRDS, CertManagerStandIn, install_stand_in_crds, pem_to_der, \
    served_certificate
from test_steady_state import now_rfc3339

WEBHOOK_SERVICE = f"{RELEASE}-webhook"
SERVICE_HOST = f"{WEBHOOK_SERVICE}.{OPERATOR_NAMESPACE}.svc"
SELF_SIGNED = {"certManager": {"enabled": False}}


@pytest.fixture(scope="module")
def node(node_cluster: ControlPlane) -> ControlPlane:
    if not (REPO / "image" / "operator.sh").exists():
        pytest.skip("image/operator.sh (`make image`) is not in this tree")
    # Each test installs the release its own way (and cert-manager mode): not the shared one.
    remove_shipped(node_cluster)
    return node_cluster


class Api:
    """Plain HTTPS to kube-apiserver as the test's admin, one kept-alive connection per thread."""

    def __init__(self, cp: ControlPlane):
        url = urllib.parse.urlparse(cp.server)
        self.host, self.port = url.hostname, url.port
        self.ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        self.token = json.loads(cp.kubeconfig.read_text())["users"][0]["user"]["token"]

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)

    def request(self, conn: http.client.HTTPSConnection, method: str, path: str,
                body: dict | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()


class Admissions:
    """Server-side dry-run creates of SpinApps in `namespace`, without pause, until stopped."""

    def __init__(self, cp: ControlPlane, namespace: str, threads: int = 2):
        self.api = Api(cp)
        self.path = f"/apis/core.spinkube.dev/v1alpha1/namespaces/{namespace}/spinapps?dryRun=All"
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)]

    def _loop(self, index: int) -> None:
        conn = self.api.connect()
        n = 0
        while not self.done.is_set():
            n += 1
            app = spinapp(f"roll-{index}-{n}", replicas=1)
            try:
                status, body = self.api.request(conn, "POST", self.path, app)
            except (OSError, http.client.HTTPException) as e:
                # The API server connection itself (not a webhook answer): still a failed admission.
                status, body = 0, repr(e).encode()
                conn.close()
                conn = self.api.connect()
            with self.lock:
                if status == 201:
                    self.ok += 1
                else:
                    self.failures.append(f"{status}: {body[:300]!r}")
        conn.close()

    def count(self) -> int:
        with self.lock:
            return self.ok + len(self.failures)

    def wait_for_more(self, n: int, what: str) -> None:
        start = self.count()
        wait_until(what, lambda: self.count() >= start + n, timeout=120, interval=0.2)

    def __enter__(self) -> "Admissions":
        for t in self.threads:
            t.start()
        self.wait_for_more(10, "the first admissions")
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for t in self.threads:
            t.join(timeout=60)


def operator_pods(cp: ControlPlane, terminating: bool = False) -> list[dict]:
    pods = cp.get_json("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"]
    return [p for p in pods if terminating or p["metadata"].get("deletionTimestamp") is None]


def ready_endpoint_ips(api: Api, conn: http.client.HTTPSConnection) -> set[str]:
    status, body = api.request(conn, "GET", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/endpoints/{WEBHOOK_SERVICE}")
    assert status == 200, body
    return {a["ip"] for s in json.loads(body).get("subsets") or [] for a in s.get("addresses") or []}


def measure_endpoint_drop(cp: ControlPlane, pod: dict) -> float:
    """Seconds from the DELETE of `pod` until its IP leaves the webhook Service's ready Endpoints,
    polled every 10 ms through the API (what kube-apiserver's webhook client resolves)."""
    api = Api(cp)
    conn = api.connect()
    ip = pod["status"]["podIP"]
    assert ip in ready_endpoint_ips(api, conn)
    start = time.monotonic()
    status, body = api.request(conn, "DELETE", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod['metadata']['name']}")
    assert status == 200, body
    deadline = start + 60
    while ip in ready_endpoint_ips(api, conn):
        assert time.monotonic() < deadline, f"{ip} still in the Endpoints after 60 s"
        time.sleep(0.01)
    conn.close()
    return time.monotonic() - start


def wait_for_two_ready(cp: ControlPlane, gone: set[str] = frozenset()) -> None:
    def settled() -> bool:
        pods = operator_pods(cp, terminating=True)
        names = {p["metadata"]["name"] for p in pods}
        ready = [p for p in pods if p["metadata"].get("deletionTimestamp") is None and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return not names & gone and len(ready) == 2 and len(pods) == 2

    wait_until("two Ready operator pods and no terminating one", settled, timeout=300, interval=1)


@contextmanager
def installed(cp: ControlPlane, values: dict):
    install_chart_in_pods(cp, values)
    try:
        yield
    finally:
        cp.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)


def test_helm_install_wait_then_kubectl_apply_succeeds(node):
    """What a user types: `helm install --wait && kubectl apply`. No wait_for_webhooks: the pods
    are Ready only once the caBundle the leader writes verifies the certificate they serve."""
    cp = node
    ns = new_namespace(cp, "e2e-install-wait", executors=False)
    with installed(cp, SELF_SIGNED):
        out = cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "executors.yaml"), "-f", str(EXAMPLES / "hello.yaml"),
                         check=False)
        assert out.returncode == 0, out.stderr
        # Defaulted by the mutating webhook, so the API server did call it.
        hello = cp.get_json("spinapps", "-n", ns)["items"]
        assert hello and all(a["spec"].get("executor") == "containerd-shim-spin" for a in hello), hello
        readyz_checks = pod_readyz(cp, operator_pods(cp)[0]["metadata"]["name"])
        assert "[+] webhook-ca-bundle" in readyz_checks, readyz_checks


@contextmanager
def port_forward(cp: ControlPlane, pod: str, pod_port: int):
    """A loopback port forwarded to `pod_port` of an operator pod (`kubectl port-forward`)."""
    port = free_port()
    proc = start_process(f"port-forward-{pod}-{pod_port}", [
        str(cp.bin_dir / "kubectl"), "port-forward", "-n", OPERATOR_NAMESPACE, f"pod/{pod}", f"{port}:{pod_port}",
        "--address=127.0.0.1"], cp.workdir, cp.env())
    try:
        yield port
    finally:
        proc.stop()


def pod_readyz(cp: ControlPlane, pod: str) -> str:
    """The body of a pod's /readyz (its checks), ready (200) or not (503)."""
    def body(port: int) -> str:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read().decode()
        except urllib.error.HTTPError as e:
            if e.code != 503:
                raise
            return e.read().decode()

    with port_forward(cp, pod, 8080) as port:
        return wait_until("/readyz through port-forward", lambda: body(port), timeout=60, interval=0.5)


def test_rollout_under_continuous_admissions_fails_none(node):
    """A pod deleted (Endpoints latency measured) and a `helm upgrade` that changes the pod template,
    both while SpinApps are admitted without pause: not one admission fails. Old pods turn
    unready at SIGTERM, keep serving through the lame-duck period while the Endpoints drop them,
    then drain."""
    cp = node
    with installed(cp, SELF_SIGNED):
        ns = new_namespace(cp, "e2e-rollout")  # the chart brings the CRDs
        before = {p["metadata"]["name"] for p in operator_pods(cp)}
        with Admissions(cp, ns) as admissions:
            drops = []
            for pod in sorted(operator_pods(cp), key=lambda p: p["metadata"]["name"])[:1]:
                drops.append(measure_endpoint_drop(cp, pod))
                wait_for_two_ready(cp, gone={pod["metadata"]["name"]})
            admissions.wait_for_more(20, "admissions after the pod deletion")
            values = json.loads((cp.workdir / f"values-{RELEASE}.json").read_text())
            values["podAnnotations"] = {"e2e.spinkube.dev/rollout": "2"}
            install_chart_in_pods(cp, values, upgrade=True)
            rolled = operator_pods(cp)
            # Until the old pods have drained and exited, and some more after.
            wait_for_two_ready(cp, gone=before)
            admissions.wait_for_more(50, "admissions after the rollout")
        print(f"\nrollout under admissions: {admissions.ok} admitted, {len(admissions.failures)} failed; "
              f"Endpoints dropped a deleted pod after {', '.join(f'{d * 1000:.0f} ms' for d in drops)}")
        assert admissions.failures == [], admissions.failures[:5]
        assert admissions.ok >= 100, admissions.ok
        assert all(p["metadata"].get("annotations", {}).get("e2e.spinkube.dev/rollout") == "2" for p in rolled)
        assert not before & {p["metadata"]["name"] for p in operator_pods(cp, terminating=True)}
        # The lame-duck period is far longer than what the Endpoints took here (chart values).
        lame_duck = int(next(a.split("=", 1)[1] for a in rolled[0]["spec"]["containers"][0]["args"]
                             if a.startswith("--shutdown-lame-duck-seconds=")))
        assert max(drops) < lame_duck, (drops, lame_duck)


@pytest.fixture
def cert_manager_crds(node):
    cp = node
    install_stand_in_crds(cp)
    try:
        yield CertManagerStandIn(cp)
    finally:
        for plural, _ in CERT_MANAGER_CRDS:
            cp.kubectl("delete", "crd", f"{plural}.cert-manager.io", "--ignore-not-found", check=False)


def served_by_pod(cp: ControlPlane, pod: str) -> bytes:
    """The certificate a pod's webhook server presents."""
    with port_forward(cp, pod, 9443) as port:
        return wait_until("the webhook's certificate through port-forward",
                          lambda: served_certificate(port, SERVICE_HOST), timeout=60, interval=0.5)


def test_cert_manager_mode_on_the_node_rotates_without_restart(node, cert_manager_crds):
    """The chart's default (cert-manager): pods mount the Certificate's Secret, and are Ready only
    once the CA injector's caBundle verifies what they serve, so `helm install --wait` then
    `kubectl apply` succeeds; a renewal (the Secret updated, kubelet swapping the volume's `..data`
    symlink) is served by the same containers, no admission failing meanwhile."""
    cp, cm = node, cert_manager_crds
    installing = {}
    secret_name = None
    user_ns = new_namespace(cp, "e2e-cm-install-wait", executors=False)

    def install() -> None:
        try:
            install_chart_in_pods(cp, {"certManager": {"enabled": True}})
        except (ClusterError, NodeError) as e:
            installing["error"] = e

    thread = threading.Thread(target=install)
    thread.start()
    try:
        # cert-manager's part: issue the Secret the chart's Certificate names, inject the CA.
        wait_until("the chart's Certificate", lambda: cp.kubectl(
            "get", "certificates.cert-manager.io", "-n", OPERATOR_NAMESPACE, "-o", "name", check=False).stdout.strip(),
            timeout=300, interval=0.5)
        first = cm.issue()
        secret_name = cm.serving_certificate()["spec"]["secretName"]
        wait_until("the webhook configurations", lambda: len(cp.get_json(
            "validatingwebhookconfigurations", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]) == 1,
            timeout=120, interval=0.5)
        # Both pods serve the issued certificate, but no caBundle trusts it yet: not Ready, so
        # `helm install --wait` is still waiting.
        def serving() -> bool:
            pods = operator_pods(cp)
            return len(pods) == 2 and all(served_by_pod(cp, p["metadata"]["name"]) == pem_to_der(first["tls.crt"])
                                          for p in pods)

        wait_until("both pods serving the issued certificate", serving, timeout=300, interval=1)
        readyz_checks = pod_readyz(cp, operator_pods(cp)[0]["metadata"]["name"])
        assert "[-] webhook-ca-bundle" in readyz_checks, readyz_checks
        assert thread.is_alive() and "error" not in installing, "helm install --wait returned before the CA injection"
        cm.inject_ca()
        thread.join(timeout=420)
        assert not thread.is_alive() and "error" not in installing, installing
        # What a user types next, at once (no wait_for_webhooks): both webhooks called and admitting.
        out = cp.kubectl("apply", "-n", user_ns, "-f", str(EXAMPLES / "executors.yaml"), "-f",
                         str(EXAMPLES / "hello.yaml"), check=False)
        assert out.returncode == 0, out.stderr
        hello = cp.get_json("spinapps", "-n", user_ns)["items"]
        assert hello and all(a["spec"].get("executor") == "containerd-shim-spin" for a in hello), hello
        pods = operator_pods(cp)
        assert len(pods) == 2
        assert "--self-signed" not in pods[0]["spec"]["containers"][0]["args"]
        for pod in pods:
            assert served_by_pod(cp, pod["metadata"]["name"]) == pem_to_der(first["tls.crt"])
            assert "[+] webhook-ca-bundle" in pod_readyz(cp, pod["metadata"]["name"])
        ns = new_namespace(cp, "e2e-cm-node")
        with Admissions(cp, ns) as admissions:
            renewed = cm.issue()
            assert renewed["tls.crt"] != first["tls.crt"]
            # kubelet refreshes Secret volumes on its pod sync (about a minute), then the
            # operator's poll of --cert-dir picks the swapped files up.
            for pod in pods:
                wait_until(f"{pod['metadata']['name']} to serve the renewed certificate", lambda pod=pod: served_by_pod(
                    cp, pod["metadata"]["name"]) == pem_to_der(renewed["tls.crt"]), timeout=240, interval=5)
            admissions.wait_for_more(20, "admissions after the rotation")
        print(f"\ncert-manager rotation under admissions: {admissions.ok} admitted, {len(admissions.failures)} failed")
        assert admissions.failures == [], admissions.failures[:5]
        after = {p["metadata"]["uid"]: p for p in operator_pods(cp)}
        assert set(after) == {p["metadata"]["uid"] for p in pods}, "pods were replaced"
        for pod in after.values():
            assert [s["restartCount"] for s in pod["status"]["containerStatuses"]] == [0], pod["status"]
    finally:
        thread.join(timeout=420)
        cp.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)
        if secret_name:
            cp.kubectl("delete", "secret", secret_name, "-n", OPERATOR_NAMESPACE, "--ignore-not-found", check=False)


CERTIFICATE_OBJECTS = ("secrets", "mutatingwebhookconfigurations", "validatingwebhookconfigurations")


def certificate_writes_by_pod(cp: ControlPlane, pod: str, since: str) -> list[str]:
    """Writes to the self-signed Secret and the webhook configurations that the audit log
    attributes to `pod` (its bound ServiceAccount token names the pod). The Lease is left out: a
    stopping leader hands it over with one last update, on purpose."""
    return [f"{e['verb']} {e['objectRef'].get('resource')}/{e['objectRef'].get('name')}"
            for e in cp.audit_events()
            if e["requestReceivedTimestamp"] >= since and e["verb"] in ("create", "update", "patch", "delete")
            and e["objectRef"].get("resource") in CERTIFICATE_OBJECTS
            and pod in e.get("user", {}).get("extra", {}).get("authentication.kubernetes.io/pod-name", [])]


def test_a_pod_in_its_lame_duck_period_writes_no_ca(node):
    """The leader pod deleted with a long lame-duck period: while it still serves, the caBundle is
    stripped again and again; the new leader restores it, the old pod writes nothing at all (audit
    log, by pod name), so it can never put its CA into its successors' configurations."""
    cp = node
    values = {**SELF_SIGNED, "shutdown": {"lameDuckSeconds": 45}, "terminationGracePeriodSeconds": 65}
    with installed(cp, values):
        # Ready does not wait for the Lease (a replica that is not leading repairs a caBundle that
        # does not verify it), and a previous install's Lease may name a gone pod for a moment.
        leader = wait_until("a pod of this install to lead", lambda: (lambda holder: holder if holder in {
            p["metadata"]["name"] for p in operator_pods(cp)} else None)(cp.get_json(
                "lease", f"{RELEASE}-leader", "-n", OPERATOR_NAMESPACE)["spec"].get("holderIdentity")),
            timeout=90, interval=0.5)
        # (The first writer may be either pod: both repair what nobody has written yet.)
        assert any(certificate_writes_by_pod(cp, p["metadata"]["name"], "1970-01-01T00:00:00Z")
                   for p in operator_pods(cp)), "the audit log names no writer pod"
        since = now_rfc3339()
        cp.kubectl("delete", "pod", leader, "-n", OPERATOR_NAMESPACE, "--wait=false")
        configs = [(kind, cfg["metadata"]["name"], len(cfg["webhooks"]))
                   for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
                   for cfg in cp.get_json(kind, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]]
        for _ in range(4):
            time.sleep(2)
            for kind, name, n in configs:
                patch = [{"op": "remove", "path": f"/webhooks/{i}/clientConfig/caBundle"} for i in range(n)]
                cp.kubectl("patch", kind, name, "--type=json", "-p", json.dumps(patch), check=False)
        # The successor (the other replica, then the replacement) repairs it and admits.
        wait_until("the caBundle restored", lambda: all(
            w["clientConfig"].get("caBundle") for kind, name, _ in configs
            for w in cp.get_json(kind, name)["webhooks"]), timeout=60, interval=0.5)
        terminating = [p for p in operator_pods(cp, terminating=True) if p["metadata"]["name"] == leader]
        assert terminating and terminating[0]["metadata"].get("deletionTimestamp"), "the old pod is gone already"
        # Still serving: its container runs (the lame-duck period is not over).
        assert all(s.get("state", {}).get("running") for s in terminating[0]["status"]["containerStatuses"])
        assert certificate_writes_by_pod(cp, leader, since) == []


def previous_chart(tmp: Path) -> Path:
    """The chart as it was before the last commit that changed it (git), unpacked into `tmp`."""
    last = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%H", "--", "helm/spin-operator"],
                          capture_output=True, text=True, check=False)
    if last.returncode != 0 or not last.stdout.strip():
        pytest.skip(f"no git history of helm/spin-operator here: {last.stderr.strip()}")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", f"{last.stdout.strip()}^", "helm/spin-operator"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "xf", "-", "-C", str(tmp)], input=archive.stdout, check=True)
    return tmp / "helm" / "spin-operator"


def test_helm_upgrade_from_the_previous_chart_and_rollback_fail_no_admission(node, tmp_path):
    """`helm install` of the previous chart revision, `helm upgrade` to this one, `helm rollback` to
    the first, all with --wait and while SpinApps are admitted without pause."""
    cp = node
    old_chart = previous_chart(tmp_path)
    repository, tag = cp.node.push_operator_image()
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps({**SELF_SIGNED, "image": {"repository": repository, "tag": tag},
                                       "runtimeClass": {"enabled": True}}))

    def helm(verb: str, *args: str) -> None:
        cp.helm(verb, *args, "-n", OPERATOR_NAMESPACE, "--wait", "--timeout=5m", timeout=400)

    helm("install", RELEASE, str(old_chart), "--create-namespace", "-f", str(values_file))
    try:
        ns = new_namespace(cp, "e2e-upgrade")
        with Admissions(cp, ns) as admissions:
            # The annotation rolls the pods even where the two charts render the same template.
            upgrade = ("upgrade", RELEASE, str(CHART), "-f", str(values_file),
                       "--set-string=podAnnotations.e2e\\.spinkube\\.dev/revision=2")
            for step, revision in ((upgrade, "2"), (("rollback", RELEASE, "1"), None)):
                before = {p["metadata"]["name"] for p in operator_pods(cp)}
                helm(*step)
                wait_for_two_ready(cp, gone=before)
                assert [p["metadata"].get("annotations", {}).get("e2e.spinkube.dev/revision")
                        for p in operator_pods(cp)] == [revision, revision]
                admissions.wait_for_more(20, f"admissions after helm {step[0]}")
        print(f"\nupgrade from the previous chart and rollback: {admissions.ok} admitted, "
              f"{len(admissions.failures)} failed")
        assert admissions.failures == [], admissions.failures[:5]
        history = json.loads(cp.helm("history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
        assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"),
                                                                    (3, "deployed")], history
    finally:
        cp.uninstall_in_pods(RELEASE, OPERATOR_NAMESPACE)
