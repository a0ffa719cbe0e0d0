"""Objects the operator does not own, on the real API server: a Service that another team created
under an app's name is left untouched, and the app says why in its status (`kubectl get spinapp
-o yaml`) with one Warning Event."""

from __future__ import annotations

import json

import yaml

from conftest import apply, spinapp, wait_for
from controlplane import wait_until


def ready_condition(obj) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {})


def not_owned_refusals(op) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith("spin_operator_controller_reconciles_total{")
               and 'controller="spinapp"' in line and 'result="not_owned"' in line)


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
    # ...and never written to.
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
