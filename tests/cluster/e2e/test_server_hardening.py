"""The operator's servers on the real control plane, each through a second release of the chart
(its own namespace, ServiceAccount and RBAC; webhooks only for objects with the test's label, so
the session's operator and tests are untouched):

- shutdown: on SIGTERM /readyz turns 503 at once and admissions through the API server keep
  succeeding during the whole lame-duck period (zero failures), then the process exits cleanly;
- `metrics.auth.enabled`: /metrics answers 401 without a token, 403 to a ServiceAccount without
  the chart's metrics-reader ClusterRole and 200 with it (TokenReview + SubjectAccessReview by
  the real API server); probes stay open;
- `--client-ca-file`: the API server presents its client certificate (AdmissionConfiguration
  kubeconfig, see ControlPlane.webhook_client_cert), admissions succeed and the audit line marks
  the caller authenticated; a client without a certificate is not served.

On the local-process control plane (`local_cluster`, `local_operator`), not in pods: each test
sends the process signals, watches it exit and reads its /readyz and /metrics on loopback
ports it chose, with flags of its own; in pods none of that is the test's to control.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from conftest import new_namespace, spinapp
from controlplane import (
    ADMIN_TOKEN,
    ControlPlane,
    Operator,
    chart_operator,
    free_port,
    install_chart,
    start_operator,
    wait_until,
)

LABEL = "e2e.spinkube.dev/hardening"


@pytest.fixture(scope="module")
def cluster(local_cluster: ControlPlane) -> ControlPlane:
    return local_cluster


@pytest.fixture(scope="module")
def operator(local_operator: Operator) -> Operator:
    """The session's local release, whose cluster-scoped objects the second releases share."""
    return local_operator


@contextmanager
def release(cluster: ControlPlane, name: str, values: dict[str, Any]) -> Iterator[tuple[list[str], str, str, int]]:
    """A second release in namespace `<name>-op`: yields its run args, ServiceAccount, namespace
    and webhook port; uninstalled afterwards (its webhooks must not outlive the test)."""
    namespace = f"{name}-op"
    webhook_port = free_port()
    base = {
        "certManager": {"enabled": False},
        # Cluster-scoped and already owned by the session's release.
        "runtimeClass": {"enabled": False},
        "webhooks": {"objectSelector": {"matchLabels": {LABEL: name}}},
    }
    install_chart(cluster, webhook_port, {**base, **values}, release=name, namespace=namespace)
    try:
        args, service_account = chart_operator(cluster, namespace)
        yield args, service_account, namespace, webhook_port
    finally:
        cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False, timeout=120)


