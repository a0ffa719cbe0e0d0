"""Admission through the API server, ours and the Go operator side by side (`BENCH_PARTS=admission`).

Each operator gets a fresh control plane whose webhooks the API server calls through an
ExternalName Service to localhost:
- ours: the chart, the release build running as the chart runs it (JSON log at level info, so
  the audit line of every decision is written), the release namespace excluded by the chart;
- the Go operator (`<repo>/../shared/upstream/bin/manager --enable-webhooks`, used in place,
  skipped with a message where absent): its own CRDs, the webhook configurations of its own chart
  (`helm template`) with the Service's port and a caBundle set, and a namespaceSelector that
  excludes the "off" namespace the way ours' chart excludes its release namespace.

BENCH_ADMISSION_OPERATORS ("ours go") picks them. Then BENCH_ADMISSION_ROUNDS rounds (default 3),
on and off alternating which goes first, with two
load generators, each BENCH_ADMISSION_CLIENTS (4) clients × BENCH_ADMISSION_CREATES (250)
server-side dry-run creates of a SpinApp:
- kubectl: one `kubectl create --dry-run=server` of a List per client (a process each; its own
  work per object is in the figure);
- keepalive: one Python thread per client with one keep-alive HTTPS connection, POST `?dryRun=All`.

Per run: creates/s; CPU ms per create of kube-apiserver, etcd and the webhook server (/proc);
new TCP connections to the webhook port (distinct peer ports seen in /proc/net/tcp{,6}, any state,
sampled every 20 ms); for ours, TLS handshakes and the negotiated ALPN protocol (rustls' own
debug lines, switched on for that target only). Ours also runs "on" with the webhooks' CEL
matchConditions removed, to price them. BENCH_PPROF=1 adds a kube-apiserver CPU profile
(`/debug/pprof/profile`) during 10 s of keepalive load, on and off, summarised by `go tool pprof`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
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

import yaml
from bench_fleet import (
    GO_MANAGER,
    RUNTIME_CLASS,
    UPSTREAM,
    cpu_seconds,
)
from bench_floor import EXECUTOR, Api, app, apply
from controlplane import (
    ADMIN_TOKEN,
    OPERATOR_NAMESPACE,
    ControlPlane,
    _openssl,
    chart_operator,
    free_port,
    install_chart,
    start_operator,
    wait_for_webhooks,
    wait_until,
)
from procs import start_process

ON_NS = "bench-admission"
GO_OFF_NS = "bench-off"
# The Go operator's webhook server port (fixed upstream) and the names its chart renders.
GO_PORT = 9443
GO_SERVICE = "spin-operator-webhook-service"


def proc_named(cp: ControlPlane, name: str) -> int:
    return next(p.popen.pid for p in cp.procs if p.name == name)


def peer_ports(port: int) -> set[tuple[str, str]]:
    """(remote address, remote port) of every socket on local `port`, any state (TIME_WAIT too)."""
    out: set[tuple[str, str]] = set()
    want = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            # State 0A is LISTEN: the server's own socket.
            if local.rsplit(":", 1)[1] == want and state != "0A":
                out.add(tuple(remote.rsplit(":", 1)))
    return out


class Connections:
    """Distinct connections to a port while it runs (a sampler thread)."""

    def __init__(self, port: int):
        self.port, self.seen, self.stop = port, peer_ports(port), threading.Event()
        self.before = set(self.seen)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.02):
            self.seen |= peer_ports(self.port)

    def new(self) -> int:
        self.stop.set()
        self.thread.join()
        self.seen |= peer_ports(self.port)
        return len(self.seen - self.before)


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


def by_kubectl(cp: ControlPlane, ns: str, clients: int, per_client: int) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List",
                       "items": [app(f"adm-{i}", i) for i in range(per_client)]})
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: cp.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=body,
                                           timeout=600), range(clients)))


def by_keepalive(cp: ControlPlane, ns: str, clients: int, per_client: int, until: float | None = None) -> int:
    """`clients` keep-alive connections creating `per_client` apps each (or until `until`);
    returns the number of creates."""
    path = f"/apis/core.spinkube.dev/v1alpha1/namespaces/{ns}/spinapps?dryRun=All"
    # Connected before the clock starts, as kubectl's are by the time it sends its first create.
    conns = [Api.of(cp) for _ in range(clients)]
    for c in conns:
        c.send("GET", f"/api/v1/namespaces/{ns}")

    def run(c: Api) -> int:
        n = 0
        while (n < per_client) if until is None else (time.monotonic() < until):
            c.send("POST", path, json.dumps(app(f"adm-{n}", n)).encode())
            n += 1
        c.conn.close()
        return n

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(run, conns))


LOADS: dict[str, Callable[[ControlPlane, str, int, int], None]] = {"kubectl": by_kubectl, "keepalive": by_keepalive}


class Target:
    """What one run measures besides the clock: the processes' CPU and the webhook's connections."""

    def __init__(self, cp: ControlPlane, server_pid: Callable[[], int], port: int,
                 handshakes: Callable[[], dict[str, int]] | None = None):
        self.cp, self.server_pid, self.port, self.handshakes = cp, server_pid, port, handshakes

    def run(self, label: str, ns: str, load: str, clients: int, per_client: int) -> dict:
        pids = {"apiserver": proc_named(self.cp, "kube-apiserver"), "etcd": proc_named(self.cp, "etcd"),
                "webhook": self.server_pid()}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        child0, self0 = os.times(), time.process_time()
        hs0 = self.handshakes() if self.handshakes else {}
        hist0 = webhook_histogram(self.cp)
        conns = Connections(self.port)
        t0 = time.monotonic()
        LOADS[load](self.cp, ns, clients, per_client)
        seconds = time.monotonic() - t0
        new_conns = conns.new()
        creates = clients * per_client
        child1 = os.times()
        cpu = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
        # The load generator: kubectl processes (children) or this process's threads.
        cpu["client"] = ((child1.children_user + child1.children_system) - (child0.children_user + child0.children_system)
                         if load == "kubectl" else time.process_time() - self0)
        row = {"mode": label, "load": load, "creates": creates, "seconds": round(seconds, 2),
               "per_second": round(creates / seconds, 1),
               "cpu_ms_per_create": {k: round(v * 1000 / creates, 2) for k, v in cpu.items()},
               "new_webhook_connections": new_conns}
        hist1 = webhook_histogram(self.cp)
        # The API server's own latency of each webhook call (bucket bounds, seconds).
        row["webhook_p50_p99_s"] = {name: [quantile(hist0.get(name, {}), hist1[name], q) for q in (0.5, 0.99)]
                                    for name in sorted(hist1) if "spinapp." in name
                                    and hist1[name].get(float("inf"), 0) > hist0.get(name, {}).get(float("inf"), 0)}
        if self.handshakes:
            hs1 = self.handshakes()
            row["tls_handshakes"] = {k: hs1.get(k, 0) - hs0.get(k, 0) for k in hs1 if hs1.get(k, 0) != hs0.get(k, 0)}
        return row


def rounds(target: Target, on_ns: str, off_ns: str, phase: str = "webhooks") -> list[dict]:
    n = int(os.environ.get("BENCH_ADMISSION_ROUNDS", "3"))
    clients = int(os.environ.get("BENCH_ADMISSION_CLIENTS", "4"))
    per_client = int(os.environ.get("BENCH_ADMISSION_CREATES", "250"))
    rows = []
    for load in LOADS:
        # Warm-up: the first creates of a resource pay for caches (both modes, not counted).
        for ns in (on_ns, off_ns):
            LOADS[load](target.cp, ns, 1, 20)
        for r in range(n):
            modes = [("on", on_ns), ("off", off_ns)]
            if r % 2:
                modes.reverse()
            for label, ns in modes:
                row = {"phase": phase, "round": r, **target.run(label, ns, load, clients, per_client)}
                rows.append(row)
                print(f"| admission | {json.dumps(row)} |", flush=True)
    return rows


PPROF_SECS = 8


def pprof(cp: ControlPlane, who: str, on_ns: str, off_ns: str) -> list[dict]:
    """kube-apiserver CPU profiles during PPROF_SECS of keepalive load, on and off, written to
    BENCH_PPROF_DIR (default /tmp/spin-bench-pprof) with `go tool pprof -top -cum` beside them."""
    go = shutil.which("go")
    out_dir = Path(os.environ.get("BENCH_PPROF_DIR", "/tmp/spin-bench-pprof"))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, ns in (("on", on_ns), ("off", off_ns)):
        path = out_dir / f"apiserver-{who}-{label}.pprof"
        req = urllib.request.Request(f"{cp.server}/debug/pprof/profile?seconds={PPROF_SECS}",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        ctx.check_hostname = False
        fetched: dict[str, bytes] = {}
        t = threading.Thread(target=lambda: fetched.update(data=urllib.request.urlopen(req, context=ctx, timeout=60).read()))
        t.start()
        # The load spans the profile's window; creates are counted over the same seconds.
        creates = by_keepalive(cp, ns, 4, 0, until=time.monotonic() + PPROF_SECS)
        t.join()
        path.write_bytes(fetched["data"])
        row = {"mode": label, "profile": str(path), "creates": creates}
        if go:
            top = subprocess.run([go, "tool", "pprof", "-top", "-cum", "-nodecount=80", str(path)],
                                 capture_output=True, text=True, check=False).stdout
            (out_dir / f"apiserver-{who}-{label}.top.txt").write_text(top)
            row["top"] = str(out_dir / f"apiserver-{who}-{label}.top.txt")
            m = re.search(r"Total samples = ([\d.]+)(m?s)", top)
            if m:
                row["cpu_s"] = float(m[1]) / (1000 if m[2] == "ms" else 1)
                row["cpu_ms_per_create"] = round(row["cpu_s"] * 1000 / max(creates, 1), 2)
        rows.append(row)
        print(f"| admission pprof | {json.dumps(row)} |", flush=True)
    return rows


# -- ours ---------------------------------------------------------------------------------------

def rustls_handshakes(log: Path) -> dict[str, int]:
    """TLS handshakes and the ALPN protocol chosen, from rustls' debug lines in the JSON log."""
    out: dict[str, int] = {}
    if not log.exists():
        return out
    for line in log.read_text(errors="replace").splitlines():
        if "rustls" not in line:
            continue
        try:
            message = json.loads(line).get("message", "")
        except ValueError:
            continue
        if message.startswith("decided upon suite"):
            out["handshakes"] = out.get("handshakes", 0) + 1
        elif message.startswith("Chosen ALPN protocol"):
            key = "alpn " + message.removeprefix("Chosen ALPN protocol ")
            out[key] = out.get(key, 0) + 1
    return out


