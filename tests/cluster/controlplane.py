"""A real Kubernetes control plane on loopback, for the end-to-end tests and `make cluster-up`.

etcd, kube-apiserver and kube-controller-manager are built from the Go modules in go/ (build.sh)
and started as plain processes: no kubelet, no container runtime, so pods stay Pending. The
operator is installed the way a user installs it (`helm install` of the chart) and then runs as a
local process with a token of the chart's ServiceAccount, so the chart's RBAC is what it gets.

The API server reaches the local webhook server through the chart's own webhook configurations:
the chart's webhook Service is made an ExternalName Service pointing at `localhost`
(`webhooks.service.externalName`), which kube-apiserver resolves for `clientConfig.service`
(Endpoints may not point into 127.0.0.0/8). TLS is still verified against the Service's DNS name
`<service>.<namespace>.svc`, as in a cluster.

With a node (`with_node=True`, `up --node`; node.py): kube-scheduler joins, kube-apiserver binds the
host end of the node's link instead of loopback, and `up --node` installs the chart with
`helm install --wait` so the operator runs in the chart's pods from `make image`'s image, its
webhooks called at the webhook Service's Endpoints (no ExternalName).

Usage as a program: `controlplane.py up [--node] [--dir DIR]` starts everything, installs the chart,
runs the operator and returns (the processes keep running); `controlplane.py down [--dir DIR]` stops
every process `up` started and removes the node's mounts, cgroups, namespace and routes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from node import NODE_NAME, SERVICE_CIDR, Node, NodeError, NodeNetwork
from node import teardown as node_teardown
from procs import ClusterError, Proc, free_port, start_process, wait_until  # noqa: F401 - re-exported

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHART = REPO / "helm" / "spin-operator"
DEFAULT_DIR = REPO / "target" / "cluster"
ADMIN_TOKEN = "spin-operator-e2e-admin"
NODE_TOKEN = "spin-operator-e2e-node"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
OPERATOR_NAMESPACE = "spin-operator"
RELEASE = "spin-operator"


def build_binaries() -> Path:
    """Build (or reuse from the cache) the control plane's binaries; returns their directory."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True, check=False
    )
    if out.returncode != 0:
        raise ClusterError(f"tests/cluster/build.sh failed with exit code {out.returncode}")
    return Path(out.stdout.strip().splitlines()[-1])


