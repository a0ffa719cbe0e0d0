"""RBAC equals the permission list kept in the Rust code (files/permissions.json), nothing more."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import CHART, NAMESPACE, SCENARIOS, by_kind, one, operator_container, render

PERMISSIONS: dict[str, list[dict[str, Any]]] = json.loads((CHART / "files" / "permissions.json").read_text())
KNOWN_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
Grants = dict[tuple[str, str, tuple[str, ...]], set[str]]


def parts_in_use(values: dict[str, Any]) -> set[str]:
    webhooks = values.get("webhooks", {}).get("enabled", True)
    self_signed = (
        webhooks
        and not values.get("tls", {}).get("existingSecret")
        and not values.get("certManager", {}).get("enabled", True)
    )
    existing = webhooks and bool(values.get("tls", {}).get("existingSecret"))
    parts = {"webhooks"} if webhooks else set()
    if webhooks and not self_signed:
        parts.add("ca-bundle-readiness")
    if existing:
        parts.add("ca-bundle-secret")
    if webhooks and values.get("webhooks", {}).get("watchReferences", True):
        parts.add("webhook-references")
        if values.get("webhooks", {}).get("secretExistenceWarnings", True):
            parts.add("webhook-secret-references")
    if values.get("controllers", {}).get("enabled", True):
        parts.add("controllers")
    if self_signed:
        parts.add("self-signed")
    if values.get("metrics", {}).get("auth", {}).get("enabled", False):
        parts.add("metrics-auth")
    return parts


# The operator's default names in files/permissions.json; the chart grants the release's names.
DEFAULT_NAMES = {
    "spin-operator-leader": ("Lease", "-leader"),
    "spin-operator-webhook-cert": ("Secret", "-webhook-cert"),
    "spin-operator-mutating-webhook-configuration": ("MutatingWebhookConfiguration", "-mutating-webhook-configuration"),
    "spin-operator-validating-webhook-configuration": ("ValidatingWebhookConfiguration", "-validating-webhook-configuration"),
}


def release_names(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Default name -> the name of the rendered object (the Deployment's name is the prefix)."""
    prefix = one(docs, "Deployment")["metadata"]["name"]
    return {default: prefix + suffix for default, (_, suffix) in DEFAULT_NAMES.items()}


def expected(values: dict[str, Any], scope: str, names: dict[str, str] | None = None) -> Grants:
    """(group, resource, resourceNames) -> verbs, over the permission lists of the parts in use.
    "watched" permissions are cluster-wide unless watchNamespaces is set."""
    grants: Grants = {}
    watched_scope = "watched" if values.get("watchNamespaces") else "cluster"
    for part in parts_in_use(values):
        for p in PERMISSIONS[part]:
            if (watched_scope if p["scope"] == "watched" else p["scope"]) == scope:
                resource_names = tuple((names or {}).get(n, n) for n in p.get("resourceNames", []))
                key = (p["group"], p["resource"], resource_names)
                grants.setdefault(key, set()).update(p["verbs"])
    return grants


def rendered(docs: list[dict[str, Any]], kind: str, namespace: str | None = NAMESPACE) -> Grants:
    """Grants of the ClusterRole, or of the Roles in `namespace` (the release namespace by default)."""
    grants: Grants = {}
    for role in by_kind(docs, kind):
        if kind == "Role" and role["metadata"]["namespace"] != namespace:
            continue
        if role["metadata"]["name"].endswith("-metrics-reader"):
            continue  # for scrapers, not the operator (test_metrics_auth_*)
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    key = (group, resource, tuple(rule.get("resourceNames", [])))
                    assert key not in grants, f"{key} granted by two rules"
                    grants[key] = set(rule["verbs"])
    return grants


def test_permission_lists_are_well_formed() -> None:
    assert sorted(PERMISSIONS) == ["ca-bundle-readiness", "ca-bundle-secret", "controllers", "metrics-auth", "self-signed",
                                   "webhook-references", "webhook-secret-references", "webhooks"]
    for part, permissions in PERMISSIONS.items():
        assert permissions, part
        for p in permissions:
            assert set(p) <= {"group", "resource", "verbs", "scope", "reason", "resourceNames"}, p
            assert p["scope"] in {"cluster", "namespace", "watched"}
            assert p["verbs"] and set(p["verbs"]) <= KNOWN_VERBS, p
            assert "*" not in (p["group"], p["resource"], *p["verbs"]), p
            assert p["reason"], p


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rendered_rbac_equals_the_permission_lists(name: str) -> None:
    values = SCENARIOS[name]
    docs = render(values)
    assert rendered(docs, "ClusterRole") == expected(values, "cluster", release_names(docs))
    assert rendered(docs, "Role") == expected(values, "namespace", release_names(docs))
    for ns in values.get("watchNamespaces", []):
        assert rendered(docs, "Role", ns) == expected(values, "watched")