def ours(tmp: Path, bin_dir: Path) -> list[dict]:
    cp = ControlPlane(tmp / "ours", bin_dir).start()
    try:
        port = free_port()
        install_chart(cp, port, {"certManager": {"enabled": False}, "runtimeClass": {"enabled": True}})
        args, sa = chart_operator(cp)
        # As the chart runs it (JSON, info: the audit line of every decision), plus rustls'
        # handshake lines to count connections and see the protocol.
        op = start_operator(cp, "bench", port, [*args, "--log-format=json"], service_account=sa,
                            env={"RUST_LOG": "info,rustls::server::hs=debug"})
        wait_for_webhooks(cp)
        cp.kubectl("create", "namespace", ON_NS)
        apply(cp, ON_NS, [EXECUTOR])
        apply(cp, OPERATOR_NAMESPACE, [EXECUTOR])
        wait_until("the executor in the webhook's cache", lambda: cp.kubectl(
            "create", "--dry-run=server", "-n", ON_NS, "-f", "-", input=json.dumps(app("probe", 0)), check=False
        ).returncode == 0, timeout=60)
        target = Target(cp, lambda: op.proc.popen.pid, port, lambda: rustls_handshakes(op.proc.log))
        rows = [{"operator": "ours", **r} for r in rounds(target, ON_NS, OPERATOR_NAMESPACE)]
        # The chart's CEL matchConditions, priced: the same "on" without them.
        for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
            for name in cp.kubectl("get", kind, "-o", "name").stdout.split():
                hooks = cp.get_json(name)["webhooks"]
                ops = [{"op": "remove", "path": f"/webhooks/{i}/matchConditions"}
                       for i, h in enumerate(hooks) if h.get("matchConditions")]
                if ops:
                    cp.kubectl("patch", name, "--type=json", "-p", json.dumps(ops))
        time.sleep(2)
        for r in rounds(target, ON_NS, OPERATOR_NAMESPACE, phase="no matchConditions"):
            rows.append({"operator": "ours", **r, "mode": "on, no matchConditions" if r["mode"] == "on" else "off"})
        if os.environ.get("BENCH_PPROF") == "1":
            rows += [{"operator": "ours", **r} for r in pprof(cp, "ours", ON_NS, OPERATOR_NAMESPACE)]
        return rows
    finally:
        cp.stop()