@functools.cache
def operator_binary() -> Path:
    """The debug build of the operator, brought up to date once per run (SPIN_OPERATOR_BIN: another
    build, e.g. target/release/spin-operator for benchmarks)."""
    if os.environ.get("SPIN_OPERATOR_BIN"):
        return Path(os.environ["SPIN_OPERATOR_BIN"]).resolve()
    subprocess.run(["cargo", "build", "--quiet", "--locked", "--bin", "spin-operator"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "spin-operator"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback ports, in one work directory."""

    workdir: Path
    bin_dir: Path
    procs: list[Proc] = field(default_factory=list)
    apiserver_port: int = 0
    # The API server presents a client certificate (signed by `webhook_client_ca`) to every
    # webhook, through its AdmissionConfiguration's kubeconfig, for `run --client-ca-file`.
    # A webhook server that asks for no client certificate never gets one: harmless for others.
    webhook_client_cert: bool = False
    # With a node (node.py): kube-scheduler too, and kube-apiserver on the host end of the node's
    # link instead of loopback, so the kubelet and the pods reach it.
    with_node: bool = False
    address: str = "127.0.0.1"
    net: NodeNetwork | None = None
    node: Node | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def webhook_client_ca(self) -> Path:
        return self.workdir / "pki" / "webhook-client-ca.crt"

    @property
    def node_kubeconfig(self) -> Path:
        return self.workdir / "node.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        # kube-apiserver writes its self-signed serving certificate with its CA into --cert-dir.
        return self.workdir / "pki" / "apiserver.crt"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        # Loopback only: no proxy may sit between the tools and the API server.
        env["NO_PROXY"] = env["no_proxy"] = f"127.0.0.1,localhost,{self.address}"
        env["HELM_CACHE_HOME"] = str(self.workdir / "helm" / "cache")
        env["HELM_CONFIG_HOME"] = str(self.workdir / "helm" / "config")
        env["HELM_DATA_HOME"] = str(self.workdir / "helm" / "data")
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "ControlPlane":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.with_node:
                self.net = NodeNetwork.create()
                self.address = self.net.host_ip
                self._save_state()
            self._write_pki()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig(self.kubeconfig, ADMIN_TOKEN)
            self._start_controller_manager()
            wait_until("the default ServiceAccount", lambda: self.kubectl(
                "get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0, timeout=60)
            if self.net is not None:
                self._write_kubeconfig(self.node_kubeconfig, NODE_TOKEN)
                self._start_scheduler()
                self.node = Node(self, self.net).start()
        except BaseException:
            self.stop()
            raise
        self._save_state()
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self.net is not None:
            node_teardown(self.workdir, self.net.index)
            self.net = self.node = None
            self._save_state()

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise ClusterError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")

    def _save_state(self) -> None:
        state = {"pids": [p.popen.pid for p in self.procs], "server": self.server, "kubeconfig": str(self.kubeconfig),
                 "node": self.net.index if self.net is not None else None}
        (self.workdir / "state.json").write_text(json.dumps(state))

    def add_process(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        self._save_state()
        return proc

    # -- pieces ------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        # The ServiceAccount token signer (TokenRequest, used to give the operator the chart's SA).
        _openssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(pki / "sa.key"))
        _openssl("ec", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        # Static token of the test's cluster admin (kubectl, helm, kube-controller-manager).
        # The node's kubelet and kube-proxy: a user of their own (audit log), with admin rights.
        (self.workdir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},e2e-admin,e2e-admin,"system:masters"\n'
            f'{NODE_TOKEN},system:node:{NODE_NAME},e2e-node,"system:nodes,system:masters"\n')
        shutil.copy(HERE / "audit-policy.yaml", self.workdir / "audit-policy.yaml")
        if self.webhook_client_cert:
            self._write_webhook_client_config(pki)

    def _write_webhook_client_config(self, pki: Path) -> None:
        """A CA, a client certificate (clientAuth) it signs, and the AdmissionConfiguration whose
        kubeconfig makes the API server present that certificate to every webhook ("*")."""
        ca_key, ca, key, csr, cert = (pki / n for n in (
            "webhook-client-ca.key", "webhook-client-ca.crt", "webhook-client.key", "webhook-client.csr", "webhook-client.crt"))
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=e2e-webhook-client-ca", "-days", "7")
        _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
        ext = pki / "webhook-client.ext"
        ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", "7", "-extfile", str(ext))
        kubeconfig = self.workdir / "webhook-client.kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "users": [{"name": "*", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        }))
        webhook = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
                   "kubeConfigFile": str(kubeconfig)}
        (self.workdir / "admission-config.json").write_text(json.dumps({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
            "plugins": [{"name": name, "configuration": webhook}
                        for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")],
        }))

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.add_process(start_process("etcd", [
            str(self.bin_dir / "etcd"),
            "--name=e2e", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=e2e=http://127.0.0.1:{peer}",
            # A throwaway store: durability costs seconds per test on a shared disk.
            "--unsafe-no-fsync", "--log-level=warn",
        ], self.workdir))
        wait_until("etcd", lambda: urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2).status == 200, timeout=30)

    def _start_apiserver(self) -> None:
        self.apiserver_port = free_port(self.address)
        pki = self.workdir / "pki"
        if self.net is None:
            # The loopback address cannot be the `kubernetes` Service's endpoint; nothing needs it.
            node_args = ["--endpoint-reconciler-type=none"]
        else:
            # Webhooks and aggregated APIs are called at their Endpoints (pod IPs): the host has
            # no route to ClusterIPs (node.py's guard).
            node_args = ["--enable-aggregator-routing=true", "--kubelet-preferred-address-types=InternalIP"]
        self.add_process(start_process("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.address}", f"--advertise-address={self.address}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={pki}",
            # A /24 ran out at ~250 Services in the fleet benchmark. Routed only inside the node.
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *node_args,
            "--authorization-mode=RBAC",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            f"--service-account-issuer={SA_ISSUER}", f"--api-audiences={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            # Webhooks and ValidatingAdmissionPolicy are on by default; this one is what lets the
            # tests prove children may set blockOwnerDeletion with the chart's RBAC.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}",
            # No rotation (0 would mean lumberjack's 100 MB): a 5,000-app benchmark writes more.
            "--audit-log-format=json", "--audit-log-mode=blocking", "--audit-log-maxsize=100000",
            "--allow-privileged=true",
            *([f"--admission-control-config-file={self.workdir / 'admission-config.json'}"]
              if self.webhook_client_cert else []),
        ], self.workdir))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        def ready() -> bool:
            self.check_alive()
            req = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            return urllib.request.urlopen(req, context=ctx, timeout=5).status == 200

        wait_until("kube-apiserver /readyz", ready, timeout=120, interval=0.5)

    def _write_kubeconfig(self, path: Path, token: str, namespace: str = "default") -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "user", "namespace": namespace}}],
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def _start_controller_manager(self) -> None:
        controllers = ("garbage-collector-controller,deployment-controller,replicaset-controller,"
                       "namespace-controller,serviceaccount-controller")
        node_args = []
        if self.net is not None:
            # What running pods need: Service endpoints (kube-proxy, webhooks), the
            # kube-root-ca.crt ConfigMap of ServiceAccount token volumes, PDBs for evictions.
            controllers += (",endpoints-controller,endpointslice-controller,root-ca-certificate-publisher-controller,"
                            "disruption-controller,pod-garbage-collector-controller")
            node_args = [f"--root-ca-file={self.ca_file}"]
        self.add_process(start_process("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={controllers}", *node_args,
            "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
            # Quick garbage collection and namespace deletion keep the tests short.
            "--concurrent-gc-syncs=5", "--namespace-sync-period=10s",
        ], self.workdir))
        time.sleep(0.5)
        self.check_alive()

    def _start_scheduler(self) -> None:
        self.add_process(start_process("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"), f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--secure-port=0",
        ], self.workdir))

    # -- tools -------------------------------------------------------------------------------

    def run(self, tool: str, *args: str, input: str | None = None, check: bool = True,
            kubeconfig: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        out = subprocess.run([str(self.bin_dir / tool), *args], input=input, capture_output=True, text=True,
                             env=env, timeout=timeout)
        if check and out.returncode != 0:
            raise ClusterError(f"{tool} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run("helm", *args, **kw)

    def uninstall_in_pods(self, release: str, namespace: str) -> None:
        """`helm uninstall --wait`, then until the operator pods are gone: a pod in its lame-duck
        period still serves (and may still hold the old self-signed CA) after helm returns."""
        self.helm("uninstall", release, "-n", namespace, "--wait", timeout=300)
        self.kubectl("wait", "--for=delete", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator",
                     "--timeout=120s", timeout=150)

    def get_json(self, *args: str, **kw) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json", **kw).stdout)

    def token_kubeconfig(self, service_account: str, namespace: str, name: str) -> Path:
        """A kubeconfig for a ServiceAccount, with a token from the TokenRequest API."""
        token = self.kubectl("create", "token", service_account, "-n", namespace, "--duration=24h").stdout.strip()
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, token, namespace)
        return path

    def audit_events(self) -> list[dict[str, Any]]:
        events = []
        with open(self.audit_log, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    events.append(json.loads(line))
        return events


@dataclass
class Operator:
    """One operator process, running with the chart's ServiceAccount."""

    proc: Proc
    webhook_port: int
    health_port: int
    user: str

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5).read().decode()

    def ready(self) -> bool:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2).status == 200
        except OSError:
            return False


