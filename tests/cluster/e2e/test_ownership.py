"""Objects the operator does not own, on the real API server: a Service that another team created
under an app's name is left untouched, and the app says why in its status (`kubectl get spinapp
-o yaml`) with one Warning Event. The check costs no lookup on the common path: each apply carries
a precondition the API server checks (src/controller/ownership.rs, `Expect`), proven here first on
the API server alone, then through the operator (refusal and adoption, from the audit log)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import yaml

from conftest import apply, operator_requests, spinapp, wait_for
from controlplane import ADMIN_TOKEN, ControlPlane, wait_until


def ready_condition(obj) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})


def not_owned_refusals(op) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith("spin_operator_controller_reconciles_total{")
               and 'controller="spinapp"' in line and 'result="not_owned"' in line)


def server_side_apply(cluster: ControlPlane, namespace: str, obj: dict) -> tuple[int, dict]:
    """A forced server-side apply as the operator sends it: (HTTP code, body)."""
    req = urllib.request.Request(
        f"{cluster.server}/api/v1/namespaces/{namespace}/services/{obj['metadata']['name']}"
        "?fieldManager=precondition-test&force=true",
        data=json.dumps(obj).encode(), method="PATCH",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/apply-patch+yaml"})
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_api_server_checks_the_preconditions_of_an_apply(cluster, namespace):
    """What `ownership::Expect` relies on: `resourceVersion: "1"` creates a missing object and is
    refused (409) for an existing one; a `uid` is refused for another object (422 on
    metadata.uid) and for none (409), and applies to its own; neither is recorded as owned."""
    def service(**meta) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", **meta},
                "spec": {"selector": {"app": "ours"}, "ports": [{"port": 80}]}}

    code, body = server_side_apply(cluster, namespace, service(uid="00000000-0000-0000-0000-000000000000"))
    assert (code, body["reason"]) == (409, "Conflict") and "uid mismatch" in body["message"], body
    code, created = server_side_apply(cluster, namespace, service(resourceVersion="1"))
    assert code == 201, created
    assert created["metadata"]["resourceVersion"] != "1"
    code, body = server_side_apply(cluster, namespace, service(resourceVersion="1"))
    assert (code, body["reason"]) == (409, "Conflict"), body
    code, body = server_side_apply(cluster, namespace, service(uid="00000000-0000-0000-0000-000000000000"))
    assert (code, body["reason"]) == (422, "Invalid"), body
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.uid"], body
    stored = cluster.get_json("service", "svc", "-n", namespace)
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], "refused: not written"

    code, updated = server_side_apply(cluster, namespace, {**service(uid=created["metadata"]["uid"]),
                                                           "spec": {"selector": {"app": "moved"}, "ports": [{"port": 80}]}})
    assert code == 200 and updated["spec"]["selector"] == {"app": "moved"}, updated
    owned = [e for e in updated["metadata"]["managedFields"] if e["manager"] == "precondition-test"]
    assert "f:metadata" not in owned[0]["fieldsV1"], owned


def test_children_upstream_made_are_adopted_after_one_refused_apply(cluster, operator, namespace):
    """A Deployment owned by the app's uid, without our labels (in no cache of ours), as upstream
    leaves it: the apply that assumes it absent is refused, the operator looks it up once and
    applies for its uid."""
    # The executor that creates no Deployment first, so the test can place upstream's before
    # the operator wants one.
    apply(cluster, namespace, spinapp("moved", replicas=1, executor="external"))
    app = wait_for(cluster, "the app's uid", "spinapp", "moved", namespace, lambda o: o.get("status"))
    owner = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "name": "moved",
             "uid": app["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    # Upstream's pod labels (a Deployment's selector is immutable), on the pods only.
    pods = {"core.spinkube.dev/app-name": "moved", "core.spinkube.dev/app.moved.status": "ready"}
    upstream = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "moved", "ownerReferences": [owner]},
                "spec": {"selector": {"matchLabels": pods},
                         "template": {"metadata": {"labels": pods},
                                      "spec": {"containers": [{"name": "moved", "image": "old:v1"}]}}}}
    created = json.loads(cluster.kubectl("create", "-n", namespace, "-f", "-", "-o", "json",
                                         input=json.dumps(upstream)).stdout)

    apply(cluster, namespace, spinapp("moved", replicas=1))
    adopted = wait_for(cluster, "the Deployment adopted", "deployment", "moved", namespace,
                       lambda o: o["metadata"].get("labels", {}).get("core.spinkube.dev/app-name") == "moved")
    assert adopted["metadata"]["uid"] == created["metadata"]["uid"], "written in place, not recreated"
    assert [r["uid"] for r in adopted["metadata"]["ownerReferences"]] == [app["metadata"]["uid"]]
    calls = [(e["verb"], e["responseStatus"]["code"]) for e in operator_requests(cluster, operator)
             if e["objectRef"].get("resource") == "deployments" and e["objectRef"].get("name") == "moved"
             and e["objectRef"].get("namespace") == namespace]
    assert calls[:3] == [("patch", 409), ("get", 200), ("patch", 200)], calls


def test_a_foreign_service_is_left_untouched_and_reported(cluster, operator, namespace):
    foreign = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken"},
               "spec": {"selector": {"team": "payments"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(foreign))
    before = cluster.get_json("service", "taken", "-n", namespace)
    refusals = not_owned_refusals(operator)
    apply(cluster, namespace, spinapp("taken", replicas=1))

    def reported():
        out = cluster.kubectl("get", "spinapp", "taken", "-n", namespace, "-o", "yaml")
        condition = ready_condition(yaml.safe_load(out.stdout))
        return condition if condition.get("reason") == "ChildNotOwned" else None

    condition = wait_until("the ChildNotOwned condition", reported, timeout=60, interval=0.5)
    assert condition["status"] == "False"
    assert "Service" in condition["message"] and f"{namespace}/taken" in condition["message"], condition
    assert "no SpinApp owner reference" in condition["message"], condition
    # Retried with backoff (the Service carries no label of ours, so no watch reports it)...
    wait_until("three refused reconciles", lambda: not_owned_refusals(operator) >= refusals + 3,
               timeout=60, interval=0.5)
    # ...and never written to: each retry is an apply the API server refused on its precondition
    # (the Service is in no cache of ours), then a lookup.
    written = {(e["verb"], e["responseStatus"]["code"]) for e in operator_requests(cluster, operator)
               if e["objectRef"].get("resource") == "services" and e["objectRef"].get("name") == "taken"
               and e["objectRef"].get("namespace") == namespace}
    assert written == {("patch", 409), ("get", 200)}, written
    after = cluster.get_json("service", "taken", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["selector"] == {"team": "payments"}
    assert "ownerReferences" not in after["metadata"]
    # One Warning Event, not one per reconcile.
    events = cluster.get_json("events.events.k8s.io", "-n", namespace)["items"]
    refused = [e for e in events if e.get("reason") == "ChildNotOwned"]
    assert len(refused) == 1, refused
    assert refused[0]["type"] == "Warning" and refused[0]["regarding"]["name"] == "taken"
    assert not refused[0].get("series"), refused[0]
    # The app's own Deployment was created: the refusal stops only at the object in the way.
    wait_for(cluster, "the app's Deployment", "deployment", "taken", namespace, lambda o: True)

    # Once the other team's Service is gone, the app converges without any other change.
    cluster.kubectl("delete", "service", "taken", "-n", namespace)
    app = cluster.get_json("spinapp", "taken", "-n", namespace)
    wait_for(cluster, "our Service", "service", "taken", namespace,
             lambda o: any(r["uid"] == app["metadata"]["uid"] for r in o["metadata"].get("ownerReferences", [])),
             timeout=90)
    wait_for(cluster, "the condition cleared", "spinapp", "taken", namespace,
             lambda o: ready_condition(o).get("reason") != "ChildNotOwned")
