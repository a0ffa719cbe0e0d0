"""Shared helpers for the chart tests: render the chart with the real Helm v4 SDK and parse it."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "spin-operator"
RELEASE = "spin-operator"
NAMESPACE = "spin-operator"

# Values for the certificate paths and switches the chart supports; every test that takes
# `scenario` runs against each of them.
CA_BUNDLE = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "self-signed": {"certManager": {"enabled": False}},
    "existing-secret": {"tls": {"existingSecret": "my-webhook-tls", "caBundle": CA_BUNDLE}},
    "cert-manager-issuer": {"certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}},
    "webhooks-only": {"controllers": {"enabled": False}},
    "webhooks-only-no-reference-watch": {"controllers": {"enabled": False}, "webhooks": {"watchReferences": False}, "logFormat": "text"},
    "controllers-only": {"webhooks": {"enabled": False}},
    "single-replica": {"replicaCount": 1, "podDisruptionBudget": {"enabled": False}},
    "custom-release-name": {"fullnameOverride": "spin"},
    "admission-policy": {"validatingAdmissionPolicy": {"enabled": True, "validationActions": ["Warn", "Audit"]}},
    "watch-namespaces": {"watchNamespaces": ["team-b", "team-a"]},
    "everything-on": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "defaultExecutor": {"enabled": True, "namespaces": ["default", "apps"]},
        "runtimeClass": {"enabled": True, "nodeSelector": {"spin": "yes"}},
        "allowMissingExecutor": True,
        "webhooks": {
            "excludeNamespaces": ["flux-system"],
            "objectSelector": {"matchLabels": {"spin-operator/admit": "true"}},
            "namespaceSelectorExpressions": [{"key": "tier", "operator": "NotIn", "values": ["system"]}],
            "extraMatchConditions": [{"name": "not-dry-run", "expression": "!request.dryRun"}],
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"digest": "sha256:" + "a" * 64},
        "podDisruptionBudget": {"minAvailable": 1},
        "networkPolicy": {"enabled": True, "webhook": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}},
    },
    "observability": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "ruleLabels": {"team": "platform"}},
        },
    },
    "custom-ports": {
        "ports": {"webhook": 10443, "health": 9090},
        "metrics": {"service": {"port": 9091}},
        "webhooks": {"service": {"port": 8443}},
        "networkPolicy": {"enabled": True},
    },
}


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render_raw(values: dict[str, Any], namespace: str = NAMESPACE, name: str = RELEASE) -> dict[str, str]:
    return chart().render(values, name=name, namespace=namespace)


@functools.cache
def _render_cached(values_json: str, namespace: str, name: str) -> str:
    docs = []
    for template, text in sorted(render_raw(json.loads(values_json), namespace, name).items()):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return json.dumps(docs)


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE, name: str = RELEASE) -> list[dict[str, Any]]:
    """Rendered manifests as dicts (NOTES.txt left out); each call gets its own copy."""
    return json.loads(_render_cached(json.dumps(values or {}, sort_keys=True), namespace, name))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.fixture(params=sorted(SCENARIOS), ids=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, SCENARIOS[request.param]
