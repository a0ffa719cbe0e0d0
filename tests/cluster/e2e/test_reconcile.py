"""The reconciler against the real API server and kube-controller-manager: children as `render`
prints them, status, scale, roll-outs, garbage collection, executor deletion."""

from __future__ import annotations

import base64
import json

import yaml

from conftest import EXAMPLES, apply, operator_requests, render, spinapp, wait_for


def ready_condition(obj) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})


def owned_by(obj, app) -> bool:
    return any(r["kind"] == "SpinApp" and r["uid"] == app["metadata"]["uid"] and r.get("controller")
               for r in obj["metadata"].get("ownerReferences", []))


def test_children_match_render_and_status_is_reported(cluster, namespace, tmp_path):
    files = [EXAMPLES / "executors.yaml", EXAMPLES / "runtime-config.yaml"]
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "runtime-config.yaml"))
    expected = render(*files, namespace=namespace, tmp=tmp_path)
    deployments = [d for d in expected if d["kind"] == "Deployment"]
    assert deployments, expected
    for want in expected:
        kind, name = want["kind"], want["metadata"]["name"]
        got = wait_for(cluster, f"{kind} {name}", kind, name, namespace, lambda o: True)
        if kind == "Deployment":
            assert got["spec"]["replicas"] == want["spec"]["replicas"]
            assert got["spec"]["selector"] == want["spec"]["selector"]
            template = got["spec"]["template"]
            assert template["metadata"]["labels"] == want["spec"]["template"]["metadata"]["labels"]
            for field in ("runtimeClassName", "serviceAccountName", "volumes"):
                assert _without_defaults(template["spec"].get(field)) == want["spec"]["template"]["spec"].get(field), field
            got_c, want_c = template["spec"]["containers"][0], want["spec"]["template"]["spec"]["containers"][0]
            for field in ("image", "command", "env", "ports", "volumeMounts"):
                assert _without_defaults(got_c.get(field)) == want_c.get(field), field
        elif kind == "Service":
            assert got["spec"]["selector"] == want["spec"]["selector"]
            assert [(p["port"], p["targetPort"]) for p in got["spec"]["ports"]] == \
                [(p["port"], p["targetPort"]) for p in want["spec"]["ports"]]
        elif kind == "Secret":
            assert set(got["data"]) == set(want.get("data") or want.get("stringData") or {}), name
            if want.get("data") and not want["metadata"]["name"].startswith("spin-ca"):
                assert got["data"] == want["data"], name

    app = cluster.get_json("spinapp", "stateful", "-n", namespace)
    deployment = cluster.get_json("deployment", "stateful", "-n", namespace)
    assert owned_by(deployment, app)
    # No pod runs (no RuntimeClass: the default release has none), so the app is observed but not ready.
    app = wait_for(cluster, "status", "spinapp", "stateful", namespace,
                   lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])
    assert app["status"].get("readyReplicas", 0) == 0
    assert ready_condition(app).get("status") == "False", app["status"]
    assert app["status"]["activeScheduler"] == "containerd-shim-spin"


