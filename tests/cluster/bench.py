"""Benchmarks on the real control plane (`make bench-cluster`; figures go to BENCHMARKS.md).

1. Fleet: N SpinApps (default 1,000 and 5,000; BENCH_FLEET="1000 5000") created through the API
   server (and so through the webhooks): seconds until every Deployment and Service exists and every status has
   caught up, API requests per app by the operator (the audit log), the operator's RSS.
2. Admission: server-side dry-run creates per second with the webhooks on vs off (the namespace the
   chart excludes from them), 4 kubectl clients at once, and the API server's own
   apiserver_admission_webhook_admission_duration_seconds p50/p99 for our webhooks.

Not a test: it asserts nothing but that the run completes, and prints one table per part.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))

from controlplane import (  # noqa: E402
    OPERATOR_NAMESPACE,
    REPO,
    ControlPlane,
    build_binaries,
    chart_operator,
    free_port,
    install_chart,
    start_operator,
    wait_for_webhooks,
    wait_until,
)
from conftest import wait_for_executors  # noqa: E402

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


def webhook_histogram(cp: ControlPlane) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of apiserver_admission_webhook_admission_duration_seconds per webhook."""
    text = cp.kubectl("get", "--raw", "/metrics").stdout
    out: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        m = re.match(r'apiserver_admission_webhook_admission_duration_seconds_bucket\{(.*)\} (\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        name = labels["name"]
        out.setdefault(name, {})
        out[name][le] = out[name].get(le, 0) + float(m[2])
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding quantile q of the observations made between two scrapes."""
    buckets = sorted((le, after[le] - before.get(le, 0)) for le in after)
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return float("inf")


def admission(cp: ControlPlane, per_client: int = 250, clients: int = 4) -> list[dict]:
    rows = []
    hist_before = webhook_histogram(cp)
    for label, ns in (("webhooks on", "bench-admission"), ("webhooks off (excluded namespace)", OPERATOR_NAMESPACE)):
        if ns != OPERATOR_NAMESPACE:
            cp.kubectl("create", "namespace", ns, check=False)
            cp.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "executors.yaml"))
            wait_for_executors(cp, ns)
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": [app(f"adm-{i}", i) for i in range(per_client)]})
        start = time.monotonic()
        threads = [threading.Thread(target=lambda: cp.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-",
                                                              input=body, timeout=600)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        rows.append({"mode": label, "creates": per_client * clients, "seconds": elapsed,
                     "per_second": per_client * clients / elapsed})
    hist_after = webhook_histogram(cp)
    for name in sorted(hist_after):
        if "spinapp" in name:
            rows.append({"webhook": name, "p50_le_s": quantile(hist_before.get(name, {}), hist_after[name], 0.5),
                         "p99_le_s": quantile(hist_before.get(name, {}), hist_after[name], 0.99)})
    return rows


def main() -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_FLEET", "1000 5000").split()]
    bin_dir = build_binaries()
    with tempfile.TemporaryDirectory(prefix="spin-bench-") as tmp:
        cp = ControlPlane(Path(tmp), bin_dir).start()
        try:
            port = free_port()
            install_chart(cp, port, {"certManager": {"enabled": False}})
            args, service_account = chart_operator(cp)
            op = start_operator(cp, "bench", port, args, service_account=service_account, env={"RUST_LOG": "warn"})
            wait_for_webhooks(cp)
            print("| part | result |\n|---|---|")
            for row in admission(cp):
                print(f"| admission | {json.dumps(row)} |", flush=True)
            for n in sizes:
                print(f"| fleet | {json.dumps(fleet(cp, op, n))} |", flush=True)
        finally:
            cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
