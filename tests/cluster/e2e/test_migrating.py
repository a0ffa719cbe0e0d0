"""docs/migrating.md, run on a real control plane: every `sh` block marked `<!-- migrate: STEP -->`
is executed with bash in order, with the page's variables set for this cluster, so the page and
the test cannot drift.

The starting point is a cluster as the Go operator's users have it: the Go CRDs applied with
`kubectl apply`, the Go chart (`../shared/upstream/chart`) installed with Helm, the Go operator
(`../shared/upstream/bin/manager`, statically linked) running with its chart's ServiceAccount and
SpinApps whose children it created. The test skips with a message where `../shared/upstream` or
the binary is absent; test_certmanager_and_leader.py covers adopting the Go operator's children
from fixtures without them.

There is no kubelet or cert-manager here, so after some steps the test does what they would:
- a Certificate is issued into its Secret and the CA injected into the webhook configurations that
  name it (cert-manager's CA injector), with test_certmanager_and_leader.py's stand-in;
- pods are local processes: ours with our chart's arguments and ServiceAccount token
  (controlplane.start_operator); the Go operator in a private mount namespace (unshare) holding
  the ServiceAccount files a pod gets (token, ca.crt, namespace), with KUBERNETES_SERVICE_HOST set,
  so it runs in-cluster exactly as in its pod, with its chart's arguments (local ports only);
- the webhook Services are ExternalName Services to localhost (ours by value, the Go one replaced
  right after its install, before any SpinApp write) and the Go webhooks are called on its fixed
  port 9443;
- one webhook port per Service: the process that serves our webhooks from step 3 keeps serving
  them; step 7's pod (controllers on) runs its controllers in a second process with the chart's
  new arguments and `--disable-webhooks`, as the webhook half of that pod is the same server.
`--wait` is dropped from the commands (pods never become Ready without a kubelet).

Local processes, not pods: the Go operator has no image here, and the page's steps switch between
it and ours (stopping one process, starting the other with the new chart's arguments), which the
test must control process by process to show that no step loses an admission or a child.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, spinapp, wait_for, wait_for_executors
from controlplane import (
    CHART,
    REPO,
    ClusterError,
    ControlPlane,
    Proc,
    chart_operator,
    free_port,
    start_operator,
    start_process,
    wait_until,
)
from test_certmanager_and_leader import CERT_MANAGER_CRDS, CertManagerStandIn, issue, project, stand_in_crd

DOC = REPO / "docs" / "migrating.md"
UPSTREAM = REPO.parent / "shared" / "upstream"
GO_CHART = UPSTREAM / "chart" / "spin-operator"
GO_CRDS = UPSTREAM / "crds"
GO_BINARY = UPSTREAM / "bin" / "manager"
GO_WEBHOOK_PORT = 9443  # fixed in the Go operator

GO_RELEASE = GO_NAMESPACE = GO_FULLNAME = "spin-operator"
RELEASE = FULLNAME = "spin-operator-rs"
NAMESPACE = "spin-operator"
GO_USER = f"system:serviceaccount:{GO_NAMESPACE}:{GO_FULLNAME}-controller-manager"
APPS = ("alpha", "beta", "gamma")
GO_FINALIZERS_GRANT = {"apiVersion": "v1", "kind": "List", "items": [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "e2e-go-operator-finalizers"},
     "rules": [{"apiGroups": ["core.spinkube.dev"], "resources": ["spinapps/finalizers"], "verbs": ["update"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "e2e-go-operator-finalizers"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-go-operator-finalizers"},
     "subjects": [{"kind": "ServiceAccount", "name": f"{GO_FULLNAME}-controller-manager", "namespace": GO_NAMESPACE}]},
]}
STEP = re.compile(r"<!-- migrate: (?P<name>[a-z-]+) -->\s*```sh\n(?P<body>.*?)```", re.S)
FORWARD = ["backup", "crds", "install", "probe", "enforce", "remove-go-webhooks", "uninstall-go", "cleanup-go",
           "controllers", "verify"]
ROLLBACK = ["rollback-preflight", "rollback-controllers-off", "rollback-install-go", "rollback-probe",
            "rollback-uninstall", "rollback-cleanup", "rollback-crds"]


def doc_steps() -> dict[str, str]:
    text = DOC.read_text()
    steps = {m["name"]: m["body"] for m in STEP.finditer(text)}
    assert list(steps) == FORWARD + ROLLBACK, list(steps)
    return steps


def doc_variables() -> set[str]:
    """The variables the page's `Before you start` blocks define."""
    section = DOC.read_text().split("## Before you start", 1)[1].split("## Switching", 1)[0]
    return set(re.findall(r"^([A-Z_]+)=", section, re.M))