def install_chart(cp: ControlPlane, webhook_port: int, values: Mapping[str, Any] | None = None,
                  release: str = RELEASE, namespace: str = OPERATOR_NAMESPACE, upgrade: bool = False) -> None:
    """`helm install` the chart as a user would, wired to a webhook server on this machine.

    No `--wait`: the chart's own Deployment stays Pending without a kubelet, by design here.
    """
    base = {
        # The RuntimeClass the example executors name, so the ReplicaSets' pods are admitted
        # (and stay Pending: no node runs them).
        "runtimeClass": {"enabled": True},
        # The API server calls https://localhost:<port> for the chart's webhook Service.
        "webhooks": {"service": {"externalName": "localhost", "port": webhook_port}},
        "ports": {"webhook": webhook_port},
    }
    merged = _merge(base, dict(values or {}))
    values_file = cp.workdir / f"values-{release}.json"
    values_file.write_text(json.dumps(merged))
    verb = "upgrade" if upgrade else "install"
    cp.helm(verb, release, str(CHART), "--namespace", namespace, "--create-namespace", "-f", str(values_file),
            timeout=300)


def install_chart_in_pods(cp: ControlPlane, values: Mapping[str, Any] | None = None, release: str = RELEASE,
                          namespace: str = OPERATOR_NAMESPACE, upgrade: bool = False,
                          binary: Path | None = None) -> None:
    """`helm install --wait` the chart on the node, as a platform engineer would: the operator runs
    in the chart's pods from the image `make image` builds (of `binary` if given), and the API
    server calls the webhooks at the webhook Service's Endpoints (no ExternalName). Needs a
    control plane with a node."""
    if cp.node is None:
        raise ClusterError("install_chart_in_pods needs a control plane started with_node=True")
    repository, tag = cp.node.push_operator_image(binary=binary)
    base = {"image": {"repository": repository, "tag": tag}, "runtimeClass": {"enabled": True}}
    values_file = cp.workdir / f"values-{release}.json"
    values_file.write_text(json.dumps(_merge(base, dict(values or {}))))
    cp.helm("upgrade" if upgrade else "install", release, str(CHART), "--namespace", namespace, "--create-namespace",
            "-f", str(values_file), "--wait", "--timeout=5m", timeout=400)


