"""The three sources of the webhook serving certificate."""

from __future__ import annotations

import base64
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import CA_BUNDLE, NAMESPACE, RELEASE, REPO, SCENARIOS, by_kind, one, operator_container, render, render_raw

CERT_MANAGER_KINDS = {"Issuer", "Certificate", "ClusterIssuer"}
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def cert_volume(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-cert"]
    return volume


def cert_dir(docs: list[dict[str, Any]]) -> str:
    args = operator_container(docs)["args"]
    (arg,) = [a for a in args if a.startswith("--cert-dir=")]
    return arg.removeprefix("--cert-dir=")


def mounted_at(docs: list[dict[str, Any]], volume: str) -> str:
    (mount,) = [m for m in operator_container(docs)["volumeMounts"] if m["name"] == volume]
    return mount["mountPath"]


def webhooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [w for kind in WEBHOOK_KINDS for w in one(docs, kind)["webhooks"]]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_cert_manager_objects_only_when_cert_manager_is_used(name: str) -> None:
    values = SCENARIOS[name]
    docs = render(values)
    uses_cert_manager = (
        values.get("certManager", {}).get("enabled", True)
        and not values.get("tls", {}).get("existingSecret")
        and values.get("webhooks", {}).get("enabled", True)
    )
    assert bool(kinds(docs) & CERT_MANAGER_KINDS) == uses_cert_manager
    annotated = [d for d in docs if "cert-manager.io/inject-ca-from" in d["metadata"].get("annotations", {})]
    assert bool(annotated) == uses_cert_manager
    assert all(d["apiVersion"].split("/")[0] != "cert-manager.io" for d in docs) or uses_cert_manager


def cert_manager_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cert-manager objects without the chart's labels, in a stable order."""
    found = []
    for doc in docs:
        if doc["apiVersion"].startswith("cert-manager.io/"):
            doc["metadata"].pop("labels", None)
            found.append(doc)
    return sorted(found, key=lambda d: (d["kind"], d["metadata"]["name"]))


def certs_file(name: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((REPO / "certs" / name).read_text()) if d]
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


def test_cert_manager_objects_are_those_of_certs_dir() -> None:
    # With the default release name and namespace the chart renders exactly certs/cert-manager.yaml.
    assert cert_manager_objects(render()) == certs_file("cert-manager.yaml")


def test_existing_issuer_objects_are_those_of_certs_dir() -> None:
    docs = render({"certManager": {"issuerRef": {"name": "my-existing-issuer", "kind": "ClusterIssuer"}}})
    assert cert_manager_objects(docs) == certs_file("cert-manager-existing-issuer.yaml")
    # A non-default issuer group (external issuers) is passed on.
    docs = render({"certManager": {"issuerRef": {"name": "pca", "kind": "AWSPCAClusterIssuer", "group": "awspca.cert-manager.io"}}})
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {"kind": "AWSPCAClusterIssuer", "name": "pca", "group": "awspca.cert-manager.io"}


def test_cert_manager_path() -> None:
    docs = render()
    cert = [c for c in by_kind(docs, "Certificate") if not c["spec"].get("isCA")][0]
    service = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-webhook")][0]
    svc = service["metadata"]["name"]
    ca_issuer = [i for i in by_kind(docs, "Issuer") if "ca" in i["spec"]][0]
    assert cert["spec"]["issuerRef"] == {"name": ca_issuer["metadata"]["name"], "kind": "Issuer"}
    assert f"{svc}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    assert f"{svc}.{NAMESPACE}.svc.cluster.local" in cert["spec"]["dnsNames"]
    # The pod mounts the Secret cert-manager writes, where --cert-dir points.
    assert cert["spec"]["secretName"] == "spin-operator-webhook-cert"
    assert cert_volume(docs)["secret"]["secretName"] == cert["spec"]["secretName"]
    assert mounted_at(docs, "webhook-cert") == cert_dir(docs)
    assert "--self-signed" not in operator_container(docs)["args"]
    # The CA injector is pointed at that Certificate; no inline caBundle competes with it.
    for kind in WEBHOOK_KINDS:
        config = one(docs, kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{cert['metadata']['name']}"
    assert all("caBundle" not in w["clientConfig"] for w in webhooks(docs))


def test_cert_manager_with_an_existing_issuer_creates_no_issuer() -> None:
    docs = render(SCENARIOS["cert-manager-issuer"])
    assert by_kind(docs, "Issuer") == []
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def test_self_signed_path() -> None:
    docs = render(SCENARIOS["self-signed"])
    args = operator_container(docs)["args"]
    assert "--self-signed" in args
    # The operator keeps its certificate in the Secret and in memory and writes no file: no
    # certificate volume (writable or not) and no --cert-dir.
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "webhook-cert" not in {v["name"] for v in pod["volumes"]}
    assert "webhook-cert" not in {m["name"] for m in operator_container(docs)["volumeMounts"]}
    assert not [a for a in args if a.startswith("--cert-dir")], args
    assert all(m.get("readOnly") or m["name"] == "tmp" for m in operator_container(docs)["volumeMounts"])
    assert all("caBundle" not in w["clientConfig"] for w in webhooks(docs))


def ca_bundle_sources(docs: list[dict[str, Any]]) -> set[str]:
    return {one(docs, kind)["metadata"]["annotations"]["core.spinkube.dev/ca-bundle-source"] for kind in WEBHOOK_KINDS}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_mode_renders_a_ca_bundle_and_each_names_its_writer(name: str) -> None:
    # Helm 4 applies server-side: a caBundle in the chart would conflict with the writer that owns
    # it from another mode (the operator, or cert-manager's CA injector) on every mode switch.
    values = SCENARIOS[name]
    docs = render(values)
    if not values.get("webhooks", {}).get("enabled", True):
        return
    assert all("caBundle" not in w["clientConfig"] for w in webhooks(docs))
    mode = ("secret" if values.get("tls", {}).get("existingSecret")
            else "cert-manager" if values.get("certManager", {}).get("enabled", True) else "self-signed")
    assert ca_bundle_sources(docs) == {mode}
    args = operator_container(docs)["args"]
    # Ready only once caBundle verifies the served certificate, in every mode.
    assert ("--self-signed" in args) == (mode == "self-signed")
    assert ("--webhook-ca-bundle-readiness" in args) == (mode != "self-signed")
    assert bool([a for a in args if a.startswith("--ca-bundle-file=")]) == (mode == "secret")


def test_existing_secret_path() -> None:
    docs = render(SCENARIOS["existing-secret"])
    assert cert_volume(docs)["secret"]["secretName"] == "my-webhook-tls"
    assert mounted_at(docs, "webhook-cert") == cert_dir(docs)
    args = operator_container(docs)["args"]
    assert "--self-signed" not in args
    # tls.caBundle set: the operator writes it from a ConfigMap the chart renders.
    (config_map,) = by_kind(docs, "ConfigMap")
    assert config_map["data"]["ca.crt"].strip() == base64.b64decode(CA_BUNDLE).decode().strip()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-ca"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert f"--ca-bundle-file={mounted_at(docs, 'webhook-ca')}/ca.crt" in args


def test_existing_secret_without_a_ca_bundle_uses_the_secrets_ca() -> None:
    docs = render({"tls": {"existingSecret": "my-webhook-tls"}})
    assert f"--ca-bundle-file={cert_dir(docs)}/ca.crt" in operator_container(docs)["args"]
    assert by_kind(docs, "ConfigMap") == []
    assert "webhook-ca" not in {v["name"] for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_existing_secret_wins_over_cert_manager() -> None:
    docs = render({"tls": {"existingSecret": "mine", "caBundle": CA_BUNDLE}, "certManager": {"enabled": True}})
    assert not kinds(docs) & CERT_MANAGER_KINDS


@pytest.mark.parametrize("release,namespace", [("spin-operator", NAMESPACE), ("other", "ops"), ("team-a-spin", "team-a")])
def test_self_signed_works_under_any_release_name(release: str, namespace: str) -> None:
    docs = render({"certManager": {"enabled": False}}, name=release, namespace=namespace)
    args = operator_container(docs)["args"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in args if "=" in a)
    # The operator is told the names of the objects the chart renders, not left to its defaults.
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == flags["webhook-service"]]
    assert service["metadata"]["namespace"] == namespace
    assert {w["clientConfig"]["service"]["name"] for w in webhooks(docs)} == {flags["webhook-service"]}
    assert one(docs, "MutatingWebhookConfiguration")["metadata"]["name"] == flags["mutating-webhook-configuration"]
    assert one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"] == flags["validating-webhook-configuration"]
    assert flags["webhook-secret"] == one(docs, "Deployment")["metadata"]["name"] + "-webhook-cert"
    # The Secret lives in the pod's namespace, which the operator reads from POD_NAMESPACE.
    env = {e["name"]: e for e in operator_container(docs)["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    if release != "spin-operator":
        assert not any(v.startswith("spin-operator-") for v in flags.values())


def test_secret_and_domain_flags_only_in_self_signed_mode() -> None:
    for name in ("defaults", "existing-secret", "controllers-only"):
        args = operator_container(render(SCENARIOS[name]))["args"]
        assert not [a for a in args if a.startswith(("--webhook-secret", "--cluster-domain"))], name
    # Every mode reads the configurations the chart renders (readiness): their names are passed.
    for name in ("defaults", "existing-secret"):
        docs = render(SCENARIOS[name])
        flags = dict(a.removeprefix("--").split("=", 1) for a in operator_container(docs)["args"] if "=" in a)
        assert one(docs, "MutatingWebhookConfiguration")["metadata"]["name"] == flags["mutating-webhook-configuration"]
        assert one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"] == flags["validating-webhook-configuration"]


def serving_certificate(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cert,) = [c for c in by_kind(docs, "Certificate") if not c["spec"].get("isCA")]
    return cert


def test_kubernetes_cluster_domain_names_the_fully_qualified_service() -> None:
    custom = {"kubernetesClusterDomain": "corp.example"}
    cert = serving_certificate(render(custom))
    svc = f"{RELEASE}-webhook"
    assert cert["spec"]["dnsNames"][-1] == f"{svc}.{NAMESPACE}.svc.corp.example"
    assert not any(n.endswith("cluster.local") for n in cert["spec"]["dnsNames"])
    # The self-signed mode issues the same names: the operator gets the domain as a flag.
    args = operator_container(render({**custom, **SCENARIOS["self-signed"]}))["args"]
    assert "--cluster-domain=corp.example" in args
    assert "--cluster-domain=cluster.local" in operator_container(render(SCENARIOS["self-signed"]))["args"]
    # Only the self-signed mode issues certificates in the operator.
    assert not any(a.startswith("--cluster-domain") for a in operator_container(render(custom))["args"])
    for bad in ("Corp.Example", "corp..example", ".corp", "corp example"):
        with pytest.raises(Exception, match="kubernetesClusterDomain"):
            render_raw({"kubernetesClusterDomain": bad})


# The longest release name Helm accepts and the longest namespace name.
LONGEST_RELEASE = "r" * 53
LONGEST_NAMESPACE = "n" * 63


@pytest.mark.parametrize("release,namespace", [(RELEASE, NAMESPACE), (LONGEST_RELEASE, LONGEST_NAMESPACE),
                                               (LONGEST_RELEASE, "ns"), ("spin", LONGEST_NAMESPACE)])
def test_cert_manager_common_names_fit_in_64_bytes(release: str, namespace: str) -> None:
    # cert-manager refuses a Certificate whose commonName is over 64 bytes.
    docs = render(namespace=namespace, name=release)
    (svc,) = [s["metadata"]["name"] for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-webhook")]
    cert = serving_certificate(docs)
    short = f"{svc}.{namespace}.svc"
    # The dnsNames carry every name the API server may call, whatever their length.
    assert cert["spec"]["dnsNames"] == [svc, f"{svc}.{namespace}", short, f"{short}.cluster.local"]
    if len(short) <= 64:
        assert cert["spec"]["commonName"] == short
    else:
        assert "commonName" not in cert["spec"]
    (ca,) = [c for c in by_kind(docs, "Certificate") if c["spec"].get("isCA")]
    assert 0 < len(ca["spec"]["commonName"]) <= 64, ca["spec"]["commonName"]
    assert ca["spec"]["commonName"].endswith("-webhook-ca")
