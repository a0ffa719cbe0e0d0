"""Every rendered manifest is a valid object for current Kubernetes versions.

Built-in kinds are checked against the official OpenAPI schemas (kubernetes-validate, strict:
unknown fields fail). Kinds defined by CRDs have no schema there and are listed explicitly:
our own SpinAppExecutor is checked against our CRD's schema, cert-manager and Prometheus
Operator objects structurally.
"""

from __future__ import annotations

from typing import Any, Callable

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from conftest import CHART, NAMESPACE, REPO, by_kind, render

# The oldest Kubernetes release the chart targets and the newest the validator knows.
KUBE_VERSIONS = ["1.33.0", latest_version()]


def crd_schema(kind: str) -> dict[str, Any]:
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
            return version["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind}")


def check_spinappexecutor(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "core.spinkube.dev/v1alpha1"
    jsonschema.validate(doc, crd_schema("SpinAppExecutor"))


def check_issuer(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "cert-manager.io/v1"
    assert doc["spec"] == {"selfSigned": {}} or set(doc["spec"]) == {"ca"} and doc["spec"]["ca"]["secretName"]


def check_certificate(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "cert-manager.io/v1"
    spec = doc["spec"]
    assert spec["secretName"] and spec["commonName"] and spec["issuerRef"]["name"]
    assert spec["issuerRef"]["kind"]
    if spec.get("isCA"):
        assert "dnsNames" not in spec
    else:
        assert spec["dnsNames"] and "server auth" in spec["usages"]
        assert spec["privateKey"]["rotationPolicy"] == "Always"


def check_servicemonitor(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec = doc["spec"]
    assert spec["selector"]["matchLabels"]
    assert [e["path"] for e in spec["endpoints"]] == ["/metrics"]
    assert all(e["port"] for e in spec["endpoints"])


def check_prometheusrule(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["expr"] and rule["labels"]["severity"]
            assert all(isinstance(v, str) for v in {**rule["labels"], **rule["annotations"]}.values()), rule


CRD_KINDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "PrometheusRule": check_prometheusrule,
    "SpinAppExecutor": check_spinappexecutor,
    "Issuer": check_issuer,
    "Certificate": check_certificate,
    "ServiceMonitor": check_servicemonitor,
}


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in CRD_KINDS:
        CRD_KINDS[doc["kind"]](doc)
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_manifest_is_valid(scenario: tuple[str, dict[str, Any]]) -> None:
    _, values = scenario
    docs = render(values)
    assert docs
    for doc in docs:
        validate(doc)


def test_validator_catches_a_broken_manifest() -> None:
    # Guards the test above: strict validation must reject unknown fields and wrong types.
    (deployment,) = by_kind(render(), "Deployment")
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    (executor,) = by_kind(render({"defaultExecutor": {"enabled": True}}), "SpinAppExecutor")
    executor["spec"]["createDeployment"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        validate(executor)


def test_unknown_kinds_are_not_silently_skipped() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_namespaced_objects_live_in_the_release_namespace(scenario: tuple[str, dict[str, Any]]) -> None:
    _, values = scenario
    cluster_scoped = {
        "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration", "RuntimeClass",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    }
    for doc in render(values):
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in doc["metadata"], doc["kind"]
        elif doc["kind"] == "SpinAppExecutor":
            assert doc["metadata"]["namespace"] in values["defaultExecutor"]["namespaces"]
        elif doc["kind"] in {"Role", "RoleBinding"} and doc["metadata"]["namespace"] != NAMESPACE:
            # watchNamespaces: the operator's grants in each watched namespace.
            assert doc["metadata"]["namespace"] in values["watchNamespaces"], doc["metadata"]
            assert doc["metadata"]["name"].endswith("-watched")
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


def test_crds_are_valid_and_rendered_only_from_crds_dir() -> None:
    crd_files = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert crd_files == ["core.spinkube.dev_spinappexecutors.yaml", "core.spinkube.dev_spinapps.yaml"]
    for name in crd_files:
        crd = yaml.safe_load((CHART / "crds" / name).read_text())
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(crd, version, strict=True)
    # Templates never carry CRDs, so `helm install --skip-crds` (CRDs managed elsewhere) leaves
    # a complete, valid operator install.
    assert by_kind(render(), "CustomResourceDefinition") == []


def test_long_release_names_still_give_valid_names() -> None:
    name = "a-very-long-release-name-for-the-spin-operator-xyz"
    docs = render({}, name=name)
    for doc in docs:
        if doc["kind"] == "Service":
            assert len(doc["metadata"]["name"]) <= 63
        for version in KUBE_VERSIONS[:1]:
            if doc["kind"] not in CRD_KINDS:
                kubernetes_validate.validate(doc, version, strict=True)
