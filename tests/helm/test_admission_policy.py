"""The ValidatingAdmissionPolicies (validatingAdmissionPolicy.enabled): off by default, and when
on, the generated policies (files/webhooks/validating-admission-policy.yaml) with release names,
the webhooks' namespace exclusions and the configured binding actions."""

from __future__ import annotations

import helm_python as helm
import pytest
import yaml

from conftest import CHART, RELEASE, by_kind, chart, render

KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def generated() -> list[dict]:
    text = (CHART / "files" / "webhooks" / "validating-admission-policy.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def test_off_by_default() -> None:
    docs = render()
    assert [d for d in docs if d["kind"] in KINDS] == []


def test_policies_are_the_generated_ones_with_release_names() -> None:
    docs = render({"fullnameOverride": "spin", "validatingAdmissionPolicy": {"enabled": True}})
    policies = by_kind(docs, "ValidatingAdmissionPolicy")
    bindings = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    source = [d for d in generated() if d["kind"] == "ValidatingAdmissionPolicy"]
    assert [p["metadata"]["name"] for p in policies] == ["spin-spinapps", "spin-spinappexecutors"]
    assert [b["spec"]["policyName"] for b in bindings] == ["spin-spinapps", "spin-spinappexecutors"]
    for policy, want in zip(policies, source):
        assert policy["spec"]["validations"] == want["spec"]["validations"]
        assert policy["spec"]["matchConditions"] == want["spec"]["matchConditions"]
        assert policy["spec"]["failurePolicy"] == "Fail"
        rules = policy["spec"]["matchConstraints"]["resourceRules"]
        assert rules == want["spec"]["matchConstraints"]["resourceRules"]
        assert policy["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings)


def test_default_release_keeps_the_generated_names() -> None:
    docs = render({"validatingAdmissionPolicy": {"enabled": True}})
    names = [d["metadata"]["name"] for d in docs if d["kind"] in KINDS]
    want = [d["metadata"]["name"] for d in generated()]
    assert sorted(names) == sorted(want)


def test_actions_and_namespace_exclusions_come_from_values() -> None:
    docs = render(
        {
            "validatingAdmissionPolicy": {"enabled": True, "validationActions": ["Warn", "Audit"]},
            "webhooks": {
                "excludeNamespaces": ["flux-system"],
                "namespaceSelectorExpressions": [{"key": "tier", "operator": "NotIn", "values": ["system"]}],
            },
        }
    )
    for binding in by_kind(docs, "ValidatingAdmissionPolicyBinding"):
        assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
    for policy in by_kind(docs, "ValidatingAdmissionPolicy"):
        expressions = policy["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"]
        assert expressions[0]["values"] == ["kube-system", "flux-system"]
        assert expressions[1] == {"key": "tier", "operator": "NotIn", "values": ["system"]}


@pytest.mark.parametrize(
    "actions",
    [[], ["Deny", "Warn"], ["Block"], ["Deny", "Deny"]],
)
def test_schema_rejects_bad_actions(actions: list[str]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart().validate_schema({"validatingAdmissionPolicy": {"enabled": True, "validationActions": actions}})