def admit(cluster: ControlPlane, namespace: str, label: str) -> tuple[bool, str]:
    """A dry-run create of a labelled SpinApp through the API server (and so its webhooks)."""
    app = spinapp(f"app-{uuid.uuid4().hex[:8]}", replicas=1)
    app["metadata"]["labels"] = {LABEL: label}
    req = urllib.request.Request(
        f"{cluster.server}/apis/core.spinkube.dev/v1alpha1/namespaces/{namespace}/spinapps?dryRun=All",
        data=json.dumps(app).encode(), method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    ctx.check_hostname = False
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status in (200, 201), str(resp.status)
    except urllib.error.HTTPError as e:
        return False, f"{e.code}: {e.read().decode(errors='replace')[:300]}"
    except OSError as e:
        return False, str(e)


def served_by(cluster: ControlPlane, namespace: str, label: str) -> None:
    """Until the API server reaches the release's webhooks (self-signed caBundle in place)."""
    wait_until(f"admissions through the {label} webhooks", lambda: admit(cluster, namespace, label)[0],
               timeout=90, interval=0.5)


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_sigterm_keeps_admissions_succeeding_through_the_lame_duck_period(cluster: ControlPlane, operator: Operator) -> None:
    apps = new_namespace(cluster, "e2e-lameduck")
    lame_duck = 8
    with release(cluster, "lameduck", {"controllers": {"enabled": False}}) as (args, sa, op_ns, port):
        op = start_operator(cluster, "lameduck", port,
                            [*args, f"--shutdown-lame-duck-seconds={lame_duck}"],
                            namespace=op_ns, service_account=sa)
        served_by(cluster, apps, "lameduck")

        results: list[tuple[float, bool, str]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                ok, detail = admit(cluster, apps, "lameduck")
                results.append((time.monotonic(), ok, detail))

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        time.sleep(1)
        signalled = time.monotonic()
        op.proc.popen.send_signal(signal.SIGTERM)
        wait_until("/readyz 503 after SIGTERM",
                   lambda: get(f"http://127.0.0.1:{op.health_port}/readyz")[0] == 503, timeout=5, interval=0.05)
        # Admissions through the lame-duck period, with a margin for a slow machine at its end.
        time.sleep(lame_duck - 2)
        stop.set()
        worker.join(timeout=60)
        window = [r for r in results if signalled <= r[0] <= signalled + lame_duck - 2]
        failed = [r for r in results if not r[1]]
        assert len(window) >= 5, f"too few admissions in the lame-duck period: {len(window)}"
        assert not failed, f"{len(failed)} of {len(results)} admissions failed, first: {failed[0][2]}"
        assert op.proc.alive(), "exited during the lame-duck period"

        op.proc.popen.wait(timeout=lame_duck + 30)
        assert op.proc.popen.returncode == 0, op.proc.tail()
        # The control: with the server gone, the same admissions fail, so the ones above did
        # go through this operator.
        ok, detail = admit(cluster, apps, "lameduck")
        assert not ok and "failed calling webhook" in detail, detail


def test_metrics_need_a_token_the_api_server_authorizes(cluster: ControlPlane, operator: Operator) -> None:
    values = {"webhooks": {"enabled": False}, "metrics": {"auth": {"enabled": True}}}
    with release(cluster, "metricsauth", values) as (args, sa, op_ns, _port):
        assert "--metrics-auth" in args, args
        # Metrics only: the session's operator reconciles.
        op = start_operator(cluster, "metricsauth", free_port(), [*args, "--disable-controllers"],
                            namespace=op_ns, service_account=sa)
        deployment = cluster.get_json("deployments", "-n", op_ns)["items"][0]["metadata"]["name"]
        reader = f"{deployment}-metrics-reader"
        assert cluster.get_json("clusterrole", reader)["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
        for account in ("scraper", "stranger"):
            cluster.kubectl("create", "serviceaccount", account, "-n", op_ns)
        cluster.kubectl("create", "clusterrolebinding", "e2e-metrics-scraper", f"--clusterrole={reader}",
                        f"--serviceaccount={op_ns}:scraper")
        try:
            token = {a: cluster.kubectl("create", "token", a, "-n", op_ns).stdout.strip() for a in ("scraper", "stranger")}
            url = f"http://127.0.0.1:{op.health_port}"
            assert get(f"{url}/metrics")[0] == 401
            assert get(f"{url}/metrics", "not-a-token")[0] == 401
            assert get(f"{url}/metrics", token["stranger"])[0] == 403
            status, body = get(f"{url}/metrics", token["scraper"])
            assert status == 200 and "# EOF" in body, (status, body[:200])
            # Cached decisions still tell the two apart.
            assert get(f"{url}/metrics", token["stranger"])[0] == 403
            assert get(f"{url}/metrics", token["scraper"])[0] == 200
            for probe in ("/healthz", "/readyz"):
                assert get(f"{url}{probe}")[0] == 200, probe
        finally:
            cluster.kubectl("delete", "clusterrolebinding", "e2e-metrics-scraper", check=False)
            op.proc.stop()


def test_with_a_client_ca_the_api_server_is_served_and_anonymous_clients_are_not(cluster: ControlPlane, operator: Operator) -> None:
    assert cluster.webhook_client_cert
    apps = new_namespace(cluster, "e2e-clientca")
    with release(cluster, "clientca", {"controllers": {"enabled": False}}) as (args, sa, op_ns, port):
        op = start_operator(cluster, "clientca", port, [*args, f"--client-ca-file={cluster.webhook_client_ca}"],
                            namespace=op_ns, service_account=sa)
        try:
            served_by(cluster, apps, "clientca")
            for _ in range(3):
                ok, detail = admit(cluster, apps, "clientca")
                assert ok, detail
            log = re.sub(r"\x1b\[[0-9;]*m", "", op.proc.log.read_text(errors="replace"))  # text format's colours
            decisions = [line for line in log.splitlines() if "admission decision" in line]
            assert decisions and all("caller_authenticated=true" in line for line in decisions), decisions[-3:]
            # A client without a certificate gets no answer (the handshake is refused).
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            req = urllib.request.Request(f"https://127.0.0.1:{port}/validate-core-spinkube-dev-v1alpha1-spinapp",
                                         data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                    raise AssertionError(f"served without a client certificate: {resp.status}")
            except urllib.error.HTTPError as e:
                raise AssertionError(f"served without a client certificate: {e.code}") from e
            except (ssl.SSLError, ConnectionError, urllib.error.URLError):
                pass
        finally:
            op.proc.stop()