def chart_operator(cp: ControlPlane, namespace: str = OPERATOR_NAMESPACE) -> tuple[list[str], str]:
    """The `run` arguments and ServiceAccount of the chart's operator Deployment in `namespace`,
    so a local process runs as the chart would run it (addresses and cert dir are set locally)."""
    deployments = cp.get_json("deployments", "-n", namespace, "-l", "app.kubernetes.io/component=operator")["items"]
    if len(deployments) != 1:
        raise ClusterError(f"expected one operator Deployment in {namespace}, found {len(deployments)}")
    pod = deployments[0]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    local = ("--webhook-addr=", "--health-addr=", "--cert-dir=", "--log-format=", "--shutdown-lame-duck-seconds=")
    return [a for a in args[1:] if not a.startswith(local)], pod["serviceAccountName"]


def start_operator(cp: ControlPlane, name: str, webhook_port: int, args: Iterable[str] = (),
                   namespace: str = OPERATOR_NAMESPACE, service_account: str = RELEASE,
                   wait_ready: bool = True, env: Mapping[str, str] | None = None,
                   cert_dir: Path | None = None) -> Operator:
    """Run the operator binary locally with a token of the chart's ServiceAccount."""
    kubeconfig = cp.token_kubeconfig(service_account, namespace, f"operator-{name}")
    health_port = free_port()
    proc_env = cp.env()
    proc_env.update({
        "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": namespace, "POD_NAME": name,
        "RUST_LOG": os.environ.get("SPIN_E2E_RUST_LOG", "info"),
    })
    proc_env.update(env or {})
    if cert_dir is None:
        cert_dir = cp.workdir / f"certs-{name}"
        cert_dir.mkdir(exist_ok=True)
    args = list(args)
    if not any(a.startswith("--shutdown-lame-duck-seconds") for a in args):
        # Nothing routes to these processes by Endpoints: stop at once unless a test asks.
        args.append("--shutdown-lame-duck-seconds=0")
    log_format = [] if any(a.startswith("--log-format") for a in args) else ["--log-format=text"]
    argv = [str(operator_binary()), "run", f"--webhook-addr=127.0.0.1:{webhook_port}",
            f"--health-addr=127.0.0.1:{health_port}", f"--cert-dir={cert_dir}", *log_format, *args]
    proc = cp.add_process(start_process(f"operator-{name}", argv, cp.workdir, proc_env))
    op = Operator(proc, webhook_port, health_port, f"system:serviceaccount:{namespace}:{service_account}")
    if wait_ready:
        def ready() -> bool:
            if not proc.alive():
                raise ClusterError(f"operator {name} exited:\n{proc.tail()}")
            return op.ready()
        wait_until(f"operator {name} /readyz", ready, timeout=120)
    return op