def _without_defaults(value):
    """Drop the fields the API server defaults (defaultMode, protocol, ...) from a pod spec part."""
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    if isinstance(value, dict):
        dropped = {"defaultMode", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy"}
        out = {k: _without_defaults(v) for k, v in value.items() if k not in dropped}
        if out.get("protocol") == "TCP" and "containerPort" in out:
            del out["protocol"]
        return out
    return value


def test_missing_secret_is_reported_on_the_status(cluster, namespace):
    apply(cluster, namespace, spinapp("needs-secret", replicas=1, runtimeConfig={"loadFromSecret": "absent"}))
    app = wait_for(cluster, "Ready=False MissingSecret", "spinapp", "needs-secret", namespace,
                   lambda o: ready_condition(o).get("reason") == "MissingSecret")
    assert "absent" in ready_condition(app)["message"]


def test_kubectl_scale_changes_the_deployment(cluster, namespace):
    apply(cluster, namespace, spinapp("scaled", replicas=1))
    wait_for(cluster, "deployment", "deployment", "scaled", namespace, lambda o: o["spec"]["replicas"] == 1)
    cluster.kubectl("scale", "spinapp", "scaled", "-n", namespace, "--replicas=3")
    wait_for(cluster, "3 replicas", "deployment", "scaled", namespace, lambda o: o["spec"]["replicas"] == 3)
    # The real deployment controller acts on it: its ReplicaSet wants 3 pods.
    rs = cluster.get_json("replicasets", "-n", namespace, "-l", "core.spinkube.dev/app-name=scaled")["items"]
    assert rs and max(r["spec"]["replicas"] for r in rs) == 3


def test_spec_change_and_referenced_secret_change_roll_through(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "runtime-config.yaml"))
    first = wait_for(cluster, "deployment", "deployment", "stateful", namespace,
                     lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])

    def secret_name(d):
        return next(v["secret"]["secretName"] for v in d["spec"]["template"]["spec"]["volumes"]
                    if v["name"] == "spin-runtime-config")

    old_secret = secret_name(first)
    # A referenced Secret's value changes: a new runtime-config Secret and a new pod template.
    cluster.kubectl("patch", "secret", "app-credentials", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"stringData": {"libsql-token": "rotated-token"}}))
    rolled = wait_for(cluster, "new runtime-config Secret", "deployment", "stateful", namespace,
                      lambda o: secret_name(o) != old_secret)
    new_secret = cluster.get_json("secret", secret_name(rolled), "-n", namespace)
    toml = base64.b64decode(new_secret["data"]["runtime-config.toml"]).decode()
    assert "rotated-token" in toml
    # A spec change: the image rolls through to the template.
    cluster.kubectl("patch", "spinapp", "stateful", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"image": "ghcr.io/example/stateful:v0.5.0"}}))
    wait_for(cluster, "new image", "deployment", "stateful", namespace,
             lambda o: o["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/stateful:v0.5.0")
    # kube-controller-manager's deployment controller made a ReplicaSet per template.
    rs = cluster.get_json("replicasets", "-n", namespace, "-l", "core.spinkube.dev/app-name=stateful")["items"]
    assert len(rs) >= 2, [r["metadata"]["name"] for r in rs]


def test_deleting_an_app_lets_the_garbage_collector_remove_its_children(cluster, namespace):
    apply(cluster, namespace, spinapp("doomed", replicas=1, runtimeConfig={
        "keyValueStores": [{"name": "default", "type": "spin", "options": [{"name": "path", "value": "/data/kv.db"}]}]}))
    wait_for(cluster, "deployment", "deployment", "doomed", namespace, lambda o: True)
    children = {"deployment": "doomed", "service": "doomed"}
    secrets = [s["metadata"]["name"] for s in cluster.get_json(
        "secrets", "-n", namespace, "-l", "core.spinkube.dev/app-name=doomed")["items"]]
    assert len(secrets) == 1, secrets
    for kind, name in children.items():
        obj = cluster.get_json(kind, name, "-n", namespace)
        refs = obj["metadata"]["ownerReferences"]
        assert refs[0]["kind"] == "SpinApp" and refs[0]["blockOwnerDeletion"] is True, refs
    cluster.kubectl("delete", "spinapp", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")

    def gone():
        left = [f"{kind}/{name}" for kind, name in [*children.items(), *[("secret", s) for s in secrets]]
                if cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0]
        return not left

    from controlplane import wait_until
    wait_until("children garbage-collected", gone, timeout=90, interval=1)


def test_deleting_an_executor_in_use_is_denied_and_names_the_apps(cluster, namespace):
    apply(cluster, namespace, spinapp("user-one", replicas=1), spinapp("user-two", replicas=1))
    out = cluster.kubectl("delete", "spinappexecutor", "containerd-shim-spin", "-n", namespace, check=False)
    assert out.returncode != 0
    assert "user-one" in out.stderr and "user-two" in out.stderr, out.stderr
    assert cluster.kubectl("get", "spinappexecutor", "containerd-shim-spin", "-n", namespace).returncode == 0
    # Once unused, it goes.
    cluster.kubectl("delete", "spinapp", "user-one", "user-two", "-n", namespace, "--wait=true", "--timeout=60s")
    cluster.kubectl("delete", "spinappexecutor", "containerd-shim-spin", "-n", namespace, "--timeout=60s")


def test_examples_render_the_objects_the_api_server_holds(cluster, namespace, tmp_path):
    """Every example app reconciles: each child `render` prints exists, with the same name."""
    files = sorted(EXAMPLES.glob("*.yaml"))
    for f in files:
        cluster.kubectl("apply", "-n", namespace, "-f", str(f))
    expected = render(*files, namespace=namespace, tmp=tmp_path)
    for want in expected:
        wait_for(cluster, f"{want['kind']} {want['metadata']['name']}", want["kind"], want["metadata"]["name"],
                 namespace, lambda o: True)
    for doc in (d for f in files for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == "SpinApp"):
        wait_for(cluster, f"{doc['metadata']['name']} observed", "spinapp", doc["metadata"]["name"], namespace,
                 lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])


def test_secret_data_is_read_only_for_referenced_secrets(cluster, operator, namespace):
    """Unrelated Secrets reach the operator as metadata only: the audit log shows a GET (the only
    request that returns one Secret's data) for the Secrets an app references, none for others,
    also when they change."""
    unrelated = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"unrelated-{i}"},
                  "stringData": {"token": "x" * 1024}} for i in range(20)]
    apply(cluster, namespace, *unrelated)
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "runtime-config.yaml"))
    wait_for(cluster, "converged", "spinapp", "stateful", namespace,
             lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"]
             and o["status"].get("deploymentName"))
    cluster.kubectl("patch", "secret", "unrelated-3", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"stringData": {"token": "changed"}}))
    cluster.kubectl("patch", "secret", "app-credentials", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"stringData": {"libsql-token": "rotated-again"}}))
    wait_for(cluster, "rolled", "deployment", "stateful", namespace,
             lambda o: any("rotated-again" in base64.b64decode(
                 cluster.get_json("secret", v["secret"]["secretName"], "-n", namespace)["data"]
                 .get("runtime-config.toml", "")).decode()
                 for v in o["spec"]["template"]["spec"]["volumes"] if v["name"] == "spin-runtime-config"))

    def gets(resource: str) -> list[str]:
        return [e["objectRef"].get("name", "") for e in operator_requests(cluster, operator)
                if e["verb"] == "get" and e["objectRef"].get("resource") == resource
                and e["objectRef"].get("namespace") == namespace]

    secret_gets = gets("secrets")
    assert not [n for n in secret_gets if n.startswith("unrelated-")], secret_gets
    # Fetched when first needed and again after it changed; the CA Secret's existence is read
    # as metadata (the audit log records that GET too).
    assert secret_gets.count("app-credentials") == 2, secret_gets
    # A runtime-config Secret (stateful-<hash>) is created by an apply whose precondition
    # (resourceVersion "1") kube-apiserver refuses if any object has the name, so no GET of a
    # generated name is needed unless such an apply is refused (none is here).
    assert not [n for n in secret_gets if n.startswith("stateful-")], secret_gets
    assert set(secret_gets) <= {"app-credentials", "spin-ca"}, secret_gets
    assert gets("configmaps") == ["app-endpoints"]
