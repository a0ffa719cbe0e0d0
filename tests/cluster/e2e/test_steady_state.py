"""Steady state, from the API server's audit log (every request the operator's ServiceAccount
makes is logged): a converged set of apps costs no writes over a resync window. (A burst of
admissions costing no API requests is in test_certmanager_and_leader.py, where a webhook-only
replica runs alone, so every request in the audit log is its own.)

Lease renewals (coordination.k8s.io/leases) are the one periodic write a leader must make; they
are counted separately and excluded from "writes"."""

from __future__ import annotations

import datetime
import re
import time

from conftest import RESYNC_SECONDS, apply, new_namespace, operator_requests, resource_of, spinapp, wait_for
from controlplane import wait_until

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reconciles(op) -> float:
    total = 0.0
    for line in op.metrics().splitlines():
        m = re.match(r'spin_operator_controller_reconciles_total\{controller="spinapp"[^}]*\} (\S+)', line)
        if m:
            total += float(m[1])
    return total


def test_a_converged_fleet_makes_no_writes_over_a_resync_window(cluster, operator):
    ns = new_namespace(cluster, "e2e-steady")
    names = [f"app-{i}" for i in range(12)]
    apply(cluster, ns, *[spinapp(n, replicas=1 + i % 3) for i, n in enumerate(names)])
    for n in names:
        wait_for(cluster, f"{n} converged", "spinapp", n, ns,
                 lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"])
    # The whole cluster converged, not only these apps: namespaces other modules deleted are
    # finished (their executors' finalizers, removed by the operator, are writes too).
    wait_until("no namespace terminating", lambda: not [
        n for n in cluster.get_json("namespaces")["items"] if n["status"].get("phase") == "Terminating"],
        timeout=600, interval=2)
    # Let the last status writes and the events of the first reconciles land.
    time.sleep(3)
    start, before = now_rfc3339(), reconciles(operator)
    time.sleep(RESYNC_SECONDS * 1.1 + 3)
    end, after = now_rfc3339(), reconciles(operator)

    requests = operator_requests(cluster, operator, since=start, until=end)
    writes = [f"{e['verb']} {resource_of(e)} {e['objectRef'].get('name')}" for e in requests
              if e["verb"] in WRITE_VERBS and e["objectRef"].get("resource") != "leases"]
    lease_writes = [e for e in requests if e["verb"] in WRITE_VERBS and e["objectRef"].get("resource") == "leases"]
    # Every app was re-reconciled in the window (resync), and none of that wrote anything.
    assert after - before >= len(names), (before, after)
    assert writes == [], writes
    assert lease_writes, "the leader renews its Lease: the audit log must show it"