def test_the_doc_steps_use_only_the_variables_it_defines() -> None:
    defined = doc_variables()
    used = {v for body in doc_steps().values() for v in re.findall(r"\$\{?([A-Z_]+)", body)}
    assert used <= defined, used - defined
    assert defined == {"GO_RELEASE", "GO_NAMESPACE", "GO_FULLNAME", "RELEASE", "NAMESPACE", "FULLNAME", "CHART",
                       "VALUES", "GO_CHART", "GO_VALUES", "GO_CRDS"}


def crd_versions(docs: list[dict]) -> dict[str, dict]:
    """kind -> what the procedure must change: schema and subresources of the one version."""
    out = {}
    for d in docs:
        (version,) = d["spec"]["versions"]
        out[d["spec"]["names"]["kind"]] = {"schema": version["schema"], "subresources": version.get("subresources")}
    return out


def crd_files(directory: Path) -> dict[str, dict]:
    return crd_versions([d for f in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d])


def installed_crds(cp: ControlPlane) -> dict[str, dict]:
    return crd_versions([cp.get_json("crd", f"{p}.core.spinkube.dev") for p in ("spinapps", "spinappexecutors")])


class Admissions:
    """Server-side dry-run creates of a valid SpinApp in a loop, each recorded with its time."""

    def __init__(self, cp: ControlPlane, namespace: str):
        self.cp, self.ns = cp, namespace
        self.results: list[tuple[float, bool, str]] = []
        self.paused = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        app = json.dumps(spinapp("admission-probe", replicas=1))
        while not self.done.is_set():
            if self.paused.is_set():
                time.sleep(0.05)
                continue
            out = self.cp.kubectl("create", "--dry-run=server", "-n", self.ns, "-f", "-", input=app, check=False)
            self.results.append((time.monotonic(), out.returncode == 0, out.stderr.strip()))

    def failures(self, start: float, end: float) -> list[str]:
        return [err for t, ok, err in self.results if start <= t <= end and not ok]

    def count(self, start: float, end: float) -> int:
        return sum(1 for t, _, _ in self.results if start <= t <= end)