def wait_for_webhooks(cp: ControlPlane, namespace: str = "default") -> None:
    """Until the API server calls our webhooks successfully (caBundle in place, server serving)."""
    probe = {
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": "webhook-probe", "namespace": namespace},
        "spec": {"createDeployment": False},
    }

    def answered() -> bool:
        out = cp.kubectl("create", "--dry-run=server", "-f", "-", "-o", "json", input=json.dumps(probe), check=False)
        if out.returncode != 0:
            raise AssertionError(out.stderr)
        return True

    wait_until("the API server to call the webhooks", answered, timeout=90, interval=1)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# -- command line ------------------------------------------------------------------------------

def cmd_up(workdir: Path, with_node: bool = False) -> int:
    if (workdir / "state.json").exists():
        cmd_down(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    print("building the control plane (cached after the first build) ...", flush=True)
    bin_dir = build_binaries()
    print("starting etcd, kube-apiserver, kube-controller-manager" +
          (", kube-scheduler and a node (containerd, kubelet, kube-proxy) ..." if with_node else " ..."), flush=True)
    cp = ControlPlane(workdir, bin_dir, with_node=with_node).start()
    try:
        if with_node and (REPO / "image" / "operator.sh").exists():
            print(f"make image; helm install --wait {RELEASE} ./helm/spin-operator (self-signed certificates):"
                  " the operator in the chart's pods ...", flush=True)
            install_chart_in_pods(cp, {"certManager": {"enabled": False}})
            wait_for_webhooks(cp)
        else:
            webhook_port = free_port()
            print(f"helm install {RELEASE} ./helm/spin-operator (self-signed certificates) ...", flush=True)
            install_chart(cp, webhook_port, {"certManager": {"enabled": False}})
            print("starting the operator with the chart's ServiceAccount and arguments ...", flush=True)
            args, service_account = chart_operator(cp)
            start_operator(cp, "local", webhook_port, args, service_account=service_account)
    except BaseException:
        cp.stop()
        raise
    print(f"control plane at {cp.server}; logs in {workdir / 'logs'}; `make cluster-down` stops it")
    print(f"export KUBECONFIG={cp.kubeconfig}")
    print(f"export PATH={bin_dir}:$PATH")
    return 0


def cmd_down(workdir: Path) -> int:
    state_file = workdir / "state.json"
    if not state_file.exists():
        print(f"nothing running ({state_file} missing)")
        return 0
    state = json.loads(state_file.read_text())
    pids = state["pids"]
    for pid in reversed(pids):
        _stop_group(pid)
    print(f"stopped {len(pids)} processes")
    if state.get("node") is not None:
        for line in node_teardown(workdir, state["node"]):
            print(line)
        print(f"removed node network spin-node-{state['node']}")
    state_file.unlink()
    return 0


def _stop_group(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our own child (a test calling cmd_down): a zombie still counts
                # as a member of its process group.
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "build"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="work directory (default: target/cluster)")
    parser.add_argument("--node", action="store_true", help="up: also run a node (kubelet, containerd, kube-proxy)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build_binaries())
            return 0
        return cmd_up(args.dir, args.node) if args.command == "up" else cmd_down(args.dir)
    except (ClusterError, NodeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
