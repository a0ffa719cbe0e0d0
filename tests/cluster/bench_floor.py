"""The floor of fleet convergence (`BENCH_PARTS=floor`, and every round of `BENCH_PARTS=cold`).

With no operator running, exactly the writes convergence needs go through the API server: per app
the Deployment, Service and Secret `spin-operator render` gives (with the owner reference the
operator sets) and one status merge patch (the status an operator wrote). The namespace's shared
`spin-ca` Secret goes first. Bodies are encoded before the clock starts; BENCH_FLOOR_CLIENTS
(default "4 8 16") keep-alive HTTPS clients, each its own process (no shared interpreter lock),
send them; every value is tried on a namespace of its own and the fastest is the floor.

Also here: [`Api`], the one keep-alive connection the fleet part polls and patches through (a
`kubectl` process per poll would cost the machine more CPU than what it measures).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import ssl
import subprocess
import time
from pathlib import Path
from typing import Callable

from controlplane import ADMIN_TOKEN, ControlPlane, operator_binary, wait_until

EXECUTOR = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
            "metadata": {"name": "containerd-shim-spin"},
            "spec": {"createDeployment": True,
                     "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": True}}}
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


def app(name: str, i: int) -> dict:
    return {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "metadata": {"name": name},
            "spec": {"image": f"ghcr.io/example/app-{i % 50}:v1.{i % 7}.0", "executor": "containerd-shim-spin",
                     "replicas": 1 + i % 3}}


def apply(cp: ControlPlane, ns: str | None, objs: list[dict], verb: str = "create", chunk: int = 250) -> None:
    for lo in range(0, len(objs), chunk):
        args = [verb, *(["-n", ns] if ns else []), "-f", "-"]
        cp.kubectl(*args, input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs[lo:lo + chunk]}),
                   timeout=600)


def prepare(cp: ControlPlane, ns: str, n: int, first: int = 0) -> None:
    """Namespace `ns` with the executor and apps `app-{first}` .. `app-{first + n - 1}`."""
    cp.kubectl("create", "namespace", ns)
    apply(cp, ns, [EXECUTOR])
    wait_until("the executor", lambda: cp.kubectl("get", "spinappexecutor", "containerd-shim-spin", "-n", ns,
                                                  check=False).returncode == 0, timeout=30)
    apply(cp, ns, [app(f"app-{i}", i) for i in range(first, first + n)])


class Api:
    """One keep-alive HTTPS connection to the API server as the admin."""

    def __init__(self, server: str, ca_file: str):
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.check_hostname = False
        host, port = server.removeprefix("https://").rsplit(":", 1)
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=120)

    @classmethod
    def of(cls, cp: ControlPlane) -> "Api":
        return cls(cp.server, str(cp.ca_file))

    def send(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
             accept: str = "application/json") -> bytes:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
        return data

    def items(self, path: str, metadata_only: bool = False) -> list[dict]:
        return json.loads(self.send("GET", path, accept=METADATA_LIST if metadata_only else "application/json"))["items"]


# -- the floor ----------------------------------------------------------------------------------

Request = tuple[str, str, bytes, str]


def floor_requests(cp: ControlPlane, ns: str, n: int, status: dict) -> list[Request]:
    """The requests convergence needs for the apps in `ns`, bodies encoded: rendered children
    (with the owner reference) and one status merge patch per app."""
    apps = {a["metadata"]["name"]: a for a in json.loads(
        cp.kubectl("get", "spinapps", "-n", ns, "-o", "json", timeout=300).stdout)["items"]}
    executor = {**EXECUTOR, "metadata": {**EXECUTOR["metadata"], "namespace": ns}}
    # Multi-document input (render reads documents, not a List); with their uids, render sets the
    # owner references the operator sets.
    inputs = "\n---\n".join(json.dumps(o) for o in [executor, *apps.values()])
    rendered = subprocess.run([str(operator_binary()), "render", "--show-secrets", "-f", "-", "-o", "json"], input=inputs,
                              capture_output=True, text=True, check=True).stdout
    resources = {"Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
                 "Service": f"/api/v1/namespaces/{ns}/services", "Secret": f"/api/v1/namespaces/{ns}/secrets"}
    # Shared objects (the namespace's `spin-ca` Secret) first: the apps' Deployments mount them.
    objs = sorted(json.loads(rendered)["items"], key=lambda o: "ownerReferences" in o["metadata"])
    out = [("POST", resources[obj["kind"]], json.dumps(obj).encode(), "application/json") for obj in objs]
    per_app = sum(1 for o in objs if "ownerReferences" in o["metadata"])
    if per_app != 3 * n:
        raise RuntimeError(f"floor: expected 3 objects for each of {n} apps, rendered {per_app}")
    for name in apps:
        body = {"status": {**status, "deploymentName": name, "serviceName": name}}
        out.append(("PATCH", f"/apis/core.spinkube.dev/v1alpha1/namespaces/{ns}/spinapps/{name}/status",
                    json.dumps(body).encode(), "application/merge-patch+json"))
    return out


_worker: Api | None = None


def _connect(server: str, ca_file: str) -> None:
    global _worker
    _worker = Api(server, ca_file)


def _send(requests: list[Request]) -> int:
    assert _worker is not None
    for method, path, body, content_type in requests:
        _worker.send(method, path, body, content_type)
    return len(requests)


def send_all(cp: ControlPlane, phases: list[list[Request]], clients: int) -> list[float]:
    """Sends each phase's requests from `clients` processes (one connection each), phase after
    phase; returns the seconds at the end of each phase, from the first request."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(clients, initializer=_connect, initargs=(cp.server, str(cp.ca_file))) as pool:
        # Connect (TLS handshakes) before the clock starts.
        pool.map(_send, [[("GET", "/version", None, "application/json")]] * clients, chunksize=1)
        marks, t0 = [], time.monotonic()
        for requests in phases:
            # Small batches keep every process busy to the end of a phase.
            batch = max(1, min(16, len(requests) // (clients * 4)))
            pool.map(_send, [requests[lo:lo + batch] for lo in range(0, len(requests), batch)], chunksize=1)
            marks.append(round(time.monotonic() - t0, 2))
    return marks


def floor(cp: ControlPlane, ns: str, n: int, clients: int, status: dict) -> dict:
    """The floor of `n` apps in a new namespace `ns` (no webhooks, no operator running)."""
    prepare(cp, ns, n)
    requests = floor_requests(cp, ns, n, status)
    shared = len(requests) - 4 * n
    # Shared objects, then children, then the status writes: the order an operator converges in.
    phases = send_all(cp, [requests[:shared], requests[shared:-n], requests[-n:]], clients)
    return {"apps": n, "clients": clients, "floor_s": phases[-1], "requests": len(requests), "phases_s": phases}


def floor_clients() -> list[int]:
    return [int(c) for c in os.environ.get("BENCH_FLOOR_CLIENTS", "4 8 16").split()]


def floors(cp: ControlPlane, n: int, clients: list[int], status: dict, idle: Callable[[], float]) -> list[dict]:
    """The floor at each concurrency in `clients`, fastest first; `idle()` waits until the
    control plane has finished the work the previous writes gave it (kube-controller-manager
    creating ReplicaSets and pods) and returns the seconds it waited."""
    rows = []
    for c in clients:
        waited = idle()
        rows.append({**floor(cp, f"floor-{c}", n, c, status), "idle_wait_s": waited})
    return sorted(rows, key=lambda f: f["floor_s"])


def print_floor_table(rows: list[dict], command: str) -> None:
    print(f"\n{command}\n\n| apps | clients | requests | floor s | shared / children / status done at s |\n"
          "|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['apps']} | {r['clients']} | {r['requests']} | {r['floor_s']} | "
              f"{' / '.join(str(p) for p in r['phases_s'])} |")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
