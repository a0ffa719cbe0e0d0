"""Benchmarks on the real control plane (`make bench-cluster`; figures go to BENCHMARKS.md).

1. Fleet: N SpinApps (default 1,000 and 5,000; BENCH_FLEET="1000 5000") created through the API
   server (and so through the webhooks): seconds until every Deployment and Service exists and every status has
   caught up, API requests per app by the operator (the audit log), the operator's RSS.
2. Admission: server-side dry-run creates per second with the webhooks on vs off, ours and the Go
   operator side by side on fresh control planes, kubectl and keep-alive clients (bench_admission.py).
3. Unrelated Secrets (not run by default): the operator's RSS with N Secrets of 10 KiB nobody
   references (BENCH_SECRETS, default 2,000) vs without them, next to a small fleet
   (BENCH_SECRET_APPS, default 100; every 4th app reads a Secret, every 8th a ConfigMap). A fresh
   operator on the converged fleet is the baseline; the Secrets are then created while it runs;
   then a fresh operator starts with them present. Each RSS is read once the operator has
   reconciled every app and BENCH_SETTLE_SECS (default 35: one heap-trim interval and a margin)
   have passed.

4. Hostile (not run by default): the worst body at full concurrency against the webhook port
   while real admissions go through the API server; peak RSS against the chart's limit
   (bench_hostile.py). The operator runs with the budget the chart's 256 Mi limit gives it.

5. Cold (not run by default): ours and the Go operator side by side on fresh control planes, next
   to the floor: N apps present when the operator starts, apps created while it runs, a spec
   change of every app, writes while kube-controller-manager reports and after a restart, RSS and
   CPU (bench_fleet.py).

6. Floor (not run by default): the writes convergence needs, with no operator running, at a few
   concurrencies (bench_floor.py; also measured in every round of part 5).

Parts: BENCH_PARTS (default "admission fleet"; e.g. BENCH_PARTS=secrets for the third alone).

Not a test: it asserts nothing but that the run completes, and prints one table per part.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))

from controlplane import (  # noqa: E402
    OPERATOR_NAMESPACE,
    REPO,
    ControlPlane,
    Operator,
    build_binaries,
    chart_operator,
    free_port,
    install_chart,
    start_operator,
    wait_for_webhooks,
    wait_until,
)
from conftest import wait_for_executors  # noqa: E402
from bench_hostile import hostile, print_hostile_table  # noqa: E402
from bench_fleet import cold, floor_part  # noqa: E402
from bench_admission import admission  # noqa: E402

CHUNK = 250


def app(name: str, i: int) -> dict:
    return {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "metadata": {"name": name},
            "spec": {"image": f"ghcr.io/example/app-{i % 50}:v1.{i % 7}.0", "executor": "containerd-shim-spin",
                     "replicas": 1 + i % 3}}


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def count_converged(cp: ControlPlane, ns: str) -> tuple[int, int, int]:
    deployments = cp.kubectl("get", "deployments", "-n", ns, "-o", "name").stdout.split()
    services = cp.kubectl("get", "services", "-n", ns, "-o", "name").stdout.split()
    observed = cp.kubectl("get", "spinapps", "-n", ns, "-o",
                          "jsonpath={range .items[*]}{.metadata.generation}={.status.observedGeneration} {end}").stdout.split()
    return len(deployments), len(services), sum(1 for o in observed if o.split("=")[0] == o.split("=")[1])


def fleet(cp: ControlPlane, op, n: int) -> dict:
    ns = f"bench-{n}"
    cp.kubectl("create", "namespace", ns)
    cp.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "executors.yaml"))
    wait_for_executors(cp, ns)
    audit_before = sum(1 for e in cp.audit_events() if e.get("user", {}).get("username") == op.user)
    start = time.monotonic()
    for lo in range(0, n, CHUNK):
        items = [app(f"app-{i}", i) for i in range(lo, min(n, lo + CHUNK))]
        cp.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                   timeout=600)
    created = time.monotonic() - start
    wait_until(f"{n} apps converged", lambda: count_converged(cp, ns) == (n, n, n), timeout=1800, interval=2)
    converged = time.monotonic() - start
    time.sleep(2)
    events = [e for e in cp.audit_events() if e.get("user", {}).get("username") == op.user][audit_before:]
    by_verb: dict[str, int] = {}
    for e in events:
        ref = e.get("objectRef", {})
        key = f"{e['verb']} {ref.get('resource', '')}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        by_verb[key] = by_verb.get(key, 0) + 1
    rss, peak = rss_mib(op.proc.popen.pid)
    return {"apps": n, "create_s": created, "converge_s": converged, "requests_per_app": len(events) / n,
            "by_verb": by_verb, "rss_mib": rss, "peak_mib": peak}


def secret_app(name: str, i: int) -> dict:
    """A fleet app; every 4th reads a Secret of its own, every 8th (offset 2) a ConfigMap of its own."""
    spec = app(name, i)
    runtime_config: dict = {}
    if i % 4 == 0:
        runtime_config["keyValueStores"] = [{"name": "default", "type": "redis", "options": [
            {"name": "url", "valueFrom": {"secretKeyRef": {"name": f"{name}-creds", "key": "redis-url"}}}]}]
    if i % 8 == 2:
        runtime_config["llmCompute"] = {"type": "remote_http", "options": [
            {"name": "url", "valueFrom": {"configMapKeyRef": {"name": f"{name}-endpoints", "key": "llm-url"}}}]}
    if runtime_config:
        spec["spec"]["runtimeConfig"] = runtime_config
    return spec


def create_in_chunks(cp: ControlPlane, items: list[dict], chunk: int = 100, clients: int = 4) -> None:
    """`kubectl create` of `items` (each with its namespace), `chunk` per call, `clients` calls at once."""
    def create(part: list[dict]) -> None:
        cp.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": part}),
                   timeout=600)
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(create, [items[lo:lo + chunk] for lo in range(0, len(items), chunk)]))


def spinapp_reconciles(op: Operator) -> int:
    m = re.search(r'^spin_operator_controller_reconciles_total\{controller="spinapp",result="success"\} (\S+)$',
                  op.metrics(), re.M)
    return int(float(m[1])) if m else 0


def operator_requests(cp: ControlPlane, op: Operator, since: int) -> tuple[int, dict[str, int]]:
    """The operator's requests in the audit log from event `since` on: (events so far, by verb)."""
    events = [e for e in cp.audit_events() if e.get("user", {}).get("username") == op.user]
    by_verb: dict[str, int] = {}
    for e in events[since:]:
        ref = e.get("objectRef", {})
        key = f"{e['verb']} {ref.get('resource', '')}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        by_verb[key] = by_verb.get(key, 0) + 1
    return len(events), by_verb


