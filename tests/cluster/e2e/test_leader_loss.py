"""Leader loss under load, with the operator as it ships (its image, 2 replicas in pods, `helm install
--wait`): the leader's pod is deleted while 1,000 SpinApps are being created. Every app converges,
none is lost, the other replica takes the Lease within its duration (read from the Lease), and no
child is written twice (writes per child counted in the API server's audit log, which records
every request of the operator's ServiceAccount with the pod it came from).

A SpinApp needs at least one replica. Its executor names a RuntimeClass that does not exist, so
the 1,000 Deployments make no pods (the API server's RuntimeClass admission refuses them) and the
load is on the operator and the API server, not on the node.

SPIN_E2E_LEADER_LOSS_APPS sets the number of apps (default 1000)."""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import json
import os
import threading
import time

import yaml

from conftest import apply, new_namespace, operator_pods, resource_of, spinapp, wait_for_executors
from controlplane import OPERATOR_NAMESPACE, ControlPlane, wait_until
from node import IMAGE_HOST

APPS = int(os.environ.get("SPIN_E2E_LEADER_LOSS_APPS", "1000"))
CHUNK = 25
WORKERS = 4
LEASE = "spin-operator-leader"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
CHILDREN = {"deployments", "services"}
POD_NAME = "authentication.kubernetes.io/pod-name"
EXECUTOR = "no-pods"


def lease(cp: ControlPlane) -> dict:
    return cp.get_json("lease", LEASE, "-n", OPERATOR_NAMESPACE)["spec"]


def micro_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Creator(threading.Thread):
    """Creates the apps in chunks from WORKERS clients at once, as a CI pipeline would, retrying a
    chunk the API server refused (a webhook call may fail while the deleted pod leaves the
    Endpoints) with `kubectl apply`, which takes the apps already created: refusals are counted."""

    def __init__(self, cp: ControlPlane, namespace: str):
        super().__init__(daemon=True)
        self.cp, self.namespace = cp, namespace
        self.refused: list[str] = []
        self.error: BaseException | None = None

    def create(self, first: int) -> None:
        docs = "\n---\n".join(yaml.safe_dump(spinapp(f"app-{i}", replicas=1, executor=EXECUTOR,
                                                      image=f"{IMAGE_HOST}/absent:v1"))
                              for i in range(first, min(first + CHUNK, APPS)))
        verb = "create"
        for _ in range(10):
            out = self.cp.kubectl(verb, "-n", self.namespace, "-f", "-", input=docs, check=False, timeout=120)
            if out.returncode == 0:
                return
            if "denied the request" in out.stderr:
                raise AssertionError(out.stderr)
            self.refused.append(out.stderr.strip().splitlines()[-1])
            verb = "apply"
            time.sleep(1)
        raise AssertionError(f"chunk from app-{first} refused 10 times: {self.refused[-3:]}")

    def run(self) -> None:
        try:
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
                for done in pool.map(self.create, range(0, APPS, CHUNK)):
                    assert done is None
        except BaseException as e:  # noqa: BLE001 (re-raised by the test)
            self.error = e


def count(cp: ControlPlane, kind: str, namespace: str) -> int:
    return len(cp.kubectl("get", kind, "-n", namespace, "-o", "name").stdout.split())


def converged(cp: ControlPlane, namespace: str) -> int:
    apps = cp.get_json("spinapps", "-n", namespace, timeout=120)["items"]
    return sum(1 for a in apps if a.get("status", {}).get("observedGeneration") == a["metadata"]["generation"])


def test_leader_pod_deleted_while_apps_are_created(in_pods):
    cp = in_pods
    ns = new_namespace(cp, "e2e-leader-loss", executors=False)
    apply(cp, ns, {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                   "metadata": {"name": EXECUTOR},
                   "spec": {"createDeployment": True, "deploymentConfig": {"runtimeClassName": "e2e-absent"}}})
    wait_for_executors(cp, ns, EXECUTOR)
    pods = {p["metadata"]["name"] for p in operator_pods(cp)}
    leader = wait_until("a leader among the pods", lambda: lease(cp).get("holderIdentity") in pods
                        and lease(cp)["holderIdentity"], timeout=60)
    duration = lease(cp)["leaseDurationSeconds"]

    creator = Creator(cp, ns)
    started = time.monotonic()
    creator.start()
    wait_until("a quarter of the apps created", lambda: creator.error or count(cp, "spinapps", ns) >= APPS // 4,
               timeout=300, interval=0.5)
    deleted_at = time.time()
    cp.kubectl("delete", "pod", leader, "-n", OPERATOR_NAMESPACE, "--wait=false")
    new_leader = wait_until("another replica to take the Lease", lambda: (
        lease(cp).get("holderIdentity") not in (None, "", leader) and lease(cp)["holderIdentity"]), timeout=120)
    taken = lease(cp)
    assert new_leader in pods, (new_leader, pods)
    assert taken["leaseTransitions"] >= 1, taken
    took = micro_time(taken["acquireTime"]) - deleted_at
    print(f"\nLease taken by {new_leader} {took:.1f}s after the delete (leaseDurationSeconds {duration})")
    assert took <= duration, (took, taken)

    creator.join(timeout=600)
    assert not creator.is_alive(), "the creator did not finish"
    if creator.error:
        raise creator.error
    created = time.monotonic() - started
    wait_until(f"all {APPS} apps converged", lambda: converged(cp, ns) == APPS, timeout=600, interval=2)
    total = time.monotonic() - started
    print(f"{APPS} apps: created in {created:.0f}s, converged in {total:.0f}s; "
          f"{len(creator.refused)} chunk(s) refused and retried: {creator.refused[:3]}")

    # None lost: every app has its Deployment and Service, owned by it; no pod ran.
    assert count(cp, "pods", ns) == 0
    apps = {a["metadata"]["name"]: a["metadata"]["uid"] for a in cp.get_json("spinapps", "-n", ns)["items"]}
    assert set(apps) == {f"app-{i}" for i in range(APPS)}
    for kind in ("deployments", "services"):
        children = cp.get_json(kind, "-n", ns, timeout=120)["items"]
        owners = {c["metadata"]["name"]: [o["uid"] for o in c["metadata"].get("ownerReferences", [])]
                  for c in children}
        assert {n: [uid] for n, uid in apps.items()} == owners, kind

    # Each child written once: the new leader re-reconciles every app it finds and writes none
    # of the children the old one already wrote.
    writes: collections.Counter[tuple[str, str]] = collections.Counter()
    writers: collections.Counter[str] = collections.Counter()
    for e in cp.audit_events():
        ref = e.get("objectRef", {})
        if (e["user"]["username"].startswith(f"system:serviceaccount:{OPERATOR_NAMESPACE}:")
                and ref.get("namespace") == ns and resource_of(e) in CHILDREN and e["verb"] in WRITE_VERBS
                and e.get("responseStatus", {}).get("code", 0) < 300):
            writes[(resource_of(e), ref["name"])] += 1
            writers[e["user"].get("extra", {}).get(POD_NAME, ["?"])[0]] += 1
    twice = {k: v for k, v in writes.items() if v > 1}
    assert twice == {}, twice
    assert set(writes) == {(kind, n) for kind in CHILDREN for n in apps}, len(writes)
    # Both leaders did part of the work: the loss happened mid-creation.
    assert set(writers) == {leader, new_leader}, writers
    print(f"child writes by pod: {dict(writers)}; {json.dumps(taken)}")
