"""The chart under the longest release and namespace names, self-signed mode:
the operator runs with the chart's own arguments and ServiceAccount, so it can only work if the
names the chart derives (Secret, webhook configurations, Service) and its RBAC resourceNames
agree with each other and with the code.

A local process on a control plane of its own, not pods: the chart's cluster-scoped objects (CRDs,
webhook configurations) allow one release per cluster, so other names need another cluster, and a
second node for one test would cost a node start; the process runs with exactly the arguments and
ServiceAccount the chart gives its pods, which is what the names must agree with."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from conftest import apply, new_namespace, spinapp, wait_for
from controlplane import ControlPlane, chart_operator, free_port, install_chart, start_operator, wait_for_webhooks

# The longest release name Helm accepts (53) and the longest namespace name (63): the self-signed
# certificate's <service>.<namespace>.svc is then over the 64-byte commonName limit, so it has no
# commonName and the API server verifies it by its dNSNames.
RELEASE, NAMESPACE = ("tenant-ops-" + "r" * 53)[:53], ("platform-" + "n" * 63)[:63]
# The chart's object prefix: cut at 55 characters.
FULLNAME = f"{RELEASE}-spin-operator"[:55].rstrip("-")


@pytest.fixture(scope="module")
def renamed(bin_dir, tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("cluster-renamed"), bin_dir).start()
    try:
        port = free_port()
        install_chart(cp, port, {"certManager": {"enabled": False}}, release=RELEASE, namespace=NAMESPACE)
        args, service_account = chart_operator(cp, NAMESPACE)
        op = start_operator(cp, "renamed", port, args, namespace=NAMESPACE, service_account=service_account)
        yield cp, op, args
    finally:
        cp.stop()


def test_self_signed_mode_works_under_another_release_name(renamed):
    cp, op, args = renamed
    fullname = FULLNAME
    assert f"--webhook-secret={fullname}-webhook-cert" in args, args
    wait_for_webhooks(cp)
    secret = cp.get_json("secret", f"{fullname}-webhook-cert", "-n", NAMESPACE)
    ca = secret["data"]["ca.crt"]
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        prefix = "mutating" if kind.startswith("mutating") else "validating"
        cfg = cp.get_json(kind, f"{fullname}-{prefix}-webhook-configuration")
        assert {w["clientConfig"]["caBundle"] for w in cfg["webhooks"]} == {ca}
        assert {w["clientConfig"]["service"]["namespace"] for w in cfg["webhooks"]} == {NAMESPACE}
    assert b"BEGIN CERTIFICATE" in base64.b64decode(ca)
    # <service>.<namespace>.svc is over 64 bytes: no commonName, every name in the dNSNames.
    assert len(f"{fullname}-webhook.{NAMESPACE}.svc") > 64
    cert = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"],
                          input=base64.b64decode(secret["data"]["tls.crt"]), capture_output=True, check=True).stdout
    assert b"CN" not in cert.split(b"\n")[0], cert
    assert f"DNS:{fullname}-webhook.{NAMESPACE}.svc,".encode() in cert, cert

    ns = new_namespace(cp, "e2e-tenant")
    out = apply(cp, ns, spinapp("tenant-app", replicas=0), check=False)
    assert "spec.replicas: Invalid value: 0: must be greater than or equal to 1" in out.stderr, out.stderr
    apply(cp, ns, spinapp("tenant-app", replicas=1))
    wait_for(cp, "reconciled", "deployment", "tenant-app", ns, lambda o: True)
    lease = cp.get_json("lease", "-n", NAMESPACE)["items"]
    assert [(l["metadata"]["name"], l["spec"]["holderIdentity"]) for l in lease] == \
        [(f"{fullname}-leader", "renamed")], json.dumps(lease)[:500]
