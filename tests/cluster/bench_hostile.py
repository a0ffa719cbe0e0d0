"""Part "hostile" of bench.py (BENCHMARKS.md, "Webhook under hostile load").

h2load floods the operator's webhook port with the worst body for memory, just under the 3 MiB
body limit: by default (BENCH_HOSTILE_BODY=list) a review whose spec.replicas is a list of small
numbers, the densest JSON for a parsed tree (its parse exceeds the chart's budget: refused);
BENCH_HOSTILE_BODY=keys, a podAnnotations map with as many keys as fit, the costliest body the
chart's budget still judges. At full concurrency: BENCH_HOSTILE_CLIENTS connections (default
256) x BENCH_HOSTILE_STREAMS streams (default 100), for BENCH_HOSTILE_SECS (default 30).
Meanwhile 4 kubectl clients make server-side dry-run creates of valid SpinApps through the real
API server, one request per object, and the operator's RSS is sampled every 100 ms. Reported:
the operator's peak RSS (sampled, and the kernel's VmHWM) against the chart's 256 Mi limit, the
flood's answers (judged / 4xx, of which shed with 429), and the real admissions made and failed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from controlplane import REPO, ControlPlane, Operator

VALIDATE = "/validate-core-spinkube-dev-v1alpha1-spinapp"
MAX_BODY = 3 * 1024 * 1024
CHART_LIMIT_MIB = 256


def worst_body(size: int, kind: str = "list") -> bytes:
    """A CREATE review of about `size` bytes whose spec.replicas is `[0,0,...]` (kind "list":
    the densest parse, larger than the chart's budget, so refused) or whose spec.podAnnotations
    has as many keys as fit (kind "keys": the costliest body the chart's budget still judges)."""
    gvk = {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "hostile", "kind": gvk, "resource": {**gvk, "resource": "spinapps"}, "name": "web",
        "namespace": "apps", "operation": "CREATE", "userInfo": {"username": "mallory"},
        "object": {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                   "metadata": {"name": "web", "namespace": "apps"},
                   "spec": {"image": "a", "executor": "containerd-shim-spin", "replicas": "@"}}}}
    skeleton = json.dumps(review, separators=(",", ":"))
    if kind == "keys":
        skeleton = skeleton.replace('"replicas":"@"', '"podAnnotations":"@"')
        room, parts, i = size - len(skeleton), [], 0
        while room > 16:
            part = f'"k{i}":"v"'
            parts.append(part)
            room -= len(part) + 1
            i += 1
        return skeleton.replace('"@"', "{" + ",".join(parts) + "}").encode()
    n = (size - len(skeleton)) // 2
    return skeleton.replace('"@"', "[" + ",".join(["0"] * n) + "]").encode()


def valid_app(i: int) -> dict:
    return {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "metadata": {"name": f"real-{i}"},
            "spec": {"image": "ghcr.io/example/app:v1", "executor": "containerd-shim-spin", "replicas": 1}}


def memory_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def shed_total(op: Operator) -> float:
    return sum(float(m) for m in re.findall(r"^spin_operator_admission_shed_total\{[^}]*\} (\S+)$", op.metrics(), re.M))


def hostile(cp: ControlPlane, op: Operator, ns: str, workdir: Path) -> dict:
    clients = int(os.environ.get("BENCH_HOSTILE_CLIENTS", "256"))
    seconds = int(os.environ.get("BENCH_HOSTILE_SECS", "30"))
    streams = int(os.environ.get("BENCH_HOSTILE_STREAMS", "100"))
    body = workdir / "hostile.json"
    kind = os.environ.get("BENCH_HOSTILE_BODY", "list")
    body.write_bytes(worst_body(MAX_BODY - 4096, kind))
    pid = op.proc.popen.pid
    idle_rss, _ = memory_mib(pid)
    shed_before = shed_total(op)

    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(memory_mib(pid)[0])
            time.sleep(0.1)

    real = {"ok": 0, "failed": 0, "errors": set()}
    lock = threading.Lock()

    def admit(client: int) -> None:
        i = 0
        while not stop.is_set():
            obj = valid_app(client * 100_000 + i)
            i += 1
            r = cp.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(obj),
                           check=False, timeout=120)
            with lock:
                if r.returncode == 0:
                    real["ok"] += 1
                else:
                    real["failed"] += 1
                    real["errors"].add(r.stderr.strip()[:200])

    threads = [threading.Thread(target=sample)] + [threading.Thread(target=admit, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    flood = subprocess.run(
        ["h2load", f"-c{clients}", f"-m{streams}", f"-D{seconds}", "-d", str(body), "-H", "content-type: application/json",
         f"https://127.0.0.1:{op.webhook_port}{VALIDATE}"],
        capture_output=True, text=True, timeout=seconds + 300, check=False)
    stop.set()
    for t in threads:
        t.join()
    _, hwm = memory_mib(pid)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", flood.stdout)
    requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done", flood.stdout)
    return {
        "body": kind, "body_bytes": body.stat().st_size, "connections": clients, "streams_per_connection": streams,
        "seconds": seconds, "flood_requests": int(requests[1]) if requests else None,
        "flood_judged_2xx": int(codes[1]) if codes else None, "flood_4xx": int(codes[3]) if codes else None,
        "flood_5xx": int(codes[4]) if codes else None, "shed_429": shed_total(op) - shed_before,
        "idle_rss_mib": round(idle_rss, 1), "peak_rss_sampled_mib": round(max(samples, default=0), 1),
        "peak_rss_hwm_mib": round(hwm, 1), "chart_limit_mib": CHART_LIMIT_MIB,
        "real_admissions_ok": real["ok"], "real_admissions_failed": real["failed"],
        "real_errors": sorted(real["errors"])[:3], "h2load_rc": flood.returncode,
    }


def print_hostile_table(row: dict) -> None:
    print("\n| body | connections x streams | s | flood answered 2xx | shed 429 | 5xx | idle RSS MiB | "
          "peak RSS MiB (sampled / VmHWM) | chart limit | real admissions ok | failed |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {row['body']}, {row['body_bytes']} B | {row['connections']} x {row['streams_per_connection']} | {row['seconds']} | "
          f"{row['flood_judged_2xx']} | {int(row['shed_429'])} | {row['flood_5xx']} | {row['idle_rss_mib']} | "
          f"{row['peak_rss_sampled_mib']} / {row['peak_rss_hwm_mib']} | {row['chart_limit_mib']} Mi | "
          f"{row['real_admissions_ok']} | {row['real_admissions_failed']} |")


__all__ = ["hostile", "print_hostile_table", "REPO"]
