"""Fleet side by side with the Go operator, next to the floor (`BENCH_PARTS=cold`).

Each round starts a fresh control plane per operator: ours (the chart) and, when
`<repo>/../shared/upstream/bin/manager` is present, the Go operator with its own CRDs from
`../shared/upstream/crds`; rounds interleave them (ours, Go, ours, Go, ...; BENCH_ROUNDS, default 3).
Where the Go operator is absent the part says so and measures ours and the floor only.

Per operator and round, with N apps (BENCH_FLEET) already present when it starts, one phase
after the other on the same control plane:
1. cold: seconds from the operator's start until every app has its Deployment, its Service and a
   status (`status.activeScheduler`, which both write); its requests and writes per app by verb
   (the audit log; Lease renewals are not counted as writes); RSS and CPU seconds
   (/proc/<pid>/stat utime+stime) at that moment;
2. settle: from there until kube-controller-manager has stopped updating Deployment status (its
   `PUT deployments/status` requests, from the API server's metrics, quiet for 5 s; at most
   BENCH_SETTLE_LIMIT s, default 90) and the operator is quiet: the operator's writes while
   kube-controller-manager reports on every Deployment (ReplicaSet created, pods unavailable),
   against the number of those reports;
3. live: BENCH_LIVE (default N) apps created while it runs, in a namespace of their own, by
   8 keep-alive clients: seconds from the first create until every one has converged;
4. spec: a new image for every app (fleet and live): seconds from the first patch until every
   Deployment runs it, and the writes;
5. restart: a second instance on the converged fleet: its writes until quiet for 5 s.
CPU seconds are given per phase. Progress is polled through one keep-alive connection (metadata
lists where names suffice), the same for both operators. BENCH_PHASES (default
"settle live spec restart") picks the phases after the cold one; BENCH_GO=0 skips the Go operator.

The floor (bench_floor.py) is measured in every round on ours' control plane after our operator has
stopped, each try once kube-controller-manager has worked through the ReplicaSets and pods of
what came before: the first round tries each of BENCH_FLOOR_CLIENTS, later rounds the fastest.

Both operators run their controllers only, with no webhooks registered during the measurement
(the Go operator's need cert-manager). Ours' apps are first created through its webhooks by an
instance serving only those (`--disable-controllers`, then stopped), as a user's would be.

BENCH_PERF=<dir>: also records ours' cold phase with `perf record` (Debian `linux-perf`, DWARF
call graphs) and folds the stacks with perf's own `stackcollapse` script into
`<dir>/ours-<apps>-r<round>.folded` (flame graph input); the five hottest leaf frames are printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

from bench_floor import (
    Api,
    app,
    apply,
    floor_clients,
    floors,
    load_average,
    prepare,
    send_all,
)
from bench_pod import PodOperator, pod_control_plane
from controlplane import (
    OPERATOR_NAMESPACE,
    REPO,
    ControlPlane,
    Operator,
    chart_operator,
    free_port,
    install_chart,
    start_operator,
    wait_for_webhooks,
    wait_until,
)
from procs import ClusterError, Proc, start_process

UPSTREAM = REPO.parent / "shared" / "upstream"
GO_MANAGER = UPSTREAM / "bin" / "manager"
RUNTIME_CLASS = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasmtime-spin-v2"},
                 "handler": "spin"}
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
SPINAPPS = "/apis/core.spinkube.dev/v1alpha1/namespaces/{ns}/spinapps"
# kube-controller-manager, starved of CPU on 2 cores, works through its Deployment backlog for
# minutes: the settle window ends when it is quiet or after this many seconds.
SETTLE_LIMIT = float(os.environ.get("BENCH_SETTLE_LIMIT", "90"))


def cpu_seconds(pid: int) -> float:
    # Fields after the command (which may hold spaces): utime and stime are 14th and 15th overall.
    rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Audit:
    """Reads the audit log incrementally: requests of one user from a mark on, by verb."""

    def __init__(self, cp: ControlPlane):
        self.path = cp.audit_log

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def by_verb(self, user: str, since: int) -> dict[str, int]:
        return self.counter(user, since)()

    def counter(self, user: str, since: int) -> Callable[[], dict[str, int]]:
        """A function returning the requests of `user` from `since` on, by verb, reading only
        what was appended since its last call (polled every second while the log grows by MBs)."""
        state = {"pos": since, "rest": b""}
        out: dict[str, int] = {}

        def read() -> dict[str, int]:
            with open(self.path, "rb") as f:
                f.seek(state["pos"])
                data = state["rest"] + f.read()
                state["pos"] = f.tell()
            *lines, state["rest"] = data.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                e = json.loads(line)
                if e.get("user", {}).get("username") != user:
                    continue
                ref = e.get("objectRef", {})
                key = f"{e['verb']} {ref.get('resource', '')}" + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                out[key] = out.get(key, 0) + 1
            return dict(out)
        return read


def writes(by_verb: dict[str, int]) -> int:
    return sum(n for k, n in by_verb.items() if k.split()[0] in WRITES and not k.endswith("leases"))


def non_lease(by_verb: dict[str, int]) -> int:
    return sum(n for k, n in by_verb.items() if not k.endswith("leases"))


def converged(api: Api, ns: str, n: int) -> bool:
    # Status last: both operators write it after the children.
    status = sum(1 for a in api.items(SPINAPPS.format(ns=ns)) if a.get("status", {}).get("activeScheduler"))
    return (status >= n and len(api.items(f"/apis/apps/v1/namespaces/{ns}/deployments", True)) >= n
            and len(api.items(f"/api/v1/namespaces/{ns}/services", True)) >= n)


def images_updated(api: Api, ns: str, marker: str) -> int:
    return sum(1 for d in api.items(f"/apis/apps/v1/namespaces/{ns}/deployments")
               if marker in d["spec"]["template"]["spec"]["containers"][0]["image"])


def status_updates(api: Api) -> int:
    """Deployment status updates the API server has served (kube-controller-manager's)."""
    text = api.send("GET", "/metrics", accept="text/plain").decode()
    return int(sum(float(m[1]) for m in re.finditer(
        r'^apiserver_request_total\{(?=[^}]*resource="deployments")(?=[^}]*subresource="status")'
        r'(?=[^}]*verb="PUT")[^}]*\} (\S+)$', text, re.M)))


def controller_writes(api: Api) -> int:
    """Writes the API server has served to ReplicaSets, Pods and Deployment status: what
    kube-controller-manager does for every new or changed Deployment."""
    text = api.send("GET", "/metrics", accept="text/plain").decode()
    total = 0.0
    for m in re.finditer(r'^apiserver_request_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        if labels.get("verb") in ("POST", "PUT", "PATCH", "DELETE") and (
                labels.get("resource") in ("replicasets", "pods")
                or (labels.get("resource") == "deployments" and labels.get("subresource") == "status")):
            total += float(m[2])
    return int(total)


def controllers_idle(api: Api, limit: float = 300) -> float:
    """Waits until kube-controller-manager has worked through its backlog (no ReplicaSet, Pod or
    Deployment status write for 5 s; at most `limit` s), so that what is measured next does not
    share the API server with the last part's aftermath. Returns the seconds waited."""
    t0 = time.monotonic()
    quiet(lambda: controller_writes(api), secs=5, limit=limit)
    return round(time.monotonic() - t0, 1)


def quiet(counter: Callable[[], int], secs: float = 5, limit: float = 120) -> None:
    """Until `counter` has not moved for `secs` seconds (at most `limit`)."""
    end, last, since = time.monotonic() + limit, counter(), time.monotonic()
    while time.monotonic() < end and time.monotonic() - since < secs:
        time.sleep(1)
        now = counter()
        if now != last:
            last, since = now, time.monotonic()


def until(what: str, check: Callable[[], bool], proc: Proc, timeout: float = 1800) -> None:
    """Polls `check` every second; fails at once, with the operator's exit code and log, if it exits
    (checked outside `check`: wait_until retries on every exception, so it would wait out `timeout`)."""
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise OperatorExited(f"operator exited ({proc.returncode}) waiting for {what}:\n{proc.tail()}")
        try:
            if check():
                return
        except Exception as e:  # noqa: BLE001 - reported on timeout, as wait_until does
            last_error = e
        time.sleep(1)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}" + (f": {last_error}" if last_error else ""))