# -- the Go operator ----------------------------------------------------------------------------

def serving_cert(dir_: Path, dns: str) -> bytes:
    """A CA and a serving certificate for `dns` signed by it (tls.crt, tls.key in `dir_`); returns the CA."""
    dir_.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt, ext = (dir_ / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt", "ext"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=bench-go-webhook-ca", "-days", "2")
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={dns}")
    ext.write_text(f"subjectAltName=DNS:{dns}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return ca.read_bytes()


def go_webhook_configs(cp: ControlPlane, ca: bytes) -> list[dict]:
    """The upstream chart's webhook configurations, wired to localhost:9443 with `ca`, the "off"
    namespace excluded."""
    rendered = cp.helm("template", "spin-operator", str(UPSTREAM / "chart" / "spin-operator"), "--namespace",
                       OPERATOR_NAMESPACE, "--show-only", "templates/mutating-webhook-configuration.yaml",
                       "--show-only", "templates/validating-webhook-configuration.yaml").stdout
    configs = [d for d in yaml.safe_load_all(rendered) if d]
    for c in configs:
        c["metadata"].pop("annotations", None)  # cert-manager's CA injection: the caBundle is set here
        for hook in c["webhooks"]:
            hook["clientConfig"]["service"]["port"] = GO_PORT
            hook["clientConfig"]["caBundle"] = base64.b64encode(ca).decode()
            hook["namespaceSelector"] = {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [GO_OFF_NS]}]}
    return configs


