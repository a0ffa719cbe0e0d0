"""The ValidatingAdmissionPolicies (validatingAdmissionPolicy.enabled): off by default, and when
on, the generated policies (files/webhooks/validating-admission-policy.yaml) with release names,
the webhooks' scope (namespaces, watchNamespaces, objectSelector) and the configured binding
actions."""

from __future__ import annotations

import json

import helm_python as helm
import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, by_kind, chart, render

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


def webhook_scope(docs: list[dict]) -> tuple[dict, dict | None]:
    """The namespaceSelector and objectSelector of the webhooks (all of them share one)."""
    hooks = [w for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
             for d in by_kind(docs, kind) for w in d["webhooks"]]
    assert hooks
    scopes = {json.dumps([w["namespaceSelector"], w.get("objectSelector")], sort_keys=True) for w in hooks}
    assert len(scopes) == 1, scopes
    return tuple(json.loads(scopes.pop()))


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
        # The release namespace is excluded as from the webhooks.
        assert expressions[0]["values"] == ["kube-system", NAMESPACE, "flux-system"]
        assert expressions[1] == {"key": "tier", "operator": "NotIn", "values": ["system"]}


SCOPES = {
    "cluster-wide": {},
    "tenant": {"watchNamespaces": ["team-b", "team-a"]},
    "object-selector": {"webhooks": {"objectSelector": {"matchLabels": {"spin-operator/admit": "yes"}},
                                     "excludeNamespaces": ["flux-system"]}},
    "tenant-object-selector": {"watchNamespaces": ["team-a"],
                               "webhooks": {"objectSelector": {"matchExpressions": [
                                   {"key": "skip", "operator": "DoesNotExist"}]}}},
}


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_bindings_match_what_the_webhooks_match(scope: str) -> None:
    # A tenant install (watchNamespaces) or an objectSelector must not enforce the policies
    # beyond what its webhooks see: the bindings carry the webhooks' selectors.
    docs = render({"validatingAdmissionPolicy": {"enabled": True}, **SCOPES[scope]}, namespace="tenant-ops")
    namespace_selector, object_selector = webhook_scope(docs)
    bindings = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert len(bindings) == 2
    for binding in bindings:
        match = binding["spec"]["matchResources"]
        assert match["namespaceSelector"] == namespace_selector
        assert match.get("objectSelector") == object_selector
    for policy in by_kind(docs, "ValidatingAdmissionPolicy"):
        assert policy["spec"]["matchConstraints"]["namespaceSelector"] == namespace_selector
    names = namespace_selector["matchExpressions"]
    assert names[0] == {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                        "values": ["kube-system", "tenant-ops", *SCOPES[scope].get("webhooks", {}).get("excludeNamespaces", [])]}
    watched = SCOPES[scope].get("watchNamespaces")
    if watched:
        assert names[1] == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(watched)}
    else:
        assert all(e["operator"] != "In" for e in names)


@pytest.mark.parametrize(
    "actions",
    [[], ["Deny", "Warn"], ["Block"], ["Deny", "Deny"]],
)
def test_schema_rejects_bad_actions(actions: list[str]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart().validate_schema({"validatingAdmissionPolicy": {"enabled": True, "validationActions": actions}})