class Migration:
    def __init__(self, cp: ControlPlane, steps: dict[str, str]):
        self.cp, self.steps = cp, steps
        self.cert_manager = CertManagerStandIn(cp)
        self.dir = cp.workdir / "migrate"
        self.dir.mkdir()
        self.our_port = free_port()
        values = {"webhooks": {"service": {"externalName": "localhost", "port": self.our_port}},
                  "ports": {"webhook": self.our_port}}
        (self.dir / "values.json").write_text(json.dumps(values))
        self.env = cp.env() | {
            "GO_RELEASE": GO_RELEASE, "GO_NAMESPACE": GO_NAMESPACE, "GO_FULLNAME": GO_FULLNAME,
            "RELEASE": RELEASE, "NAMESPACE": NAMESPACE, "FULLNAME": FULLNAME, "CHART": str(CHART),
            "VALUES": f"-f {self.dir / 'values.json'}", "GO_CHART": str(GO_CHART), "GO_VALUES": "",
            "GO_CRDS": str(GO_CRDS),
        }
        self.times: dict[str, tuple[float, float]] = {}
        self.go: Proc | None = None
        self.webhooks = None  # our webhook-serving process
        self.controllers = None  # our controller process

    def run(self, name: str) -> None:
        body = re.sub(r"\s--wait\b", "", self.steps[name])
        start = time.monotonic()
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=self.dir, env=self.env,
                             capture_output=True, text=True, timeout=400)
        self.times[name] = (start, time.monotonic())
        if out.returncode != 0:
            raise ClusterError(f"step {name} failed ({out.returncode}):\n{body}\n{out.stdout}\n{out.stderr}")

    # -- what cert-manager does --------------------------------------------------------------

    def issue_certificate(self, name: str) -> dict[str, bytes]:
        cert = self.cp.get_json("certificates.cert-manager.io", name, "-n", NAMESPACE)
        self.cert_manager.serial += 1
        files = issue(self.cp.workdir, self.cert_manager.ca, cert["spec"]["dnsNames"], f"issued-{name}")
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": cert["spec"]["secretName"], "namespace": NAMESPACE},
                  "data": {k: base64.b64encode(v).decode() for k, v in files.items()}}
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(secret))
        self.cert_manager.inject_ca()
        return files

    # -- the Go operator's pod ---------------------------------------------------------------

    def wire_go_webhooks(self) -> None:
        """The Go webhook Service as an ExternalName Service to localhost, called on port 9443."""
        name = f"{GO_FULLNAME}-webhook-service"
        svc = self.cp.get_json("service", name, "-n", GO_NAMESPACE)
        meta = {k: svc["metadata"][k] for k in ("name", "namespace", "labels", "annotations") if k in svc["metadata"]}
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"type": "ExternalName", "externalName": "localhost", "ports": svc["spec"]["ports"]}}
        self.cp.kubectl("delete", "service", name, "-n", GO_NAMESPACE)
        self.cp.kubectl("create", "-f", "-", input=json.dumps(svc))
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            cfg_name = f"{GO_FULLNAME}-{kind.removesuffix('webhookconfiguration')}-webhook-configuration"
            cfg = self.cp.get_json(kind, cfg_name)
            patch = [{"op": "add", "path": f"/webhooks/{i}/clientConfig/service/port", "value": GO_WEBHOOK_PORT}
                     for i in range(len(cfg["webhooks"]))]
            self.cp.kubectl("patch", kind, cfg_name, "--type=json", "-p", json.dumps(patch))

    def start_go(self) -> None:
        # The Go chart's ClusterRole lacks `update spinapps/finalizers`, which this control plane's
        # OwnerReferencesPermissionEnforcement plugin requires for the blockOwnerDeletion the Go
        # operator sets on children; most clusters run without the plugin. Granted here, by the
        # test, for as long as the Go operator runs.
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(GO_FINALIZERS_GRANT))
        files = self.issue_certificate(f"{GO_FULLNAME}-serving-cert")
        deployment = self.cp.get_json("deployment", f"{GO_FULLNAME}-controller-manager", "-n", GO_NAMESPACE)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        health = free_port()
        local = {"--health-probe-bind-address": f"127.0.0.1:{health}", "--metrics-bind-address": "0"}
        args = [a for a in container["args"] if a.split("=", 1)[0] not in local]
        args += [f"{k}={v}" for k, v in local.items()]
        sa_dir = self.cp.workdir / "go-pod" / "serviceaccount"
        tmp = self.cp.workdir / "go-pod" / "tmp"
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        sa_dir.mkdir(parents=True, exist_ok=True)
        for key in ("tls.crt", "tls.key"):
            (certs / key).write_bytes(files[key])
        token = self.cp.kubectl("create", "token", pod["serviceAccountName"], "-n", GO_NAMESPACE,
                                "--duration=24h").stdout.strip()
        (sa_dir / "token").write_text(token)
        (sa_dir / "ca.crt").write_bytes(self.cp.ca_file.read_bytes())
        (sa_dir / "namespace").write_text(GO_NAMESPACE)
        # A private mount namespace: /run (and so /var/run) is a fresh tmpfs holding only the
        # ServiceAccount files a pod gets; nothing outside the process sees it.
        script = ('mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io && '
                  f'cp -r {sa_dir} /run/secrets/kubernetes.io/serviceaccount && exec "$@"')
        env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmp), "KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": str(self.cp.apiserver_port)}
        self.go = self.cp.add_process(start_process(
            "go-operator", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "go-pod",
                            str(GO_BINARY), *args], self.cp.workdir, env))

        def ready() -> bool:
            if not self.go.alive():
                raise ClusterError(f"the Go operator exited:\n{self.go.tail()}")
            return urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2).status == 200

        wait_until("the Go operator /readyz", ready, timeout=90, interval=0.5)

    def stop_go(self) -> None:
        if self.go is not None:
            self.go.stop()
            self.go = None
            self.cp.kubectl("delete", "-f", "-", "--ignore-not-found", input=json.dumps(GO_FINALIZERS_GRANT))

    # -- our pods ------------------------------------------------------------------------------

    def start_ours(self, name: str, extra: list[str], cert_dir: Path | None = None):
        args, service_account = chart_operator(self.cp, NAMESPACE)
        return start_operator(self.cp, name, self.our_port if "--disable-webhooks" not in extra else free_port(),
                              [*args, *extra], namespace=NAMESPACE, service_account=service_account,
                              cert_dir=cert_dir)

    def start_our_webhooks(self) -> None:
        files = self.issue_certificate(f"{FULLNAME}-webhook-cert")
        cert_dir = self.cp.workdir / "ours-cert-volume"
        cert_dir.mkdir()
        project(cert_dir, files)
        self.webhooks = self.start_ours("rs-webhooks", [], cert_dir=cert_dir)
        assert "--disable-controllers" in chart_operator(self.cp, NAMESPACE)[0]