class OperatorExited(RuntimeError):
    pass


def phase(name: str) -> None:
    print(f"| phase | {time.strftime('%H:%M:%S')} {name}, load {load_average()} |", flush=True)


class Profile:
    """`perf record` of one process while in scope (BENCH_PERF), folded into `out` on exit."""

    def __init__(self, pid: int, out: Path | None):
        self.pid, self.out, self.proc = pid, out, None

    def __enter__(self) -> "Profile":
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.proc = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "199", "--call-graph", "dwarf,16384", "-q",
                                          "-p", str(self.pid), "-o", str(self.out.with_suffix(".data"))],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        script = subprocess.run(["perf", "script", "--no-inline", "-i", str(self.out.with_suffix(".data")), "-s",
                                 "/usr/lib/perf-core/scripts/python/stackcollapse.py"],
                                capture_output=True, text=True, timeout=1800)
        self.out.write_text(script.stdout)
        leaves: dict[str, int] = {}
        for line in script.stdout.splitlines():
            stack, _, count = line.rpartition(" ")
            leaf = stack.rsplit(";", 1)[-1]
            leaves[leaf] = leaves.get(leaf, 0) + int(count)
        total = sum(leaves.values()) or 1
        top = sorted(leaves.items(), key=lambda kv: -kv[1])[:5]
        print(f"| perf | {self.out}: {total} samples; hottest leaves: "
              + "; ".join(f"{100 * c / total:.1f} % {name[:80]}" for name, c in top) + " |", flush=True)