def go(tmp: Path, bin_dir: Path) -> list[dict]:
    cp = ControlPlane(tmp / "go", bin_dir).start()
    try:
        for crd in sorted((UPSTREAM / "crds").glob("*.yaml")):
            cp.kubectl("apply", "-f", str(crd))
        for crd in ("spinapps", "spinappexecutors"):
            wait_until(f"CRD {crd} established", lambda: "True" in cp.kubectl(
                "get", f"crd/{crd}.core.spinkube.dev", "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}", check=False).stdout, timeout=60)
        apply(cp, None, [RUNTIME_CLASS])
        cp.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        cp.kubectl("create", "serviceaccount", "go-manager", "-n", OPERATOR_NAMESPACE)
        cp.kubectl("create", "clusterrolebinding", "go-manager", "--clusterrole=cluster-admin",
                   f"--serviceaccount={OPERATOR_NAMESPACE}:go-manager")
        kubeconfig = cp.token_kubeconfig("go-manager", OPERATOR_NAMESPACE, "go-manager")
        ca = serving_cert(cp.workdir / "k8s-webhook-server" / "serving-certs",
                          f"{GO_SERVICE}.{OPERATOR_NAMESPACE}.svc")
        apply(cp, OPERATOR_NAMESPACE, [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": GO_SERVICE},
                                        "spec": {"type": "ExternalName", "externalName": "localhost"}}])
        health = free_port()
        proc = cp.add_process(start_process("go-manager", [
            str(GO_MANAGER), f"--kubeconfig={kubeconfig}", "--enable-webhooks",
            f"--metrics-bind-address=127.0.0.1:{free_port()}", "--metrics-secure=false",
            f"--health-probe-bind-address=127.0.0.1:{health}", "--zap-log-level=info", "--zap-devel=false"],
            cp.workdir, {**cp.env(), "TMPDIR": str(cp.workdir)}))
        wait_until("the Go operator ready", lambda: proc.alive() and urllib.request.urlopen(
            f"http://127.0.0.1:{health}/readyz", timeout=2).status == 200, timeout=120, interval=1)
        apply(cp, None, go_webhook_configs(cp, ca))
        wait_for_webhooks(cp)
        for ns in (ON_NS, GO_OFF_NS):
            cp.kubectl("create", "namespace", ns)
            apply(cp, ns, [EXECUTOR])
        wait_until("the executor in the webhook's cache", lambda: cp.kubectl(
            "create", "--dry-run=server", "-n", ON_NS, "-f", "-", input=json.dumps(app("probe", 0)), check=False
        ).returncode == 0, timeout=60)
        target = Target(cp, lambda: proc.popen.pid, GO_PORT)
        rows = [{"operator": "go", **r} for r in rounds(target, ON_NS, GO_OFF_NS)]
        if os.environ.get("BENCH_PPROF") == "1":
            rows += [{"operator": "go", **r} for r in pprof(cp, "go", ON_NS, GO_OFF_NS)]
        return rows
    finally:
        cp.stop()


