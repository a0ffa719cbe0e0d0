"""The operator the way it ships: `make image`, `helm install --wait` with the chart's defaults apart
from the image (self-signed certificates: cert-manager is not run here), on the node. Asserts on
what kube-apiserver, kubectl, helm and the pods report."""

from __future__ import annotations

import json
import urllib.request

from conftest import EXAMPLES, apply, new_namespace, spinapp
from controlplane import OPERATOR_NAMESPACE, RELEASE, ControlPlane, free_port, install_chart_in_pods, start_process, \
    wait_for_webhooks, wait_until

def operator_pods(cp: ControlPlane) -> list[dict]:
    """The operator's pods, without those already terminating."""
    pods = cp.get_json("pods", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"]
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def test_helm_install_wait_gives_two_ready_replicas_from_the_image(in_pods):
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
    service = cp.get_json("service", name, "-n", namespace)
    assert service["spec"]["type"] == "ClusterIP" and "externalName" not in service["spec"], service["spec"]
    slices = cp.get_json("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={name}")["items"]
    addresses = {a for s in slices for e in s["endpoints"] if e["conditions"].get("ready")
                 for a in e["addresses"]}
    assert addresses == {p["status"]["podIP"] for p in operator_pods(cp)}
    endpoints = cp.get_json("endpoints", name, "-n", namespace)
    assert {a["ip"] for s in endpoints["subsets"] for a in s["addresses"]} == addresses

    # Defaulted by the mutating webhook, denied by the validating one (which alone knows the
    # executors): no operator runs anywhere but in the pods.
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
    before = {p["metadata"]["name"] for p in operator_pods(cp)}
    values = json.loads((cp.workdir / f"values-{RELEASE}.json").read_text())
    install_chart_in_pods(cp, {**values, "logLevel": "debug"}, upgrade=True)
    pods = operator_pods(cp)
    assert not before & {p["metadata"]["name"] for p in pods}
    assert {e["value"] for p in pods for e in p["spec"]["containers"][0].get("env", [])
            if e["name"] == "RUST_LOG"} == {"debug"}
    wait_for_webhooks(cp)
    cp.helm("rollback", RELEASE, "1", "-n", OPERATOR_NAMESPACE, "--wait", "--timeout=5m", timeout=400)
    wait_until("the rolled-back pods alone", lambda: {e["value"] for p in operator_pods(cp)
                                                       for e in p["spec"]["containers"][0].get("env", [])
                                                       if e["name"] == "RUST_LOG"} == {"info"}
               and len(operator_pods(cp)) == 2, timeout=180, interval=1)
    history = json.loads(cp.helm("history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
    assert [h["revision"] for h in history][-1] == 3 and history[-1]["status"] == "deployed", history
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
