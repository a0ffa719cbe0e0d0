"""RBAC equals the permission list kept in the Rust code (files/permissions.json), nothing more."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import CHART, NAMESPACE, SCENARIOS, by_kind, one, render

PERMISSIONS = json.loads((CHART / "files" / "permissions.json").read_text())
KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}


def parts_in_use(values: dict[str, Any]) -> set[str]:
    controllers = values.get("controllers", {}).get("enabled", True)
    webhooks = values.get("webhooks", {}).get("enabled", True)
    self_signed = (
        webhooks
        and not values.get("tls", {}).get("existingSecret")
        and not values.get("certManager", {}).get("enabled", True)
    )
    parts = set()
    if controllers:
        parts.add("controllers")
        if values.get("leaderElection", {}).get("enabled", True):
            parts.add("leader-election")
    if webhooks:
        parts.add("webhooks")
    if self_signed:
        parts.add("self-signed")
    return parts


def normalize(rule: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(tuple(sorted(rule.get(k, []))) for k in ("apiGroups", "resources", "verbs", "resourceNames"))


def expected_rules(values: dict[str, Any], scope: str) -> list[tuple[Any, ...]]:
    parts = parts_in_use(values)
    return sorted(normalize(p) for p in PERMISSIONS if p["scope"] == scope and p["for"] in parts)


def rendered_rules(docs: list[dict[str, Any]], kind: str) -> list[tuple[Any, ...]]:
    return sorted(normalize(r) for role in by_kind(docs, kind) for r in role["rules"])


def test_permission_list_is_well_formed() -> None:
    assert PERMISSIONS
    for p in PERMISSIONS:
        assert set(p) <= {"scope", "for", "apiGroups", "resources", "verbs", "resourceNames"}, p
        assert p["scope"] in {"cluster", "namespace"}
        assert p["for"] in {"controllers", "webhooks", "leader-election", "self-signed"}
        assert p["verbs"] and set(p["verbs"]) <= KNOWN_VERBS, p
        assert "*" not in p["resources"] + p["apiGroups"] + p["verbs"], p


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rendered_rbac_equals_the_permission_list(name: str) -> None:
    values = SCENARIOS[name]
    docs = render(values)
    assert rendered_rules(docs, "ClusterRole") == expected_rules(values, "cluster")
    assert rendered_rules(docs, "Role") == expected_rules(values, "namespace")


def test_leases_are_namespaced_and_bound_to_the_operator() -> None:
    docs = render()
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert ("coordination.k8s.io",) in [normalize(r)[0] for r in role["rules"]]
    assert all("leases" not in r["resources"] for r in one(docs, "ClusterRole")["rules"])
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    pod_sa = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert pod_sa == sa
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(docs, kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": one(docs, role_kind)["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_self_signed_adds_only_its_own_permissions() -> None:
    default = render()
    self_signed = render(SCENARIOS["self-signed"])
    extra = set(rendered_rules(self_signed, "ClusterRole") + rendered_rules(self_signed, "Role")) - set(
        rendered_rules(default, "ClusterRole") + rendered_rules(default, "Role")
    )
    assert extra == {normalize(p) for p in PERMISSIONS if p["for"] == "self-signed"}
    assert extra, "self-signed mode needs permissions for its Secret and the webhook configurations"


def test_rbac_off_renders_no_roles() -> None:
    docs = render({"rbac": {"create": False}})
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]


def test_service_account_off_uses_the_named_account() -> None:
    docs = render({"serviceAccount": {"create": False, "name": "ops-sa"}})
    assert by_kind(docs, "ServiceAccount") == []
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "ops-sa"