def measure(cp: ControlPlane, n: int, start: Callable[[str], tuple[Proc, str]], reconciled: Callable[[Proc], bool],
            profile: Path | None = None, stats: Callable[[], dict] = dict) -> tuple[dict, Proc]:
    """The five phases of the module docstring, by freshly started operators, on the `n` apps in
    namespace `fleet`; `stats()` adds the operator's own figures at cold convergence."""
    audit, api = Audit(cp), Api.of(cp)
    phases = os.environ.get("BENCH_PHASES", "settle live spec restart").split()
    live_n = int(os.environ.get("BENCH_LIVE", str(n))) if "live" in phases else 0
    row: dict = {"apps": n, "load_before": load_average()}
    kcm0 = status_updates(api)

    # 1. cold
    phase("cold")
    mark = audit.mark()
    t0 = time.monotonic()
    proc, user = start("cold")
    requests = audit.counter(user, mark)
    pid = proc.pid
    with Profile(pid, profile):
        until(f"{n} apps converged", lambda: converged(api, "fleet", n), proc)
        row["cold_s"] = round(time.monotonic() - t0, 1)
        cpu = row["cold_cpu_s"] = round(cpu_seconds(pid), 2)
    row["rss_mib"] = round(rss_mib(pid), 1)
    row.update(stats())
    by_verb = requests()
    row.update(cold_requests_per_app=round(non_lease(by_verb) / n, 2), cold_writes_per_app=round(writes(by_verb) / n, 2),
               cold_by_verb=by_verb)

    if "settle" not in phases:
        return row, proc
    # 2. settle: until kube-controller-manager and the operator are both quiet.
    phase("settle")
    t1 = time.monotonic()
    quiet(lambda: status_updates(api) + non_lease(requests()), secs=5, limit=SETTLE_LIMIT)
    by_verb = requests()
    row.update(settle_s=round(time.monotonic() - t1, 1), settled_writes_per_app=round(writes(by_verb) / n, 2),
               settled_by_verb=by_verb, kcm_status_updates_per_app=round((status_updates(api) - kcm0) / n, 2))
    cpu = cpu_seconds(pid)

    if live_n == 0:
        return row, proc
    # 3. live: apps created while it runs.
    phase("live")
    prepare(cp, "live", 0)
    requests = audit.counter(user, audit.mark())
    bodies = [json.dumps({**app(f"app-{i}", i), "metadata": {"name": f"app-{i}", "namespace": "live"}}).encode()
              for i in range(n, n + live_n)]
    t2 = time.monotonic()
    row["live_create_s"] = send_all(cp, [[("POST", SPINAPPS.format(ns="live"), b, "application/json")
                                          for b in bodies]], 8)[0]
    until(f"{live_n} new apps converged", lambda: converged(api, "live", live_n), proc)
    row["live_s"] = round(time.monotonic() - t2, 1)
    by_verb = requests()
    row.update(live_apps=live_n, live_requests_per_app=round(non_lease(by_verb) / live_n, 2),
               live_writes_per_app=round(writes(by_verb) / live_n, 2), live_by_verb=by_verb,
               live_cpu_s=round(cpu_seconds(pid) - cpu, 2))
    quiet(lambda: status_updates(api) + non_lease(requests()), secs=5, limit=SETTLE_LIMIT)

    if "spec" not in phases:
        return row, proc
    # 4. spec: a new image for every app.
    phase("spec")
    requests, cpu = audit.counter(user, audit.mark()), cpu_seconds(pid)
    patches = [("PATCH", f"{SPINAPPS.format(ns=ns)}/app-{i}",
                json.dumps({"spec": {"image": f"ghcr.io/example/app-{i % 50}:v2.{i % 7}.0"}}).encode(),
                "application/merge-patch+json")
               for ns, lo, hi in (("fleet", 0, n), ("live", n, n + live_n)) for i in range(lo, hi)]
    t3 = time.monotonic()
    send_all(cp, [patches], 8)
    until("every Deployment on the new image",
          lambda: images_updated(api, "fleet", ":v2.") + images_updated(api, "live", ":v2.") >= n + live_n, proc)
    row["spec_s"] = round(time.monotonic() - t3, 1)
    quiet(lambda: non_lease(requests()), secs=5, limit=300)
    by_verb = requests()
    row.update(spec_writes_per_app=round(writes(by_verb) / (n + live_n), 2), spec_by_verb=by_verb,
               spec_cpu_s=round(cpu_seconds(pid) - cpu, 2), rss_end_mib=round(rss_mib(pid), 1),
               peak_mib=round(rss_mib(pid, "VmHWM"), 1))

    if "restart" not in phases:
        return row, proc
    # 5. restart
    phase("restart")
    proc.stop()
    mark = audit.mark()
    proc, user = start("restart")
    requests = audit.counter(user, mark)
    until("the restarted operator to catch up", lambda: reconciled(proc), proc, timeout=600)
    quiet(lambda: non_lease(requests()))
    by_verb = requests()
    row["restart_writes"] = writes(by_verb)
    row["restart_by_verb"] = {k: v for k, v in by_verb.items() if k.split()[0] in WRITES}
    row["load_after"] = load_average()
    return row, proc


