"""The operator the way it ships: its image (`make image`, image/operator.sh) pulled by the node
from the node's registry, the chart installed with `helm install --wait` and its defaults apart
from the image and the resync period (the session's shared release, conftest.SHIPPED_VALUES;
self-signed certificates: cert-manager is not run here; one test switches to
`tls.existingSecret` and back by `helm upgrade`). Asserts on what kube-apiserver, kubectl, helm and the pods report, and on
what the kernel reports for the running containers (/proc of each operator process, found by its
pod's cgroup)."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

from conftest import EXAMPLES, apply, new_namespace, operator_pods, spinapp
from controlplane import OPERATOR_NAMESPACE, RELEASE, ControlPlane, free_port, install_chart_in_pods, start_process, \
    wait_for_webhooks, wait_until
from test_certmanager_and_leader import issue, openssl
from test_rollout import Admissions
from test_steady_state import now_rfc3339

CERT_DIR = "/var/run/spin-operator/certs"
NONROOT = "65532"


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


def test_helm_install_wait_gives_two_ready_hardened_replicas_from_the_image(in_pods):
    cp = in_pods
    deployment = cp.get_json("deployment", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")
    [deployment] = deployment["items"]
    assert deployment["status"]["readyReplicas"] == 2, deployment["status"]
    pods = operator_pods(cp)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == "e2e-node"
        assert pod["spec"]["containers"][0]["image"] == "spin-e2e.local/spin-operator:e2e"
        statuses = pod["status"]["containerStatuses"]
        assert [s["ready"] for s in statuses] == [True], statuses
        assert pod["status"]["phase"] == "Running"
        assert_hardened(pod)


def test_probes_answer_through_port_forward(in_pods):
    cp = in_pods
    pod = operator_pods(cp)[0]["metadata"]["name"]
    port = free_port()
    proc = start_process("port-forward-operator", [
        str(cp.bin_dir / "kubectl"), "port-forward", "-n", OPERATOR_NAMESPACE, f"pod/{pod}", f"{port}:8080",
        "--address=127.0.0.1"], cp.workdir, cp.env())
    try:
        for path in ("/healthz", "/readyz"):
            status = wait_until(f"{path} through port-forward", lambda path=path: urllib.request.urlopen(
                f"http://127.0.0.1:{port}{path}", timeout=5).status, timeout=60, interval=0.5)
            assert status == 200
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "# TYPE" in metrics
    finally:
        proc.stop()


def assert_admits_through_pods(cp: ControlPlane, service_name: str = f"{RELEASE}-webhook") -> None:
    """The webhook Service is a ClusterIP Service (no ExternalName, no url) whose ready Endpoints are
    the operator pods; a SpinApp is defaulted by the mutating webhook and denied by the validating
    one (which alone knows the executors): no operator runs anywhere but in the pods."""
    namespace, name = OPERATOR_NAMESPACE, service_name
    service = cp.get_json("service", name, "-n", namespace)
    assert service["spec"]["type"] == "ClusterIP" and "externalName" not in service["spec"], service["spec"]
    slices = cp.get_json("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={name}")["items"]
    addresses = {a for s in slices for e in s["endpoints"] if e["conditions"].get("ready")
                 for a in e["addresses"]}
    assert addresses == {p["status"]["podIP"] for p in operator_pods(cp)}
    endpoints = cp.get_json("endpoints", name, "-n", namespace)
    assert {a["ip"] for s in endpoints["subsets"] for a in s["addresses"]} == addresses

    ns = new_namespace(cp, "e2e-pods")
    app = spinapp("pod-served")
    del app["spec"]["executor"]
    apply(cp, ns, app)
    stored = cp.get_json("spinapp", "pod-served", "-n", ns)
    assert stored["spec"]["executor"] == "containerd-shim-spin" and stored["spec"]["replicas"] == 1, stored["spec"]
    bare = new_namespace(cp, "e2e-pods-bare", executors=False)
    out = apply(cp, bare, spinapp("no-executor"), check=False)
    assert out.returncode != 0
    assert 'no SpinAppExecutor "containerd-shim-spin"' in out.stderr, out.stderr


def test_webhooks_are_called_at_the_pods_ips(in_pods):
    cp = in_pods
    services = set()
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        configs = cp.get_json(kind, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        assert configs, kind
        for webhook in (w for cfg in configs for w in cfg["webhooks"]):
            assert "url" not in webhook["clientConfig"], webhook["clientConfig"]
            services.add((webhook["clientConfig"]["service"]["namespace"], webhook["clientConfig"]["service"]["name"]))
    [(namespace, name)] = services
    assert namespace == OPERATOR_NAMESPACE
    assert_admits_through_pods(cp, name)


def test_examples_are_admitted_and_reconciled_by_the_pods(in_pods):
    cp = in_pods
    ns = new_namespace(cp, "e2e-pods-hello")
    cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "hello.yaml"))
    wait_until("the operator in pods to create the app's Deployment", lambda: cp.kubectl(
        "get", "deployment", "-n", ns, "-o", "json", check=False).returncode == 0 and json.loads(cp.kubectl(
            "get", "deployment", "-n", ns, "-o", "json").stdout)["items"], timeout=90, interval=1)


def test_helm_upgrade_rolls_the_pods_and_rollback_restores_them(in_pods):
    """A `helm upgrade --wait` that changes the pod template rolls both replicas; `helm rollback
    --wait` brings the first template back. (No earlier chart version exists to upgrade from.)"""
    cp = in_pods
    # The shared release may have revisions from earlier modules: roll back to the one before.
    history = json.loads(cp.helm("history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
    rev0 = history[-1]["revision"]
    before = {p["metadata"]["name"] for p in operator_pods(cp)}
    values_file = cp.workdir / f"values-{RELEASE}.json"
    values = json.loads(values_file.read_text())
    install_chart_in_pods(cp, {**values, "logLevel": "debug"}, upgrade=True)
    pods = operator_pods(cp)
    assert not before & {p["metadata"]["name"] for p in pods}
    assert {e["value"] for p in pods for e in p["spec"]["containers"][0].get("env", [])
            if e["name"] == "RUST_LOG"} == {"debug"}
    wait_for_webhooks(cp)
    cp.helm("rollback", RELEASE, str(rev0), "-n", OPERATOR_NAMESPACE, "--wait", "--timeout=5m", timeout=400)
    wait_until("the rolled-back pods alone", lambda: {e["value"] for p in operator_pods(cp)
                                                       for e in p["spec"]["containers"][0].get("env", [])
                                                       if e["name"] == "RUST_LOG"} == {"info"}
               and len(operator_pods(cp)) == 2, timeout=180, interval=1)
    history = json.loads(cp.helm("history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
    assert [h["revision"] for h in history][-1] == rev0 + 2 and history[-1]["status"] == "deployed", history
    # The rollback put the first values back: so does the record later installs start from.
    values_file.write_text(json.dumps(values))
    wait_for_webhooks(cp)


def evict(cp: ControlPlane, pod: str):
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod, "namespace": OPERATOR_NAMESPACE}}
    return cp.kubectl("create", "--raw", f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod}/eviction", "-f", "-",
                      input=json.dumps(eviction), check=False)


def test_eviction_of_both_replicas_honours_the_pdb(in_pods):
    """Through the Eviction API (what `kubectl drain` uses): the first replica goes, the second is
    refused while the first's replacement is not Ready, and goes once it is."""
    cp = in_pods
    [pdb] = cp.get_json("pdb", "-n", OPERATOR_NAMESPACE)["items"]
    name = pdb["metadata"]["name"]
    wait_until("the PDB to allow one disruption", lambda: cp.get_json("pdb", name, "-n", OPERATOR_NAMESPACE)
               ["status"].get("disruptionsAllowed") == 1, timeout=60, interval=0.5)
    first, second = sorted(p["metadata"]["name"] for p in operator_pods(cp))
    out = evict(cp, first)
    assert out.returncode == 0, out.stderr
    refused = evict(cp, second)
    assert refused.returncode != 0
    assert "disruption budget" in refused.stderr, refused.stderr

    def replaced_and_ready() -> bool:
        pods = operator_pods(cp)
        names = {p["metadata"]["name"] for p in pods}
        ready = [p for p in pods if p["metadata"].get("deletionTimestamp") is None
                 and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        return first not in names and len(ready) == 2

    wait_until("a Ready replacement for the evicted replica", replaced_and_ready, timeout=180, interval=1)
    wait_until("the second eviction to be allowed", lambda: evict(cp, second).returncode == 0, timeout=60, interval=1)
    wait_until("two Ready replicas again", lambda: cp.get_json(
        "deployment", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"][0]
        ["status"].get("readyReplicas") == 2 and second not in {p["metadata"]["name"] for p in operator_pods(cp)},
        timeout=180, interval=1)
    wait_for_webhooks(cp)


def test_switch_to_an_existing_secret_and_back_by_helm_upgrade(in_pods, tmp_path):
    """tls.existingSecret by a plain `helm upgrade --wait` from the module's self-signed release, and
    back (Helm 4 applies server-side; the chart leaves caBundle to one writer per mode, so nothing
    conflicts). The rollout (maxSurge 1, maxUnavailable 0) completes although a pod of the previous
    mode leads: the new pods write caBundle from the Secret's ca.crt themselves. The Secret volume
    (mode 0440, root-owned files but group fsGroup) is readable by the operator, uid 65532."""
    cp = in_pods
    values = json.loads((cp.workdir / f"values-{RELEASE}.json").read_text())
    service = f"{RELEASE}-webhook.{OPERATOR_NAMESPACE}.svc"
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-days", "1", "-subj", "/CN=e2e-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.crt"))
    files = issue(tmp_path, tmp_path, [service, f"{service}.cluster.local"], "own")
    cp.kubectl("create", "secret", "generic", "own-cert", "-n", OPERATOR_NAMESPACE, "--type=kubernetes.io/tls",
               *(f"--from-file={k}={tmp_path / 'own' / k}" for k in ("tls.crt", "tls.key")),
               f"--from-file=ca.crt={tmp_path / 'ca.crt'}")
    configs = [(kind, f"{RELEASE}-{kind.removesuffix('webhookconfiguration')}-webhook-configuration")
               for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration")]

    def ca_bundles() -> set[bytes]:
        return {base64.b64decode(w["clientConfig"].get("caBundle") or "") for kind, name in configs
                for w in cp.get_json(kind, name)["webhooks"]}

    def leads_with(ca: bytes) -> bool:
        """Every caBundle names `ca` first (the CA it replaced may follow, for the rollout)."""
        return all(b.startswith(ca) for b in ca_bundles())

    # Admissions without pause through both switches.
    admissions = Admissions(cp, new_namespace(cp, "e2e-switch"))
    restored = False
    try:
        with admissions:
            install_chart_in_pods(cp, {**values, "tls": {"existingSecret": "own-cert"}}, upgrade=True)
            assert leads_with(files["ca.crt"]), ca_bundles()
            to_secret = (admissions.ok, len(admissions.failures))
            wait_for_webhooks(cp)
            for pod in operator_pods(cp):
                assert "--ca-bundle-file=/var/run/spin-operator/certs/ca.crt" in pod["spec"]["containers"][0]["args"]
                pid = assert_hardened(pod)
                st = Path(f"/proc/{pid}/root{CERT_DIR}/tls.key").stat()
                assert st.st_gid == int(NONROOT) and st.st_mode & 0o777 == 0o440, oct(st.st_mode)
            assert_admits_through_pods(cp)
            back_since = now_rfc3339()
            install_chart_in_pods(cp, values, upgrade=True)
            restored = True
    finally:
        if not restored:
            install_chart_in_pods(cp, values, upgrade=True)
        cp.kubectl("delete", "secret", "own-cert", "-n", OPERATOR_NAMESPACE, check=False)
    print(f"\nself-signed -> existingSecret by helm upgrade: {to_secret[0]} admitted, {to_secret[1]} failed; "
          f"and back: {admissions.ok - to_secret[0]} admitted, {len(admissions.failures) - to_secret[1]} failed")
    # The CA a writer replaces stays trusted through the rollout: the old pods keep answering.
    assert admissions.failures == [], admissions.failures[:5]
    own_ca = base64.b64decode(cp.get_json("secret", f"{RELEASE}-webhook-cert", "-n", OPERATOR_NAMESPACE)
                              ["data"]["ca.crt"])

    def writes() -> list[str]:
        return ca_bundle_writes(cp, back_since, {"self-signed": own_ca, "existingSecret": files["ca.crt"]})

    # The new pods are Ready, so every caBundle trusts the self-signed CA from then on. (Once a
    # writer of the previous mode, patching from a read made before the upgrade, left only the
    # existingSecret CA: every caBundle patch now applies only to the version it read.)
    assert all(own_ca in b for b in ca_bundles()), writes()
    # It leads once a pod of this mode holds the Lease (until then the leader is a pod of the
    # previous mode, which writes nothing); how long that took is printed.
    back = time.monotonic()
    wait_until("caBundle led by the self-signed CA", lambda: leads_with(own_ca), timeout=60, interval=0.5)
    print(f"caBundle led by the self-signed CA {time.monotonic() - back:.1f}s after the upgrade back; "
          f"caBundle writes since the upgrade began: {writes()}")
    wait_for_webhooks(cp)
    assert_admits_through_pods(cp)


def ca_bundle_writes(cp: ControlPlane, since: str, cas: dict[str, bytes]) -> list[str]:
    """Every caBundle write since `since` from the audit log (its policy records their bodies):
    time, pod, configuration, and the CAs written, named by `cas` (`?` for any other)."""
    out = []
    for e in cp.audit_events():
        ref = e["objectRef"]
        if (e["requestReceivedTimestamp"] < since or e["verb"] != "patch"
                or ref.get("resource") not in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")):
            continue
        written = {base64.b64decode(op["value"]) for op in e.get("requestObject") or []
                   if op.get("op") == "add" and op.get("path", "").endswith("/caBundle")}
        named = [[next((n for n, ca in cas.items() if pem.strip() in ca), "?")
                  for pem in bundle.split(b"-----END CERTIFICATE-----")[:-1]]
                 for bundle in written]
        pod = e["user"].get("extra", {}).get("authentication.kubernetes.io/pod-name", ["?"])[0]
        out.append(f"{e['requestReceivedTimestamp'][11:23]} {pod} {ref['resource'][:10]} "
                   f"{e['responseStatus']['code']} {named}")
    return out
