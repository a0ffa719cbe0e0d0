"""Rendered webhook configurations: routes from the server's route table, safe defaults."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from conftest import NAMESPACE, REPO, SCENARIOS, by_kind, one, render

ROUTE_FILES = {
    "MutatingWebhookConfiguration": REPO / "webhooks" / "mutating-webhook-configuration.yaml",
    "ValidatingWebhookConfiguration": REPO / "webhooks" / "validating-webhook-configuration.yaml",
}


def routes(config: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What decides which requests reach which handler: name -> (path, rules)."""
    out = {}
    for hook in config["webhooks"]:
        rules = sorted(
            (tuple(sorted(r["apiGroups"])), tuple(sorted(r["apiVersions"])), tuple(sorted(r["operations"])), tuple(sorted(r["resources"])))
            for r in hook["rules"]
        )
        out[hook["name"]] = (hook["clientConfig"]["service"]["path"], tuple(rules))
    return out


@pytest.mark.parametrize("kind", sorted(ROUTE_FILES))
def test_routes_equal_the_server_route_table(kind: str) -> None:
    expected = routes(yaml.safe_load(ROUTE_FILES[kind].read_text()))
    assert expected, "route table is empty"
    for values in SCENARIOS.values():
        docs = render(values)
        if values.get("webhooks", {}).get("enabled", True):
            assert routes(one(docs, kind)) == expected
        else:
            assert by_kind(docs, kind) == []


def test_spec_routes_are_all_there() -> None:
    # The paths and operations upstream's webhooks serve, so an empty or truncated route table cannot pass.
    docs = render()
    got = {**routes(one(docs, "MutatingWebhookConfiguration")), **routes(one(docs, "ValidatingWebhookConfiguration"))}
    by_path = {path: rules for path, rules in got.values()}
    spinapps = (("core.spinkube.dev",), ("v1alpha1",), ("CREATE", "UPDATE"), ("spinapps",))
    executors = (("core.spinkube.dev",), ("v1alpha1",), ("CREATE", "DELETE", "UPDATE"), ("spinappexecutors",))
    assert by_path["/mutate-core-spinkube-dev-v1alpha1-spinapp"] == (spinapps,)
    assert by_path["/validate-core-spinkube-dev-v1alpha1-spinapp"] == (spinapps,)
    assert by_path["/validate-core-spinkube-dev-v1alpha1-spinappexecutor"] == (executors,)


def all_hooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for kind in ROUTE_FILES for h in one(docs, kind)["webhooks"]]


def test_safe_defaults() -> None:
    route_table = {
        hook["name"]: hook for path in ROUTE_FILES.values() for hook in yaml.safe_load(path.read_text())["webhooks"]
    }
    docs = render()
    service = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "spin-operator-webhook"][0]
    for hook in all_hooks(docs):
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] == 5
        assert hook["failurePolicy"] == "Fail"
        # With the default release name and namespace, the chart wires exactly what the route
        # table generates (the names the self-signed mode looks up).
        assert hook["clientConfig"]["service"] == route_table[hook["name"]]["clientConfig"]["service"]
        assert hook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"],
            "namespace": NAMESPACE,
            "path": hook["clientConfig"]["service"]["path"],
            "port": 443,
        }
        (expr,) = hook["namespaceSelector"]["matchExpressions"]
        assert expr == {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
        assert "objectSelector" not in hook
        assert hook["matchConditions"] == route_table[hook["name"]]["matchConditions"]
        assert hook["matchConditions"], "the route table's matchConditions cut metadata-only updates"
    for kind, path in ROUTE_FILES.items():
        assert one(docs, kind)["metadata"]["name"] == yaml.safe_load(path.read_text())["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, "webhook")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in container["ports"]
    assert "--webhook-addr=0.0.0.0:9443" in container["args"]


def test_options_reach_every_webhook() -> None:
    docs = render({
        "webhooks": {
            "timeoutSeconds": 12,
            "mutating": {"failurePolicy": "Ignore"},
            "excludeNamespaces": ["flux-system", "kube-system"],
            "objectSelector": {"matchLabels": {"admit": "yes"}},
            "namespaceSelectorExpressions": [{"key": "tier", "operator": "NotIn", "values": ["system"]}],
            "routeMatchConditions": False,
            "extraMatchConditions": [{"name": "not-a-node", "expression": "!request.userInfo.username.startsWith('system:node:')"}],
            "service": {"port": 8443},
        }
    }, namespace="ops")
    for kind in ROUTE_FILES:
        for hook in one(docs, kind)["webhooks"]:
            assert hook["timeoutSeconds"] == 12
            assert hook["failurePolicy"] == ("Ignore" if kind.startswith("Mutating") else "Fail")
            assert hook["objectSelector"] == {"matchLabels": {"admit": "yes"}}
            assert hook["namespaceSelector"]["matchExpressions"] == [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "ops", "flux-system"]},
                {"key": "tier", "operator": "NotIn", "values": ["system"]},
            ]
            assert [c["name"] for c in hook["matchConditions"]] == ["not-a-node"]
            assert hook["clientConfig"]["service"]["port"] == 8443
            assert hook["clientConfig"]["service"]["namespace"] == "ops"


def test_disabling_webhooks_removes_them_and_tells_the_server() -> None:
    docs = render({"webhooks": {"enabled": False}})
    assert not [d for d in docs if d["kind"] in ROUTE_FILES or d["metadata"]["name"].endswith("-webhook")]
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--disable-webhooks" in container["args"]
    assert not [a for a in container["args"] if a.startswith(("--webhook-addr", "--cert-dir", "--self-signed"))]
    assert "webhook-cert" not in {v["name"] for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_watch_namespaces_limit_every_webhook_to_those_namespaces() -> None:
    docs = render({"watchNamespaces": ["team-b", "team-a"], "webhooks": {"excludeNamespaces": ["flux-system"]}})
    for hook in all_hooks(docs):
        # Combined with (ANDed with) the exclusions: a watched namespace can still be excluded.
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE, "flux-system"]},
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]},
        ]
    # Empty list: cluster-wide, as before.
    for hook in all_hooks(render({"watchNamespaces": []})):
        assert [e["operator"] for e in hook["namespaceSelector"]["matchExpressions"]] == ["NotIn"]