# -- the two operators --------------------------------------------------------------------------

def ours_control_plane(tmp: Path, bin_dir: Path, n: int) -> tuple[ControlPlane, int, list[str], str]:
    """A fresh control plane with the chart installed and `n` apps in `fleet`, created through our
    webhooks; then the webhook configurations are removed (module docstring)."""
    cp = ControlPlane(tmp / "ours", bin_dir).start()
    port = free_port()
    install_chart(cp, port, {"certManager": {"enabled": False}, "runtimeClass": {"enabled": True}})
    args, sa = chart_operator(cp)
    admit = start_operator(cp, "admit", port, [*args, "--disable-controllers"], service_account=sa,
                           env={"RUST_LOG": "warn"})
    wait_for_webhooks(cp)
    prepare(cp, "fleet", n)
    admit.proc.stop()
    remove_webhooks(cp)
    return cp, port, [*args, "--disable-webhooks"], sa


def round_ours(tmp: Path, bin_dir: Path, n: int, clients: list[int], profile: Path | None) -> tuple[dict, list[dict]]:
    cp, port, args, sa = ours_control_plane(tmp, bin_dir, n)
    try:
        def start(name: str) -> tuple[Proc, str, Operator]:
            op = start_operator(cp, name, port, args, service_account=sa, env={"RUST_LOG": "warn"}, wait_ready=False)
            return op.proc, op.user, op

        return measure_ours(cp, n, start, clients, profile)
    finally:
        cp.stop()


def round_pod(tmp: Path, bin_dir: Path, n: int, clients: list[int], profile: Path | None) -> tuple[dict, list[dict]]:
    """`round_ours` with the operator in the chart's pods on a node (bench_pod.py)."""
    cp, ops = pod_control_plane(tmp, bin_dir, n)
    try:
        def start(name: str) -> tuple[PodOperator, str, PodOperator]:
            op, user = ops.start(name)
            return op, user, op

        return measure_ours(cp, n, start, clients, profile,
                            lambda op: {"cpu_shares": op.cpu_shares(), "leader_found_s": op.found_s})
    finally:
        cp.stop()


def reconciles(op: Operator | PodOperator) -> int:
    """SpinApp reconciles `op` has done, from its metrics."""
    return int(sum(float(m[1]) for m in re.finditer(
        r'^spin_operator_controller_reconciles_total\{controller="spinapp",[^}]*\} (\S+)$', op.metrics(), re.M)))


