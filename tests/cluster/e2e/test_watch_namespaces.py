"""`watchNamespaces: [team-a]` on the real API server: the operator runs with the chart's own
arguments and ServiceAccount, so the chart's per-namespace Roles are all it may use (a cluster-wide
list or watch would be forbidden and the operator would never get ready). Apps in team-a are
defaulted and reconciled; apps in team-b never reach the webhooks and get no children.

A local process on a control plane of its own, not pods: a tenant install is a second release
with its own cluster-scoped objects, which need another cluster (a second node would cost a node
start); the process runs with exactly the chart's arguments and ServiceAccount."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES, apply, operator_requests, spinapp, wait_for, wait_for_executors
from controlplane import ControlPlane, chart_operator, free_port, install_chart, start_operator, wait_for_webhooks

RELEASE, NAMESPACE = "tenant-a-ops", "tenant-a-ops"
WATCHED, UNWATCHED = "team-a", "team-b"


@pytest.fixture(scope="module")
def tenant(bin_dir, tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("cluster-watch-ns"), bin_dir).start()
    try:
        # The chart's Roles live in the watched namespaces: they exist before the install.
        for ns in (WATCHED, UNWATCHED):
            cp.kubectl("create", "namespace", ns)
        port = free_port()
        install_chart(cp, port, {"certManager": {"enabled": False}, "watchNamespaces": [WATCHED]},
                      release=RELEASE, namespace=NAMESPACE)
        args, service_account = chart_operator(cp, NAMESPACE)
        op = start_operator(cp, "tenant", port, args, namespace=NAMESPACE, service_account=service_account)
        wait_for_webhooks(cp, WATCHED)
        for ns in (WATCHED, UNWATCHED):
            cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / "executors.yaml"))
        wait_for_executors(cp, WATCHED)
        yield cp, op, args, service_account
    finally:
        cp.stop()


def _bare_app(name: str) -> dict:
    """An app without executor and replicas: the defaulting webhook fills both when called."""
    app = spinapp(name)
    del app["spec"]["executor"]
    return app


def test_chart_passes_the_flag(tenant):
    _, _, args, _ = tenant
    assert f"--watch-namespaces={WATCHED}" in args, args


def test_watched_namespace_is_defaulted_and_reconciled(tenant):
    cp, _, _, _ = tenant
    out = apply(cp, WATCHED, _bare_app("in-a"))
    assert out.returncode == 0, out.stderr
    stored = cp.get_json("spinapp", "in-a", "-n", WATCHED)
    assert stored["spec"]["executor"] == "containerd-shim-spin", stored["spec"]
    assert stored["spec"]["replicas"] == 1, stored["spec"]
    wait_for(cp, "Deployment of in-a", "deployment", "in-a", WATCHED, lambda o: True)
    wait_for(cp, "Service of in-a", "service", "in-a", WATCHED, lambda o: True)


def test_unwatched_namespace_is_neither_admitted_nor_reconciled(tenant):
    cp, op, _, _ = tenant
    out = apply(cp, UNWATCHED, _bare_app("in-b"), spinapp("in-b-explicit", replicas=1))
    assert out.returncode == 0, out.stderr
    assert "Warning:" not in out.stderr
    assert cp.get_json("spinapp", "in-b", "-n", UNWATCHED)["spec"].get("executor", "") == ""
    # A later app in team-a converges: the operator has processed events since team-b's apps.
    apply(cp, WATCHED, spinapp("after-b", replicas=1))
    wait_for(cp, "Deployment of after-b", "deployment", "after-b", WATCHED, lambda o: True)
    for kind in ("deployments", "services", "secrets"):
        items = cp.get_json(kind, "-n", UNWATCHED)["items"]
        assert not [i["metadata"]["name"] for i in items if not i["metadata"]["name"].startswith("default-token")], kind
    assert "status" not in cp.get_json("spinapp", "in-b-explicit", "-n", UNWATCHED)
    # No request of the operator touched team-b, none was cluster-wide, none was forbidden.
    requests = operator_requests(cp, op)
    assert requests
    namespaced = {"spinapps", "spinappexecutors", "deployments", "services", "secrets", "configmaps", "events"}
    for e in requests:
        ref = e.get("objectRef", {})
        assert ref.get("namespace") != UNWATCHED, e
        assert e.get("responseStatus", {}).get("code") != 403, e
        if e["verb"] in {"list", "watch"} and ref.get("resource") in namespaced:
            # Besides team-a: only the self-signed certificate Secret, watched by name.
            by_name = ref.get("namespace") == NAMESPACE and "fieldSelector=metadata.name" in e["requestURI"]
            assert ref.get("namespace") == WATCHED or by_name, (e["verb"], e["requestURI"])


def test_service_account_cannot_read_secrets_cluster_wide(tenant):
    cp, _, _, service_account = tenant
    user = f"system:serviceaccount:{NAMESPACE}:{service_account}"

    def can_i(*args: str) -> str:
        return cp.kubectl("auth", "can-i", *args, f"--as={user}", check=False).stdout.strip()

    assert can_i("list", "secrets", "-A") == "no"
    assert can_i("list", "secrets", "-n", UNWATCHED) == "no"
    assert can_i("list", "spinapps.core.spinkube.dev", "-A") == "no"
    assert can_i("list", "secrets", "-n", WATCHED) == "yes"
    assert can_i("watch", "spinapps.core.spinkube.dev", "-n", WATCHED) == "yes"