def unrelated_secrets(cp: ControlPlane, op: Operator, restart) -> tuple[list[dict], Operator]:
    """RSS without and with N unrelated 10 KiB Secrets (module docstring, part 3). `restart(name)`
    stops the running operator and starts a fresh one; returns the rows and the last operator."""
    n = int(os.environ.get("BENCH_SECRETS", "2000"))
    apps = int(os.environ.get("BENCH_SECRET_APPS", "100"))
    nbytes = int(os.environ.get("BENCH_SECRET_BYTES", str(10 * 1024)))
    settle = float(os.environ.get("BENCH_SETTLE_SECS", "35"))
    ns, tenant = "bench-secrets", "bench-tenant"
    for name in (ns, tenant):
        cp.kubectl("create", "namespace", name)
    cp.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "executors.yaml"))
    wait_for_executors(cp, ns)
    referenced: list[dict] = []
    for i in range(apps):
        if i % 4 == 0:
            referenced.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"app-{i}-creds", "namespace": ns},
                               "stringData": {"redis-url": f"redis://redis.{ns}.svc:6379/{i}"}})
        if i % 8 == 2:
            referenced.append({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": f"app-{i}-endpoints", "namespace": ns},
                               "data": {"llm-url": f"https://llm-{i}.example.com"}})
    create_in_chunks(cp, referenced)
    fleet_apps = [secret_app(f"app-{i}", i) for i in range(apps)]
    for a in fleet_apps:
        a["metadata"]["namespace"] = ns
    create_in_chunks(cp, fleet_apps, clients=1)
    wait_until(f"{apps} apps converged", lambda: count_converged(cp, ns) == (apps, apps, apps), timeout=1800, interval=2)

    rows: list[dict] = []

    def ready(o: Operator) -> float:
        """Seconds until `o` has reconciled every app in the cluster (it starts ready: /readyz)."""
        start = time.monotonic()
        total = len(cp.kubectl("get", "spinapps", "-A", "-o", "name").stdout.split())
        wait_until(f"{total} apps reconciled by a fresh operator", lambda: spinapp_reconciles(o) >= total,
                   timeout=1800, interval=1)
        return time.monotonic() - start

    def measure(o: Operator, scenario: str, unrelated: int, ready_s: float, audit_from: int) -> dict:
        rss_ready, _ = rss_mib(o.proc.popen.pid)
        time.sleep(settle)
        rss, peak = rss_mib(o.proc.popen.pid)
        _, by_verb = operator_requests(cp, o, audit_from)
        row = {"scenario": scenario, "apps": apps, "unrelated_secrets": unrelated, "ready_s": round(ready_s, 1),
               "rss_ready_mib": round(rss_ready, 1), "rss_mib": round(rss, 1), "peak_mib": round(peak, 1),
               "requests": sum(by_verb.values()), "by_verb": by_verb}
        rows.append(row)
        return row

    # 1. Baseline: a fresh operator on the converged fleet.
    audit_from, _ = operator_requests(cp, op, 0)
    op = restart("bench-baseline")
    measure(op, "baseline (no unrelated Secrets)", 0, ready(op), audit_from)

    # 2. The unrelated Secrets created while it runs: half in their own namespace, half next to the apps.
    audit_from, _ = operator_requests(cp, op, 0)
    start = time.monotonic()
    create_in_chunks(cp, [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                           "metadata": {"name": f"unrelated-{i:05}", "namespace": tenant if i % 2 == 0 else ns,
                                        "labels": {"team": f"team-{i % 17}"}},
                           "data": {"blob": base64.b64encode(os.urandom(nbytes)).decode()}} for i in range(n)])
    measure(op, "added while running", n, time.monotonic() - start, audit_from)

    # 3. A fresh operator with them present.
    audit_from, _ = operator_requests(cp, op, 0)
    op = restart("bench-present")
    measure(op, "present at start", n, ready(op), audit_from)

    base = rows[0]
    for row in rows:
        row["rss_growth_pct"] = round((row["rss_mib"] / base["rss_mib"] - 1) * 100, 1)
        row["peak_growth_pct"] = round((row["peak_mib"] / base["peak_mib"] - 1) * 100, 1)
    return rows, op