def measure_ours(cp: ControlPlane, n: int, start: Callable, clients: list[int], profile: Path | None,
                 stats: Callable[[Operator | PodOperator], dict] = lambda op: {}) -> tuple[dict, list[dict]]:
    """`measure` of our operator, `start(name)` giving (process, user, metrics source), then the
    floor on the same control plane with no operator and no webhooks."""
    last: dict = {}

    def started(name: str) -> tuple[Proc, str]:
        proc, user, last["op"] = start(name)
        return proc, user

    row, proc = measure(cp, n, started, lambda proc: reconciles(last["op"]) >= n, profile,
                        lambda: {"cold_reconciles_per_app": round(reconciles(last["op"]) / n, 2), **stats(last["op"])})
    proc.stop()
    remove_webhooks(cp)
    return row, floors(cp, n, clients, our_status(cp), lambda: controllers_idle(Api.of(cp)))


def remove_webhooks(cp: ControlPlane) -> None:
    cp.kubectl("delete", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "--all")


def our_status(cp: ControlPlane, ns: str = "fleet", name: str = "app-0") -> dict:
    """The status our operator wrote for an app of generation 1, as the floor's status write."""
    status = cp.get_json("spinapp", name, "-n", ns)["status"]
    status["observedGeneration"] = 1
    for c in status.get("conditions", []):
        c["observedGeneration"] = 1
    return status


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

        row, proc = measure(cp, n, start, reconciled)
        proc.stop()
        return row
    finally:
        cp.stop()


def floor_part(bin_dir: Path, sizes: list[int]) -> list[dict]:
    """`BENCH_PARTS=floor`: the floor alone at each of BENCH_FLOOR_CLIENTS, on a fresh control
    plane; the status written is the one our operator wrote for a first app."""
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="spin-bench-floor-") as tmp:
            cp, port, args, sa = ours_control_plane(Path(tmp), bin_dir, 1)
            try:
                op = start_operator(cp, "probe", port, args, service_account=sa, env={"RUST_LOG": "warn"})
                wait_until("the first app's status", lambda: converged(Api.of(cp), "fleet", 1), timeout=120)
                op.proc.stop()
                status = our_status(cp)
                for f in floors(cp, n, floor_clients(), status, lambda: controllers_idle(Api.of(cp))):
                    rows.append({**f, "load": load_average()})
                    print(f"| floor | {json.dumps(rows[-1])} |", flush=True)
            finally:
                cp.stop()
    return rows


