"""The generated reference tables (chart README values, docs/rbac.md permissions) are current,
and every chart value and permission part is described. Regenerate with `make docs`."""

from __future__ import annotations

import json
import sys

from conftest import CHART, REPO, by_kind, render

sys.path.insert(0, str(REPO / "tools"))
import chart_docs  # noqa: E402


def test_generated_docs_are_current() -> None:
    stale = [str(path.relative_to(REPO)) for path, content in chart_docs.generated().items() if path.read_text() != content]
    assert stale == [], f"stale: {stale}; run `make docs`"


def test_every_chart_value_has_a_description() -> None:
    missing = chart_docs.undocumented_values()
    assert missing == [], f"values.yaml: add a `# -- ...` comment above {missing}, then run `make docs`"


def test_values_table_lists_every_leaf_with_its_default() -> None:
    table = chart_docs.values_table()
    assert "| `replicaCount` | `2` |" in table
    assert '| `webhooks.mutating.failurePolicy` | `"Fail"` |' in table
    # A described mapping is one row with the whole default, not a row per key below it.
    assert "| `resources` | `{" in table and "`resources.limits" not in table


def test_description_parser_follows_nesting_and_continuations() -> None:
    text = "a:\n  # -- first\n  # line two\n  b: 1\n  c: 2\n# plain comment\nd: 3\n# -- top\ne:\n  f: 1\n"
    assert chart_docs.value_descriptions(text) == {("a", "b"): "first line two", ("e",): "top"}


def test_every_permission_part_is_described() -> None:
    parts = json.loads((CHART / "files" / "permissions.json").read_text())
    assert set(parts) == set(chart_docs.PARTS)


def test_watch_namespaces_grants_only_the_webhook_configurations_cluster_wide() -> None:
    # docs/rbac.md promises this for tenant installs, in every certificate mode.
    for tls, verbs in (({}, {"get", "list", "watch"}), ({"certManager": {"enabled": False}}, {"get", "list", "watch", "patch"}),
                       ({"tls": {"existingSecret": "mine"}}, {"get", "list", "watch", "patch"})):
        docs = render({"watchNamespaces": ["team-a"], **tls})
        (cluster_role,) = by_kind(docs, "ClusterRole")
        resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
        assert resources == {"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}, tls
        assert all(rule.get("resourceNames") and set(rule["verbs"]) == verbs for rule in cluster_role["rules"]), tls
