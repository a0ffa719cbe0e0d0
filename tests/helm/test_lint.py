"""`helm lint` (Helm v4 SDK) and values.schema.json."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import CHART, NAMESPACE, SCENARIOS, chart

WARNING = 2


def lint(values: dict[str, Any]) -> dict[str, Any]:
    return helm.lint(CHART, values, namespace=NAMESPACE, strict=True, kube_version="v1.33.0")


def findings(values: dict[str, Any]) -> list[Any]:
    """Lint errors and warnings (info such as "icon is recommended" is not a finding)."""
    report = lint(values)
    return report["errors"] + [m for m in report["messages"] if m["severity"] >= WARNING]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lint_has_no_warnings_or_errors(name: str) -> None:
    assert findings(SCENARIOS[name]) == []


def test_lint_reports_a_broken_value() -> None:
    # Guards the test above: lint must actually see schema violations.
    problems = findings({"webhooks": {"timeoutSeconds": 60}})
    assert any("timeoutSeconds" in str(p) for p in problems), problems


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in _leaf_paths(v, prefix + (k,))]
    return [prefix]


def test_schema_describes_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = []
    for path in _leaf_paths(values):
        node = schema
        for key in path:
            props = node.get("properties", {})
            if key not in props:
                # Free-form maps (annotations, resources, securityContext...) end the walk.
                if node.get("type") == "object" and node.get("additionalProperties", True) is not False:
                    break
                missing.append(".".join(path))
                break
            node = props[key]
    assert missing == []


def test_schema_rejects_typos_and_bad_values() -> None:
    bad = [
        {"replicaCount": 0},
        {"replicas": 2},
        {"webhooks": {"timeoutSeconds": 0}},
        {"webhooks": {"validating": {"failurePolicy": "fail"}}},
        {"tls": {"existingSecret": "mine", "caBundle": "not base64!"}},
        {"image": {"digest": "latest"}},
        {"certManager": {"issuerRef": {"name": "x", "kind": ""}}},
    ]
    for values in bad:
        with pytest.raises(helm.HelmValuesError):
            chart().validate_schema(values)


def test_schema_accepts_every_scenario() -> None:
    for values in SCENARIOS.values():
        chart().validate_schema(values)