def go_operator_reconciled(cp: ControlPlane, ns: str, since: str) -> bool:
    """Every app's Deployment was applied by the Go operator after `since`."""
    written = {e["objectRef"].get("name") for e in cp.audit_events()
               if e.get("user", {}).get("username") == GO_USER and e["requestReceivedTimestamp"] >= since
               and e["verb"] in ("patch", "update", "create") and e.get("objectRef", {}).get("resource") == "deployments"
               and e["objectRef"].get("namespace") == ns and e.get("responseStatus", {}).get("code", 0) < 300}
    return set(APPS) <= written


def settled_replica_sets(cp: ControlPlane, ns: str) -> dict[str, list[str]]:
    """Per app, its ReplicaSets once the deployment controller has seen the Deployment's last change."""
    out = {}
    for app in APPS:
        wait_for(cp, f"the deployment controller on {app}", "deployment", app, ns,
                 lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"]
                 and "deployment.kubernetes.io/revision" in o["metadata"].get("annotations", {}))
        rs = cp.get_json("replicasets", "-n", ns, "-l", f"core.spinkube.dev/app-name={app}")["items"]
        out[app] = sorted(r["metadata"]["name"] for r in rs)
    return out


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1)) + ".000000Z"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def go_cluster(bin_dir, tmp_path_factory):
    if not (GO_CHART / "Chart.yaml").is_file() or not GO_CRDS.is_dir():
        pytest.skip(f"the Go operator's chart and CRDs are not at {UPSTREAM} (../shared/upstream): "
                    "the switching procedure needs them")
    if not os.access(GO_BINARY, os.X_OK):
        pytest.skip(f"the Go operator binary {GO_BINARY} is absent: the procedure is only run against the real "
                    "Go operator (test_certmanager_and_leader.py adopts its children from fixtures)")
    if not port_free(GO_WEBHOOK_PORT):
        pytest.skip(f"port {GO_WEBHOOK_PORT}, where the Go operator serves its webhooks, is in use")
    cp = ControlPlane(tmp_path_factory.mktemp("cluster-migrate"), bin_dir).start()
    try:
        for plural, kind in CERT_MANAGER_CRDS:
            cp.kubectl("apply", "-f", "-", input=json.dumps(stand_in_crd(plural, kind)))
        yield cp
    finally:
        cp.stop()