def spread(values: list[float], fmt: str = ".1f") -> str:
    """Median (min–max)."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


# BENCH_WHERE: where our operator runs, in the order each round runs them.
OURS = {"process": "ours", "pod": "ours-pod"}
ROUNDS = {"process": round_ours, "pod": round_pod}


def where() -> list[str]:
    wheres = os.environ.get("BENCH_WHERE", "process").split()
    if not wheres or any(w not in OURS for w in wheres):
        raise SystemExit(f"BENCH_WHERE={os.environ.get('BENCH_WHERE')!r}: one or more of {' '.join(OURS)}")
    return wheres


def cold(bin_dir: Path, sizes: list[int]) -> list[dict]:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    perf = os.environ.get("BENCH_PERF")
    go = GO_MANAGER.exists() and os.environ.get("BENCH_GO", "1") != "0"
    if not GO_MANAGER.exists():
        print(f"| cold | Go operator absent ({GO_MANAGER}): measuring ours and the floor only |", flush=True)
    wheres = where()
    rows: list[dict] = []
    for n in sizes:
        clients = {w: floor_clients() for w in wheres}
        for r in range(rounds):
            for w in wheres:
                profile = Path(perf).resolve() / f"{OURS[w]}-{n}-r{r}.folded" if perf else None
                with tempfile.TemporaryDirectory(prefix="spin-bench-cold-") as tmp:
                    row, tried = ROUNDS[w](Path(tmp), bin_dir, n, clients[w], profile)
                    # The first round tries every concurrency; later rounds use its best.
                    clients[w] = [tried[0]["clients"]]
                    rows.append({"operator": OURS[w], "round": r, **row, "floor_s": tried[0]["floor_s"],
                                 "floor_clients": tried[0]["clients"], "floors": tried})
                    print(f"| cold | {json.dumps(rows[-1])} |", flush=True)
            if go:
                with tempfile.TemporaryDirectory(prefix="spin-bench-cold-") as tmp:
                    # Against the floor of this round's process run (its control plane has no node).
                    floor = {x["operator"]: x["floor_s"] for x in rows if x["round"] == r and x["apps"] == n}
                    floor = floor.get("ours", rows[-1]["floor_s"])
                    rows.append({"operator": "go", "round": r, **round_go(Path(tmp), bin_dir, n), "floor_s": floor})
                    print(f"| cold | {json.dumps(rows[-1])} |", flush=True)
    print_cold_table(rows)
    return rows


COLUMNS = (
    ("floor s", "floor_s", ".1f"), ("cold s", "cold_s", ".1f"), ("cold ÷ floor", "cold_ratio", ".2f"),
    ("cold requests/app", "cold_requests_per_app", ".2f"), ("cold writes/app", "cold_writes_per_app", ".2f"),
    ("cold CPU ms/app", "cold_cpu_ms_per_app", ".2f"), ("cold reconciles/app", "cold_reconciles_per_app", ".2f"),
    ("writes/app until kcm is done", "settled_writes_per_app", ".2f"),
    ("kcm status updates/app", "kcm_status_updates_per_app", ".2f"),
    ("live s", "live_s", ".1f"), ("live create s", "live_create_s", ".1f"),
    ("live requests/app", "live_requests_per_app", ".2f"), ("live writes/app", "live_writes_per_app", ".2f"),
    ("live CPU ms/app", "live_cpu_ms_per_app", ".2f"),
    ("spec change s", "spec_s", ".1f"), ("spec writes/app", "spec_writes_per_app", ".2f"),
    ("spec CPU ms/app", "spec_cpu_ms_per_app", ".2f"),
    ("writes after restart", "restart_writes", ".0f"), ("RSS MiB at cold", "rss_mib", ".1f"),
    ("RSS MiB", "rss_end_mib", ".1f"), ("cold CPU s", "cold_cpu_s", ".2f"),
    ("pod leading after s", "leader_found_s", ".1f"),
)


def derived(r: dict) -> dict:
    live = r.get("live_apps", 0)
    out = {**r, "cold_ratio": r["cold_s"] / r["floor_s"], "cold_cpu_ms_per_app": 1000 * r["cold_cpu_s"] / r["apps"]}
    if "live_cpu_s" in r:
        out["live_cpu_ms_per_app"] = 1000 * r["live_cpu_s"] / live
    if "spec_cpu_s" in r:
        out["spec_cpu_ms_per_app"] = 1000 * r["spec_cpu_s"] / (r["apps"] + live)
    return out


WHO = ("ours", "ours-pod", "go")


def print_cold_table(rows: list[dict]) -> None:
    """One row per measure, a column per operator: median (min–max) over the rounds."""
    for n in sorted({r["apps"] for r in rows}):
        by = {who: [derived(r) for r in rows if r["apps"] == n and r["operator"] == who] for who in WHO}
        whos = [w for w in WHO if by[w]]
        print(f"\n{n} apps, {max(len(v) for v in by.values())} rounds; median (min–max)\n\n| measure | "
              + " | ".join(whos) + " |\n|---|" + "---:|" * len(whos))
        for label, key, fmt in COLUMNS:
            cells = [spread([r[key] for r in by[w]], fmt) if all(key in r for r in by[w]) else "–" for w in whos]
            if any(c != "–" for c in cells):
                print(f"| {label} | " + " | ".join(cells) + " |")
        if by["go"] and by["ours"]:
            ours, go = (statistics.median(r["cold_cpu_ms_per_app"] for r in by[w]) for w in ("ours", "go"))
            print(f"\nCPU per converged app, ours ÷ Go: {ours / go:.2f}")
        if len(whos) > 1:
            print(f"\nWithin each round, ÷ {whos[0]} (cold s, cold CPU s, RSS MiB at cold):")
            for r in sorted({x["round"] for x in by[whos[0]]}):
                base = next(x for x in by[whos[0]] if x["round"] == r)
                cells = [f"{w} " + " / ".join(f"{x[k] / base[k]:.2f}" for k in ("cold_s", "cold_cpu_s", "rss_mib"))
                         for w in whos[1:] for x in by[w] if x["round"] == r]
                print(f"- round {r}: " + "; ".join(cells))
