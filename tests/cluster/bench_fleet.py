"""Cold-convergence fleet side by side with the Go operator, next to the floor (`BENCH_PARTS=cold`).

Each round starts a fresh control plane per operator: ours (the chart) and, when
`<repo>/../shared/upstream/bin/manager` is present, the Go operator with its own CRDs from
`../shared/upstream/crds`; rounds interleave them (ours, Go, ours, Go, ...; BENCH_ROUNDS, default 3).

Per operator and round, with N apps (BENCH_FLEET) already present when it starts:
- cold convergence: seconds from the operator's start until every app has its Deployment, its
  Service and a status (`status.activeScheduler`, which both write);
- its requests and writes per app, by verb (the audit log; Lease renewals are not counted as writes);
- RSS and CPU seconds (/proc/<pid>/stat utime+stime) at convergence;
- writes after a restart on the converged fleet (until its requests have been quiet for 5 s).

The floor (ours' control plane, after our operator has stopped): with no operator running, the
objects convergence needs, written through the API server by BENCH_FLOOR_CLIENTS concurrent
clients (default "8 32"; each value its own namespace of N apps, in the first round; later
rounds use the fastest): per app the Deployment, Service
and Secret `spin-operator render` gives (with the owner reference the operator sets) and one
status patch (the status our operator wrote). Floor seconds are reported next to every figure.

The Go operator runs without webhooks (they need cert-manager); its apps are created without
them. Ours runs as the chart runs it; its apps are created through its webhooks by an instance
serving only those (`--disable-controllers`), which is then stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from controlplane import (
    ADMIN_TOKEN,
    OPERATOR_NAMESPACE,
    REPO,
    ControlPlane,
    chart_operator,
    free_port,
    install_chart,
    operator_binary,
    start_operator,
    wait_for_webhooks,
    wait_until,
)
from procs import Proc, start_process

UPSTREAM = REPO.parent / "shared" / "upstream"
GO_MANAGER = UPSTREAM / "bin" / "manager"
EXECUTOR = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
            "metadata": {"name": "containerd-shim-spin"},
            "spec": {"createDeployment": True,
                     "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": True}}}
RUNTIME_CLASS = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasmtime-spin-v2"},
                 "handler": "spin"}
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def app(name: str, i: int) -> dict:
    return {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "metadata": {"name": name},
            "spec": {"image": f"ghcr.io/example/app-{i % 50}:v1.{i % 7}.0", "executor": "containerd-shim-spin",
                     "replicas": 1 + i % 3}}


def cpu_seconds(pid: int) -> float:
    # Fields after the command (which may hold spaces): utime and stime are 14th and 15th overall.
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Audit:
    """Reads the audit log incrementally: requests of one user from a mark on, by verb."""

    def __init__(self, cp: ControlPlane):
        self.path = cp.audit_log

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def by_verb(self, user: str, since: int) -> dict[str, int]:
        out: dict[str, int] = {}
        with open(self.path, "rb") as f:
            f.seek(since)
            for line in f:
                if not line.strip():
                    continue
                e = json.loads(line)
                if e.get("user", {}).get("username") != user:
                    continue
                ref = e.get("objectRef", {})
                key = f"{e['verb']} {ref.get('resource', '')}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                out[key] = out.get(key, 0) + 1
        return out


def writes(by_verb: dict[str, int]) -> int:
    return sum(n for k, n in by_verb.items() if k.split()[0] in WRITES and not k.endswith("leases"))


def apply(cp: ControlPlane, ns: str | None, objs: list[dict], verb: str = "create", chunk: int = 250) -> None:
    for lo in range(0, len(objs), chunk):
        args = [verb, *(["-n", ns] if ns else []), "-f", "-"]
        cp.kubectl(*args, input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs[lo:lo + chunk]}),
                   timeout=600)


def converged(cp: ControlPlane, ns: str, n: int) -> bool:
    deployments = cp.kubectl("get", "deployments", "-n", ns, "-o", "name").stdout.split()
    if len(deployments) < n:
        return False
    services = cp.kubectl("get", "services", "-n", ns, "-o", "name").stdout.split()
    if len(services) < n:
        return False
    status = cp.kubectl("get", "spinapps", "-n", ns, "-o",
                        "jsonpath={range .items[*]}{.status.activeScheduler} {end}").stdout.split()
    return len(status) >= n


def prepare(cp: ControlPlane, ns: str, n: int) -> None:
    cp.kubectl("create", "namespace", ns)
    apply(cp, ns, [EXECUTOR])
    wait_until("the executor", lambda: cp.kubectl("get", "spinappexecutor", "containerd-shim-spin", "-n", ns,
                                                  check=False).returncode == 0, timeout=30)
    apply(cp, ns, [app(f"app-{i}", i) for i in range(n)])


def measure(cp: ControlPlane, ns: str, n: int, start: Callable[[str], tuple[Proc, str]],
            reconciled: Callable[[Proc], bool]) -> tuple[dict, Proc]:
    """Cold convergence of the `n` apps in `ns` by a freshly started operator, then writes after a restart."""
    audit = Audit(cp)
    mark = audit.mark()
    t0 = time.monotonic()
    proc, user = start("cold")
    wait_until(f"{n} apps converged", lambda: proc.alive() and converged(cp, ns, n), timeout=1800, interval=1)
    seconds = time.monotonic() - t0
    cpu, rss = cpu_seconds(proc.popen.pid), rss_mib(proc.popen.pid)
    time.sleep(3)
    by_verb = audit.by_verb(user, mark)
    row = {"apps": n, "converge_s": round(seconds, 1), "requests_per_app": round(sum(by_verb.values()) / n, 2),
           "writes_per_app": round(writes(by_verb) / n, 2), "by_verb": by_verb, "rss_mib": round(rss, 1),
           "cpu_s": round(cpu, 2)}
    proc.stop()
    mark = audit.mark()
    proc, user = start("restart")
    wait_until("the restarted operator to catch up", lambda: reconciled(proc), timeout=600, interval=1)
    quiet(audit, user, mark)
    by_verb = audit.by_verb(user, mark)
    row["restart_writes"] = writes(by_verb)
    row["restart_by_verb"] = {k: v for k, v in by_verb.items() if k.split()[0] in WRITES}
    return row, proc


def quiet(audit: Audit, user: str, mark: int, secs: float = 5, limit: float = 120) -> None:
    """Until `user` has made no request other than Lease renewals for `secs` seconds (at most `limit`)."""
    def count() -> int:
        return sum(v for k, v in audit.by_verb(user, mark).items() if not k.endswith("leases"))
    end, last, since = time.monotonic() + limit, count(), time.monotonic()
    while time.monotonic() < end and time.monotonic() - since < secs:
        time.sleep(1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()


# -- the floor ----------------------------------------------------------------------------------

class Client:
    """One keep-alive HTTPS connection to the API server as the admin."""

    def __init__(self, cp: ControlPlane):
        ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        ctx.check_hostname = False
        host, port = cp.server.removeprefix("https://").rsplit(":", 1)
        self.conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)

    def send(self, method: str, path: str, body: dict, content_type: str = "application/json") -> None:
        self.conn.request(method, path, body=json.dumps(body).encode(), headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type, "Accept": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")


def floor_requests(cp: ControlPlane, ns: str, n: int, status: dict) -> list[tuple[str, str, dict, str]]:
    """The requests convergence needs for the apps in `ns`: rendered children (with the owner
    reference) and one status merge patch per app."""
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
    out = [("POST", resources[obj["kind"]], obj, "application/json") for obj in objs]
    per_app = sum(1 for o in objs if "ownerReferences" in o["metadata"])
    if per_app != 3 * n:
        raise RuntimeError(f"floor: expected 3 objects for each of {n} apps, rendered {per_app}")
    for name in apps:
        body = {"status": {**status, "deploymentName": name, "serviceName": name}}
        out.append(("PATCH", f"/apis/core.spinkube.dev/v1alpha1/namespaces/{ns}/spinapps/{name}/status", body,
                    "application/merge-patch+json"))
    return out


def floor(cp: ControlPlane, ns: str, n: int, clients: int, status: dict) -> dict:
    prepare(cp, ns, n)
    requests = floor_requests(cp, ns, n, status)
    local = threading.local()

    def send(req: tuple[str, str, dict, str]) -> None:
        if not hasattr(local, "client"):
            local.client = Client(cp)
        local.client.send(*req)

    # Shared objects, then children, then the status writes: the order an operator converges in.
    shared = len(requests) - 4 * n
    phases = []
    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for lo, hi in ((0, shared), (shared, len(requests) - n), (len(requests) - n, len(requests))):
            list(pool.map(send, requests[lo:hi]))
            phases.append(round(time.monotonic() - t0, 2))
    return {"apps": n, "clients": clients, "floor_s": round(time.monotonic() - t0, 1), "requests": len(requests),
            "phases_s": phases}


# -- the two operators --------------------------------------------------------------------------

def round_ours(tmp: Path, bin_dir: Path, n: int, floor_clients: list[int]) -> tuple[dict, list[dict]]:
    cp = ControlPlane(tmp / "ours", bin_dir).start()
    try:
        port = free_port()
        install_chart(cp, port, {"certManager": {"enabled": False}, "runtimeClass": {"enabled": True}})
        args, sa = chart_operator(cp)
        # Apps are created through our webhooks, by an instance that runs no controllers.
        admit = start_operator(cp, "admit", port, [*args, "--disable-controllers"], service_account=sa,
                               env={"RUST_LOG": "warn"})
        wait_for_webhooks(cp)
        prepare(cp, "fleet", n)
        admit.proc.stop()

        def start(name: str) -> tuple[Proc, str]:
            op = start_operator(cp, name, port, args, service_account=sa, env={"RUST_LOG": "warn"}, wait_ready=False)
            start.last = op
            return op.proc, op.user

        def reconciled(proc: Proc) -> bool:
            text = start.last.metrics()
            return any(line.startswith('spin_operator_controller_reconciles_total{controller="spinapp",result="success"}')
                       and float(line.split()[-1]) >= n for line in text.splitlines())

        row, proc = measure(cp, "fleet", n, start, reconciled)
        proc.stop()
        status = cp.get_json("spinapp", "app-0", "-n", "fleet")["status"]
        status.pop("observedGeneration", None)
        status["observedGeneration"] = 1
        # The floor writes without webhooks (no operator serves them now).
        cp.kubectl("delete", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "--all")
        floors = [floor(cp, f"floor-{c}", n, c, status) for c in floor_clients]
        return row, floors
    finally:
        cp.stop()


def round_go(tmp: Path, bin_dir: Path, n: int) -> dict:
    cp = ControlPlane(tmp / "go", bin_dir).start()
    try:
        for crd in sorted((UPSTREAM / "crds").glob("*.yaml")):
            cp.kubectl("apply", "-f", str(crd))
        for crd in ("spinapps", "spinappexecutors"):
            # `kubectl wait` fails outright while the CRD has no conditions yet.
            wait_until(f"CRD {crd} established", lambda: "True" in cp.kubectl(
                "get", f"crd/{crd}.core.spinkube.dev", "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                check=False).stdout, timeout=60)
        apply(cp, None, [RUNTIME_CLASS])
        # Its own ServiceAccount (a user of its own in the audit log), with cluster-admin.
        cp.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        cp.kubectl("create", "serviceaccount", "go-manager", "-n", OPERATOR_NAMESPACE)
        cp.kubectl("create", "clusterrolebinding", "go-manager", "--clusterrole=cluster-admin",
                   f"--serviceaccount={OPERATOR_NAMESPACE}:go-manager")
        kubeconfig = cp.token_kubeconfig("go-manager", OPERATOR_NAMESPACE, "go-manager")
        prepare(cp, "fleet", n)
        health: dict[str, int] = {}

        def start(name: str) -> tuple[Proc, str]:
            health["port"] = free_port()
            env = {**cp.env(), "TMPDIR": str(cp.workdir)}
            proc = cp.add_process(start_process(f"go-manager-{name}", [
                str(GO_MANAGER), f"--kubeconfig={kubeconfig}", f"--metrics-bind-address=127.0.0.1:{free_port()}",
                "--metrics-secure=false", f"--health-probe-bind-address=127.0.0.1:{health['port']}",
                "--zap-log-level=error"], cp.workdir, env))
            return proc, f"system:serviceaccount:{OPERATOR_NAMESPACE}:go-manager"

        def reconciled(proc: Proc) -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{health['port']}/readyz", timeout=2).status == 200
            except OSError:
                return False

        row, proc = measure(cp, "fleet", n, start, reconciled)
        proc.stop()
        return row
    finally:
        cp.stop()


def spread(values: list[float], fmt: str = ".1f") -> str:
    """Median (min–max)."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def cold(bin_dir: Path, sizes: list[int]) -> list[dict]:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    floor_clients = [int(c) for c in os.environ.get("BENCH_FLOOR_CLIENTS", "8 32").split()]
    go = GO_MANAGER.exists()
    if not go:
        print(f"| cold | Go operator absent ({GO_MANAGER}): measuring ours and the floor only |", flush=True)
    rows: list[dict] = []
    for n in sizes:
        for r in range(rounds):
            with tempfile.TemporaryDirectory(prefix="spin-bench-cold-") as tmp:
                row, floors = round_ours(Path(tmp), bin_dir, n, floor_clients)
                best = min(floors, key=lambda f: f["floor_s"])
                # The first round tries every concurrency; later rounds use its best.
                floor_clients = [best["clients"]]
                rows.append({"operator": "ours", "round": r, **row, "floor_s": best["floor_s"],
                             "floor_clients": best["clients"], "floors": floors})
                print(f"| cold | {json.dumps(rows[-1])} |", flush=True)
            if go:
                with tempfile.TemporaryDirectory(prefix="spin-bench-cold-") as tmp:
                    rows.append({"operator": "go", "round": r, **round_go(Path(tmp), bin_dir, n)})
                    print(f"| cold | {json.dumps(rows[-1])} |", flush=True)
    print_cold_table(rows)
    return rows


def print_cold_table(rows: list[dict]) -> None:
    print("\n| operator | apps | runs | floor s | convergence s | ÷ floor | requests/app | writes/app | "
          "writes after restart | RSS MiB | CPU s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted({r["apps"] for r in rows}):
        floors = [r["floor_s"] for r in rows if r["apps"] == n and "floor_s" in r]
        for who in ("ours", "go"):
            rs = [r for r in rows if r["apps"] == n and r["operator"] == who]
            if not rs:
                continue
            conv = [r["converge_s"] for r in rs]
            ratio = statistics.median(conv) / statistics.median(floors) if floors else float("nan")
            print(f"| {who} | {n} | {len(rs)} | {spread(floors)} | {spread(conv)} | {ratio:.2f} | "
                  f"{spread([r['requests_per_app'] for r in rs], '.2f')} | {spread([r['writes_per_app'] for r in rs], '.2f')} | "
                  f"{spread([r['restart_writes'] for r in rs], '.0f')} | {spread([r['rss_mib'] for r in rs])} | "
                  f"{spread([r['cpu_s'] for r in rs])} |")