def test_every_resource_name_is_one_the_chart_maps() -> None:
    named = {n for permissions in PERMISSIONS.values() for p in permissions for n in p.get("resourceNames", [])}
    assert named == set(DEFAULT_NAMES)


@pytest.mark.parametrize("release,overrides", [("spin-operator", {}), ("other", {}), ("other", {"fullnameOverride": "spin"}), ("spin-operator-prod", {})])
def test_self_signed_rbac_names_the_objects_of_the_release(release: str, overrides: dict[str, Any]) -> None:
    # Whatever the release name, the named grants are exactly the objects the operator is told
    # to manage (its run flags) and that the chart renders.
    docs = render({**SCENARIOS["self-signed"], **overrides}, name=release)
    args = dict(a.removeprefix("--").split("=", 1) for a in operator_container(docs)["args"] if "=" in a)
    cluster, namespaced = rendered(docs, "ClusterRole"), rendered(docs, "Role")
    for kind, flag in (("MutatingWebhookConfiguration", "mutating-webhook-configuration"), ("ValidatingWebhookConfiguration", "validating-webhook-configuration")):
        name = one(docs, kind)["metadata"]["name"]
        assert args[flag] == name
        assert cluster[("admissionregistration.k8s.io", kind.lower() + "s", (name,))] == {"get", "list", "watch", "patch"}
    secret = args["webhook-secret"]
    assert secret.startswith(one(docs, "Deployment")["metadata"]["name"])
    assert namespaced[("", "secrets", (secret,))] == {"get", "list", "watch", "update"}
    named = [key for key in {**cluster, **namespaced} if key[2]]
    lease = args["leader-election-lease"]
    assert sorted(n for key in named for n in key[2]) == sorted([secret, args["mutating-webhook-configuration"], args["validating-webhook-configuration"], lease])
    assert namespaced[("coordination.k8s.io", "leases", (lease,))] == {"get", "update"}
    assert namespaced[("coordination.k8s.io", "leases", ())] == {"create"}


def test_spinapp_finalizers_update_is_granted_with_the_controllers() -> None:
    # Children set blockOwnerDeletion (OwnerReferencesPermissionEnforcement needs this grant).
    assert rendered(render(), "ClusterRole")[("core.spinkube.dev", "spinapps/finalizers", ())] == {"update"}
    assert ("core.spinkube.dev", "spinapps/finalizers", ()) not in rendered(render(SCENARIOS["webhooks-only"]), "ClusterRole")


def test_self_signed_webhooks_only_can_elect_a_certificate_writer() -> None:
    # With the controllers off, `run --self-signed` still elects one replica to write the Secret.
    docs = render({**SCENARIOS["self-signed"], **SCENARIOS["webhooks-only"]})
    grants = rendered(docs, "Role")
    assert grants[("coordination.k8s.io", "leases", ("spin-operator-leader",))] == {"get", "update"}
    assert grants[("coordination.k8s.io", "leases", ())] == {"create"}


def test_no_role_grants_write_access_beyond_the_code() -> None:
    # Spot checks of least privilege that a wrong permission list would break loudly.
    cluster = rendered(render(), "ClusterRole")
    assert ("", "secrets", ()) in cluster and "update" not in cluster[("", "secrets", ())]
    # cert-manager writes caBundle: the operator only reads the two configurations, by name.
    assert {(r, names): verbs for group, r, names in cluster if group == "admissionregistration.k8s.io"
            for verbs in [cluster[(group, r, names)]]} == {
        ("mutatingwebhookconfigurations", ("spin-operator-mutating-webhook-configuration",)): {"get", "list", "watch"},
        ("validatingwebhookconfigurations", ("spin-operator-validating-webhook-configuration",)): {"get", "list", "watch"},
    }
    assert not any(resource == "leases" for _, resource, _ in cluster)


