"""Switching the certificate source with a plain `helm upgrade` (real Helm 4, which applies
server-side), in every direction: self-signed -> existingSecret -> cert-manager -> self-signed ->
cert-manager -> existingSecret -> self-signed.

A rollout is played the way the Deployment does it (maxSurge 1, maxUnavailable 0): the previous
mode's operator keeps running, and holding the leader Lease, while the new mode's operator starts;
the new one must become Ready on its own (its caBundle verifying what it serves) before the old one
stops. Each process serves its own port, and each upgrade points the webhook Service at the new
one (no node here: the chart's Service is an ExternalName to this machine).

Asserted on what the API server shows: the upgrade succeeds without --force-conflicts, Helm's
apply never owns caBundle (managedFields), every webhook's caBundle verifies the certificate the
new operator serves for the Service's name, the API server calls the webhooks, and the previous
mode's process wrote nothing to the webhook configurations after the upgrade (audit log, by its
token's credential id).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest

from conftest import wait_for_webhooks
from controlplane import OPERATOR_NAMESPACE, RELEASE, ControlPlane, chart_operator, free_port, install_chart, \
    start_operator, wait_until
from test_certmanager_and_leader import CertManagerStandIn, install_stand_in_crds, issue, openssl, project, \
    served_certificate
from test_steady_state import now_rfc3339

SERVICE_HOST = f"{RELEASE}-webhook.{OPERATOR_NAMESPACE}.svc"
CONFIGS = (("mutatingwebhookconfiguration", f"{RELEASE}-mutating-webhook-configuration"),
           ("validatingwebhookconfiguration", f"{RELEASE}-validating-webhook-configuration"))
SELF_SIGNED = {"certManager": {"enabled": False}}
EXISTING = {"certManager": {"enabled": False}, "tls": {"existingSecret": "own-cert"}}
CERT_MANAGER = {"certManager": {"enabled": True}}
CERT_MOUNT = "/var/run/spin-operator/certs"
SOURCE = {"self-signed": "self-signed", "existing": "secret", "cert-manager": "cert-manager"}
VALUES = {"self-signed": SELF_SIGNED, "existing": EXISTING, "cert-manager": CERT_MANAGER}


@pytest.fixture(scope="module")
def cp(bin_dir, tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("cluster-cert-switch"), bin_dir).start()
    try:
        install_stand_in_crds(cp)
        yield cp
    finally:
        cp.stop()


def credential_id(cp: ControlPlane, name: str) -> str:
    """The `jti` of the TokenRequest token operator `name` runs with, as the audit log names it."""
    token = json.loads((cp.workdir / f"operator-{name}.kubeconfig").read_text())["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    return "JTI=" + json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def config_writes(cp: ControlPlane, credential: str, since: str) -> list[str]:
    return [f"{e['verb']} {e['objectRef'].get('name')}" for e in cp.audit_events()
            if e["requestReceivedTimestamp"] >= since and e["verb"] in ("create", "update", "patch", "delete")
            and e["objectRef"].get("resource", "").endswith("webhookconfigurations")
            and credential in e.get("user", {}).get("extra", {}).get("authentication.kubernetes.io/credential-id", [])]


def bundle_verifies_server(bundle_pem: bytes, port: int) -> bool:
    """What the API server checks: the webhook's certificate chains to caBundle and names the Service."""
    ctx = ssl.create_default_context(cadata=bundle_pem.decode())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname=SERVICE_HOST):
                return True
    except ssl.SSLCertVerificationError:
        return False


def ca_bundle_owners(cfg: dict) -> set[tuple[str, str]]:
    """(manager, operation) of every managedFields entry that owns a webhook's caBundle."""
    owners = set()
    for entry in cfg["metadata"].get("managedFields", []):
        if '"f:caBundle"' in json.dumps(entry.get("fieldsV1", {})):
            owners.add((entry["manager"], entry["operation"]))
    return owners