def print_secret_table(rows: list[dict]) -> None:
    print("\n| scenario | apps | unrelated Secrets | ready s | RSS at ready MiB | RSS MiB | peak MiB | "
          "RSS growth | peak growth | API requests |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scenario']} | {r['apps']} | {r['unrelated_secrets']} | {r['ready_s']} | {r['rss_ready_mib']} | "
              f"{r['rss_mib']} | {r['peak_mib']} | {r['rss_growth_pct']:+.1f} % | {r['peak_growth_pct']:+.1f} % | "
              f"{r['requests']} |")


PARTS = ("admission", "fleet", "secrets", "hostile", "cold", "floor")
# What the chart's 256 Mi limit gives `--webhook-memory-budget` when it is left empty (half of it,
# or one largest request if that is more): the same budget here, without a cgroup limit.
CHART_LIMIT_BYTES = 256 * 1024 * 1024


def main() -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_FLEET", "1000 5000").split()]
    parts = os.environ.get("BENCH_PARTS", "admission fleet").split()
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"unknown BENCH_PARTS {unknown}; known: {' '.join(PARTS)}", file=sys.stderr)
        return 2
    bin_dir = build_binaries()
    if "admission" in parts:
        # Fresh control planes of its own, ours and the Go operator's (bench_admission.py).
        admission(bin_dir)
    if "floor" in parts:
        floor_part(bin_dir, sizes)  # a fresh control plane of its own (bench_floor.py)
    if "cold" in parts:
        # Fresh control planes of its own per operator and round (bench_fleet.py).
        cold(bin_dir, sizes)
    parts = [p for p in parts if p not in ("admission", "cold", "floor")]
    if not parts:
        return 0
    with tempfile.TemporaryDirectory(prefix="spin-bench-") as tmp:
        cp = ControlPlane(Path(tmp), bin_dir).start()
        try:
            port = free_port()
            install_chart(cp, port, {"certManager": {"enabled": False}})
            args, service_account = chart_operator(cp)
            if "hostile" in parts:
                args = [*args, f"--webhook-memory-budget={CHART_LIMIT_BYTES // 2}"]
            op = start_operator(cp, "bench", port, args, service_account=service_account, env={"RUST_LOG": "warn"})
            wait_for_webhooks(cp)

            def restart(name: str) -> Operator:
                """Stops the operator (it releases the Lease) and starts a fresh one as the chart runs it."""
                nonlocal op
                op.proc.stop()
                op = start_operator(cp, name, port, args, service_account=service_account, env={"RUST_LOG": "warn"})
                return op

            print("| part | result |\n|---|---|")
            if "fleet" in parts:
                for n in sizes:
                    print(f"| fleet | {json.dumps(fleet(cp, op, n))} |", flush=True)
            if "secrets" in parts:
                rows, op = unrelated_secrets(cp, op, restart)
                for row in rows:
                    print(f"| secrets | {json.dumps(row)} |", flush=True)
                print_secret_table(rows)
            if "hostile" in parts:
                ns = "bench-hostile"
                cp.kubectl("create", "namespace", ns)
                cp.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "executors.yaml"))
                wait_for_executors(cp, ns)
                row = hostile(cp, op, ns, Path(tmp))
                print(f"| hostile | {json.dumps(row)} |", flush=True)
                print_hostile_table(row)
        finally:
            cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