def test_switching_from_the_go_operator_and_back(go_cluster: ControlPlane) -> None:
    cp = go_cluster
    m = Migration(cp, doc_steps())
    ns = "apps"

    # -- the cluster as the Go operator's users have it ------------------------------------------
    cp.kubectl("apply", "-f", str(GO_CRDS))  # client-side, as its install docs say
    wait_until("the Go CRDs to be established", lambda: cp.kubectl(
        "wait", "--for", "condition=Established", "--timeout=5s", "crd/spinapps.core.spinkube.dev",
        "crd/spinappexecutors.core.spinkube.dev", check=False).returncode == 0, timeout=60)
    wait_until("cert-manager stand-in CRDs", lambda: cp.kubectl(
        "get", "certificates.cert-manager.io", "-A", check=False).returncode == 0, timeout=30)
    cp.helm("install", GO_RELEASE, str(GO_CHART), "--namespace", GO_NAMESPACE, "--create-namespace")
    m.wire_go_webhooks()
    m.start_go()
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "executors.yaml"))
    wait_for_executors(cp, ns)
    for i, app in enumerate(APPS):
        cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(spinapp(app, replicas=1 + i)))
    for app in APPS:
        wait_for(cp, f"the Go operator's Deployment of {app}", "deployment", app, ns, lambda o: True)
    uids = {a: cp.get_json("spinapp", a, "-n", ns)["metadata"]["uid"] for a in APPS}
    replica_sets = settled_replica_sets(cp, ns)
    assert all(len(r) == 1 for r in replica_sets.values()), replica_sets
    assert installed_crds(cp) == crd_files(GO_CRDS)

    admissions = Admissions(cp, ns)
    admissions.thread.start()
    try:
        wait_until("admissions through the Go webhooks", lambda: admissions.count(0, time.monotonic()) >= 3)
        # -- the switch, as docs/migrating.md says ---------------------------------------------------
        switch_start = time.monotonic()
        for step in FORWARD:
            m.run(step)
            if step == "install":
                m.start_our_webhooks()
            elif step == "uninstall-go":
                m.stop_go()  # kubelet stops the deleted pods
            elif step == "controllers":
                assert "--disable-controllers" not in chart_operator(cp, NAMESPACE)[0]
                m.controllers = m.start_ours("rs-controllers", ["--disable-webhooks"])
                for app in APPS:
                    wait_for(cp, f"our controller's status of {app}", "spinapp", app, ns,
                             lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])
        switch_end = time.monotonic()
        assert admissions.count(switch_start, switch_end) >= 10
        assert admissions.failures(switch_start, switch_end) == []

        # No pod template changed: each app has the one ReplicaSet it had.
        assert settled_replica_sets(cp, ns) == replica_sets
        for app in APPS:
            deployment = cp.get_json("deployment", app, "-n", ns)
            assert "core.spinkube.dev/applied-hash" in deployment["metadata"]["annotations"]
        # No SpinApp lost.
        assert {a: cp.get_json("spinapp", a, "-n", ns)["metadata"]["uid"] for a in APPS} == uids
        # Our CRDs: exactly the chart's schema and subresources (scale), CEL rules, new fields.
        crds = installed_crds(cp)
        assert crds == crd_files(CHART / "crds")
        app_version = crds["SpinApp"]
        assert app_version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
        spec = app_version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert "x-kubernetes-validations" in spec and {"nodeSelector", "tolerations"} <= set(spec["properties"])
        # The Go operator and everything it had are gone; ours leads.
        assert cp.helm("list", "-n", GO_NAMESPACE, "-q").stdout.split() == [RELEASE]
        for kind, name in [("deployment", f"{GO_FULLNAME}-controller-manager"),
                           ("serviceaccount", f"{GO_FULLNAME}-controller-manager"),
                           ("service", f"{GO_FULLNAME}-webhook-service"), ("secret", "webhook-server-cert"),
                           ("lease", "90ba2d18.spinkube.dev")]:
            assert cp.kubectl("get", kind, name, "-n", GO_NAMESPACE, check=False).returncode != 0, (kind, name)
        for kind, name in [("mutatingwebhookconfiguration", f"{GO_FULLNAME}-mutating-webhook-configuration"),
                           ("validatingwebhookconfiguration", f"{GO_FULLNAME}-validating-webhook-configuration"),
                           ("clusterrole", f"{GO_FULLNAME}-manager-role")]:
            assert cp.kubectl("get", kind, name, check=False).returncode != 0, (kind, name)
        # Our webhooks enforce (step 5 undid step 3's Ignore).
        for kind in ("mutating", "validating"):
            cfg = cp.get_json(f"{kind}webhookconfiguration", f"{FULLNAME}-{kind}-webhook-configuration")
            assert {w["failurePolicy"] for w in cfg["webhooks"]} == {"Fail"}, cfg["webhooks"]
        lease = cp.get_json("lease", f"{FULLNAME}-leader", "-n", NAMESPACE)
        assert lease["spec"]["holderIdentity"] == "rs-controllers"

        # -- and back ---------------------------------------------------------------------------
        rollback_start = time.monotonic()
        rollback_since = now_rfc3339()
        for step in ROLLBACK:
            if step == "rollback-install-go":
                # The Go webhook Service is a ClusterIP Service until the test replaces it: no
                # SpinApp write may make the API server call that (unroutable here) address.
                admissions.paused.set()
            m.run(step)
            if step == "rollback-controllers-off":
                m.controllers.proc.stop()  # the new pods run without controllers
            elif step == "rollback-install-go":
                m.wire_go_webhooks()
                admissions.paused.clear()
                m.start_go()
            elif step == "rollback-uninstall":
                m.webhooks.proc.stop()
        rollback_end = time.monotonic()
        install_go_start = m.times["rollback-install-go"][0]
        probe_end = m.times["rollback-probe"][1]
        # Admissions failed at most between the start of R3 and the end of R4, as the page says.
        assert admissions.failures(rollback_start, install_go_start) == []
        assert admissions.failures(probe_end, rollback_end) == []
        assert admissions.count(probe_end, rollback_end) >= 3
        refused = admissions.failures(install_go_start, probe_end)
        print(f"\nswitch: {admissions.count(switch_start, switch_end)} admissions, none refused; rollback: "
              f"{len(refused)} of {admissions.count(install_go_start, probe_end)} refused in R3-R4 "
              f"({probe_end - install_go_start:.1f} s)")

        wait_until("the Go operator to reconcile every app again",
                   lambda: go_operator_reconciled(cp, ns, rollback_since), timeout=120, interval=1)
        assert settled_replica_sets(cp, ns) == replica_sets
        assert {a: cp.get_json("spinapp", a, "-n", ns)["metadata"]["uid"] for a in APPS} == uids
        assert installed_crds(cp) == crd_files(GO_CRDS)
        assert cp.helm("list", "-n", NAMESPACE, "-q").stdout.split() == [GO_RELEASE]
        for kind, name in [("deployment", FULLNAME), ("serviceaccount", FULLNAME), ("service", f"{FULLNAME}-webhook"),
                           ("secret", f"{FULLNAME}-webhook-cert"), ("lease", f"{FULLNAME}-leader")]:
            assert cp.kubectl("get", kind, name, "-n", NAMESPACE, check=False).returncode != 0, (kind, name)
        assert cp.kubectl("get", "mutatingwebhookconfiguration", f"{FULLNAME}-mutating-webhook-configuration",
                          check=False).returncode != 0
        wait_until("the Go operator to lead", lambda: cp.get_json("lease", "90ba2d18.spinkube.dev", "-n", GO_NAMESPACE)
                   ["spec"].get("holderIdentity"), timeout=60)
    finally:
        admissions.done.set()
        admissions.thread.join(timeout=30)
        m.stop_go()