class Switcher:
    def __init__(self, cp: ControlPlane, tmp):
        self.cp, self.tmp = cp, tmp
        self.cm = CertManagerStandIn(cp)
        self.step = 0
        self.op = None
        self.name = None
        self.mode = None
        # tls.existingSecret: a pair of our own CA, ca.crt in the Secret (no tls.caBundle).
        own_ca = tmp / "own-ca"
        own_ca.mkdir()
        openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-days", "2", "-subj", "/CN=own-ca", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", str(own_ca / "ca.key"), "-out", str(own_ca / "ca.crt"))
        self.own = issue(tmp, own_ca, [SERVICE_HOST, f"{SERVICE_HOST}.cluster.local"], "own")
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                  "metadata": {"name": "own-cert", "namespace": OPERATOR_NAMESPACE},
                  "data": {k: base64.b64encode(v).decode() for k, v in self.own.items()}}
        cp.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        cp.kubectl("apply", "-f", "-", input=json.dumps(secret))

    def switch_to(self, mode: str) -> None:
        cp = self.cp
        self.step += 1
        port = free_port()
        since = now_rfc3339()
        # The plain upgrade a platform engineer runs: no --force-conflicts, no manual step.
        install_chart(cp, port, VALUES[mode], upgrade=self.op is not None)
        args, service_account = chart_operator(cp)
        cert_dir = self.tmp / f"certs-{self.step}"
        cert_dir.mkdir()
        if mode == "existing":
            project(cert_dir, self.own)  # kubelet's Secret volume
        elif mode == "cert-manager":
            self.issued = self.cm.issue()
            project(cert_dir, self.issued)
        # The chart names the CA file at the Secret volume's mount path; here that is cert_dir.
        args = [a.replace(f"={CERT_MOUNT}/", f"={cert_dir}/") for a in args]
        name = f"{self.step}-{mode}"
        # The previous mode's process keeps running (and leading) while the new one starts.
        new = start_operator(cp, name, port, args, service_account=service_account, cert_dir=cert_dir,
                             wait_ready=False)
        if mode == "cert-manager":
            self.cm.inject_ca()
        wait_until(f"the {mode} operator Ready beside the previous one", new.ready, timeout=120, interval=0.3)
        if self.op is not None:
            self.op.proc.stop()
            assert config_writes(cp, credential_id(cp, self.name), since) == [], \
                f"the {self.mode} operator wrote after the switch to {mode}"
        self.op, self.name, self.mode = new, name, mode
        self.check()

    def check(self) -> None:
        cp, mode, port = self.cp, self.mode, self.op.webhook_port
        wait_for_webhooks(cp)
        writer = ("kubectl-patch", "Update") if mode == "cert-manager" else ("spin-operator", "Update")

        def expected() -> bytes:
            if mode == "existing":
                return self.own["ca.crt"]
            if mode == "cert-manager":
                return (self.cm.ca / "ca.crt").read_bytes()
            # Self-signed: the operator's CA (a pair left by the previous mode is served until the
            # new leader replaces it; its CA stays in the bundle until it expires).
            secret = cp.get_json("secret", f"{RELEASE}-webhook-cert", "-n", OPERATOR_NAMESPACE)
            return base64.b64decode(secret["data"]["ca.crt"])

        def published():
            for kind, name in CONFIGS:
                cfg = cp.get_json(kind, name, "--show-managed-fields")
                assert cfg["metadata"]["annotations"]["core.spinkube.dev/ca-bundle-source"] == SOURCE[mode]
                owners = ca_bundle_owners(cfg)
                assert not {o for o in owners if o[1] == "Apply"}, owners  # Helm's apply never owns it
                bundles = {w["clientConfig"].get("caBundle") for w in cfg["webhooks"]}
                if None in bundles or len(bundles) != 1 or owners != {writer}:
                    return False
                bundle = base64.b64decode(bundles.pop())
                # The mode's CA first; an operator writer keeps the CA it replaced beside it for
                # the rest of the rollout (the carry-over), cert-manager's injector does not.
                exact = mode == "cert-manager"
                if (bundle != expected() if exact else not bundle.startswith(expected())):
                    return False
                if not bundle_verifies_server(bundle, port):
                    return False
            return True

        wait_until(f"{mode}: every caBundle, written by {writer[0]}, verifying the served certificate", published,
                   timeout=90, interval=0.5)
        # The served certificate is the mode's own.
        leaf = served_certificate(port, SERVICE_HOST)
        if mode != "self-signed":
            pair = self.own if mode == "existing" else self.issued
            assert leaf == ssl.PEM_cert_to_DER_cert(pair["tls.crt"].decode())


def test_every_certificate_switch_works_with_a_plain_helm_upgrade(cp, tmp_path):
    switcher = Switcher(cp, tmp_path)
    switcher.switch_to("self-signed")
    for mode in ("existing", "cert-manager", "self-signed", "cert-manager", "existing", "self-signed"):
        switcher.switch_to(mode)
        print(f"switched to {mode}")
    history = json.loads(cp.helm("history", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
    assert [h["status"] for h in history][-1] == "deployed" and len(history) == 7, history