def test_leases_are_namespaced_and_bound_to_the_operator() -> None:
    docs = render()
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert ("coordination.k8s.io", "leases", ()) in rendered(docs, "Role")
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    pod_sa = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert pod_sa == sa
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(docs, kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": one(docs, role_kind)["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_self_signed_adds_only_its_own_permissions() -> None:
    docs = render(SCENARIOS["self-signed"])
    cluster, namespaced = rendered(docs, "ClusterRole"), rendered(docs, "Role")
    assert cluster[("admissionregistration.k8s.io", "mutatingwebhookconfigurations", (one(docs, "MutatingWebhookConfiguration")["metadata"]["name"],))] == {"get", "list", "watch", "patch"}
    assert cluster[("admissionregistration.k8s.io", "validatingwebhookconfigurations", (one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"],))] == {"get", "list", "watch", "patch"}
    # list/watch by name: the operator watches these three objects with a metadata.name field selector.
    assert namespaced[("", "secrets", ("spin-operator-webhook-cert",))] == {"get", "list", "watch", "update"}
    # Beyond cert-manager mode's: only patch on the same two configurations.
    default = rendered(render(), "ClusterRole")
    assert set(cluster) == set(default)
    assert {k: cluster[k] - default[k] for k in cluster if cluster[k] != default[k]} == {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", ("spin-operator-mutating-webhook-configuration",)): {"patch"},
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", ("spin-operator-validating-webhook-configuration",)): {"patch"},
    }


def test_existing_secret_may_patch_the_ca_bundle_and_elect_a_writer() -> None:
    docs = render(SCENARIOS["existing-secret"])
    cluster, namespaced = rendered(docs, "ClusterRole"), rendered(docs, "Role")
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        name = one(docs, kind)["metadata"]["name"]
        assert cluster[("admissionregistration.k8s.io", kind.lower() + "s", (name,))] == {"get", "list", "watch", "patch"}
    # No Secret of its own to write: the user's Secret is only mounted.
    assert not [k for k in namespaced if k[1] == "secrets"]
    webhooks_only = rendered(render({**SCENARIOS["existing-secret"], **SCENARIOS["webhooks-only"]}), "Role")
    assert webhooks_only[("coordination.k8s.io", "leases", ("spin-operator-leader",))] == {"get", "update"}


def test_rbac_off_renders_no_roles() -> None:
    docs = render({"rbac": {"create": False}})
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]


def test_service_account_off_uses_the_named_account() -> None:
    docs = render({"serviceAccount": {"create": False, "name": "ops-sa"}})
    assert by_kind(docs, "ServiceAccount") == []
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "ops-sa"


WATCHED = ["team-b", "team-a"]


def test_permissions_on_namespaced_objects_follow_the_watched_namespaces() -> None:
    # Everything the operator reads or writes in app namespaces is "watched"; only the webhook
    # configurations (cluster-scoped objects) are "cluster".
    for part, permissions in PERMISSIONS.items():
        for p in permissions:
            if p["scope"] == "cluster":
                assert p["group"] == "admissionregistration.k8s.io" or part == "metrics-auth", (part, p)
            if p["group"] == "coordination.k8s.io":
                assert p["scope"] == "namespace", (part, p)


@pytest.mark.parametrize("extra", [{}, {"certManager": {"enabled": False}}, {"controllers": {"enabled": False}}])
def test_watch_namespaces_grants_roles_per_namespace_and_nothing_cluster_wide(extra: dict[str, Any]) -> None:
    values = {**extra, "watchNamespaces": WATCHED}
    docs = render(values)
    cluster = rendered(docs, "ClusterRole")
    # No cluster-wide read of Secrets (nor of anything in app namespaces).
    assert not any(resource in {"secrets", "configmaps", "spinapps", "spinappexecutors", "deployments", "services", "events"} for _, resource, _ in cluster), cluster
    assert set(cluster) <= {
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", (one(docs, "MutatingWebhookConfiguration")["metadata"]["name"],)),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", (one(docs, "ValidatingWebhookConfiguration")["metadata"]["name"],)),
    }
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    for ns in WATCHED:
        roles = [r for r in by_kind(docs, "Role") if r["metadata"]["namespace"] == ns]
        bindings = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == ns]
        assert len(roles) == 1 and len(bindings) == 1, ns
        assert bindings[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0]["metadata"]["name"]}
        assert bindings[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        grants = rendered(docs, "Role", ns)
        assert grants == expected(values, "watched")
        assert {"list", "watch"} <= grants[("", "secrets", ())]
    # The leader Lease stays in the release namespace.
    if values.get("controllers", {}).get("enabled", True):
        assert ("coordination.k8s.io", "leases", ()) in rendered(docs, "Role")
    assert {r["metadata"]["namespace"] for r in by_kind(docs, "Role")} <= {NAMESPACE, *WATCHED}


def test_watch_namespaces_roles_are_the_cluster_grants_of_the_default() -> None:
    # The same permissions, only moved from the ClusterRole into each namespace.
    default = rendered(render(), "ClusterRole")
    docs = render({"watchNamespaces": WATCHED})
    cluster = rendered(docs, "ClusterRole")
    assert rendered(docs, "Role", "team-a") == {k: v for k, v in default.items() if k not in cluster}
    # Left cluster-wide: reading the two (cluster-scoped) webhook configurations, by name.
    assert {resource for _, resource, _ in cluster} == {"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}


def test_watch_namespace_in_the_release_namespace_keeps_both_roles_apart() -> None:
    docs = render({"watchNamespaces": [NAMESPACE]})
    names = sorted(r["metadata"]["name"] for r in by_kind(docs, "Role"))
    assert len(names) == 2 and len(set(names)) == 2, names
    grants = rendered(docs, "Role")
    assert ("coordination.k8s.io", "leases", ()) in grants and ("", "secrets", ()) in grants


METRICS_AUTH = {"metrics": {"auth": {"enabled": True}}}


@pytest.mark.parametrize("extra", [{}, {"watchNamespaces": WATCHED}, SCENARIOS["webhooks-only"]])
def test_metrics_auth_grants_reviews_and_provides_the_reader_role_only_when_on(extra: dict[str, Any]) -> None:
    reviews = {("authentication.k8s.io", "tokenreviews", ()): {"create"}, ("authorization.k8s.io", "subjectaccessreviews", ()): {"create"}}
    off = render(extra)
    assert not set(reviews) & set(rendered(off, "ClusterRole"))
    assert not [r for r in by_kind(off, "ClusterRole") if r["metadata"]["name"].endswith("-metrics-reader")]
    assert "--metrics-auth" not in operator_container(off)["args"]

    on = render({**extra, **METRICS_AUTH})
    cluster = rendered(on, "ClusterRole")
    assert {k: cluster[k] for k in reviews} == reviews
    assert set(cluster) - set(rendered(off, "ClusterRole")) == set(reviews)
    assert "--metrics-auth" in operator_container(on)["args"]
    (reader,) = [r for r in by_kind(on, "ClusterRole") if r["metadata"]["name"].endswith("-metrics-reader")]
    assert reader["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    # Nothing binds it to the operator: it is for scrapers.
    assert all(b["roleRef"]["name"] != reader["metadata"]["name"] for b in by_kind(on, "ClusterRoleBinding"))


def test_metrics_auth_makes_the_service_monitor_send_a_token() -> None:
    monitor = {"metrics": {"serviceMonitor": {"enabled": True}}}
    (endpoint,) = one(render(monitor), "ServiceMonitor")["spec"]["endpoints"]
    assert "bearerTokenFile" not in endpoint
    (endpoint,) = one(render({"metrics": {"serviceMonitor": {"enabled": True}, "auth": {"enabled": True}}}), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.mark.parametrize("release", ["spin-operator", "tenant-a"])
def test_the_lease_is_read_and_renewed_only_by_its_name(release: str) -> None:
    # get/update are limited to the release's Lease (the one `run` is told to use); create cannot
    # be limited by name in RBAC, so it is the only unnamed lease grant.
    docs = render(name=release)
    (lease,) = [a.removeprefix("--leader-election-lease=") for a in operator_container(docs)["args"]
                if a.startswith("--leader-election-lease=")]
    leases = {key: verbs for key, verbs in rendered(docs, "Role").items() if key[1] == "leases"}
    assert leases == {("coordination.k8s.io", "leases", (lease,)): {"get", "update"},
                      ("coordination.k8s.io", "leases", ()): {"create"}}


def test_hiding_secret_existence_drops_the_webhooks_secret_watch() -> None:
    hidden = {"webhooks": {"secretExistenceWarnings": False}, "controllers": {"enabled": False}}
    docs = render(hidden)
    assert "--hide-secret-existence" in operator_container(docs)["args"]
    cluster = rendered(docs, "ClusterRole")
    assert ("", "secrets", ()) not in cluster, cluster
    assert cluster[("", "configmaps", ())] == {"list", "watch"}
    shown = rendered(render({"controllers": {"enabled": False}}), "ClusterRole")
    assert shown[("", "secrets", ())] == {"list", "watch"}
    assert "--hide-secret-existence" not in operator_container(render())["args"]