# -- the part -----------------------------------------------------------------------------------

def admission(bin_dir: Path) -> list[dict]:
    """Both operators, or those BENCH_ADMISSION_OPERATORS names ("ours", "go")."""
    which = os.environ.get("BENCH_ADMISSION_OPERATORS", "ours go").split()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="spin-bench-admission-") as tmp:
        if "ours" in which:
            rows += ours(Path(tmp), bin_dir)
        if "go" not in which:
            pass
        elif GO_MANAGER.exists():
            rows += go(Path(tmp), bin_dir)
        else:
            print(f"| admission | Go operator absent ({GO_MANAGER}): measuring ours only |", flush=True)
    print_table(rows)
    return rows


def print_table(rows: list[dict]) -> None:
    """Medians (min–max) per operator, load and mode; ÷ off is the median of each round's ratio
    to the "off" run next to it (same phase and round), so that the machine's load between
    rounds cancels."""
    runs = [r for r in rows if "per_second" in r]
    print("\n| operator | load | mode | runs | creates/s | ÷ off (per round) | apiserver ms/create | "
          "etcd ms/create | webhook server ms/create | client ms/create | new webhook connections |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for who in ("ours", "go"):
        for load in LOADS:
            for mode in ("on", "on, no matchConditions", "off"):
                rs = [r for r in runs if (r["operator"], r["load"], r["mode"]) == (who, load, mode)]
                if not rs:
                    continue
                ratios = []
                for r in rs:
                    off = [o["per_second"] for o in runs if (o["operator"], o["load"], o["mode"], o["phase"], o["round"])
                           == (who, load, "off", r["phase"], r["round"])]
                    if off:
                        ratios.append(r["per_second"] / off[0])
                rate = [r["per_second"] for r in rs]

                def spread(xs: list[float], fmt: str) -> str:
                    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}–{max(xs):{fmt}})"

                def cpu(k: str) -> str:
                    return f"{statistics.median([r['cpu_ms_per_create'][k] for r in rs]):.2f}"
                print(f"| {who} | {load} | {mode} | {len(rs)} | {spread(rate, '.0f')} | "
                      f"{spread(ratios, '.2f') if mode != 'off' else '1'} | {cpu('apiserver')} | {cpu('etcd')} | "
                      f"{cpu('webhook')} | {cpu('client')} | {max(r['new_webhook_connections'] for r in rs)} |")
