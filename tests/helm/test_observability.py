"""Metrics users can rely on: the documented table, the Grafana dashboard, the alerts, the
NetworkPolicy and the ports they reach. docs/metrics.md is checked against the registered
metrics by tests/metrics_doc.rs; here the dashboard and alert queries are checked against it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conftest import CHART, NAMESPACE, REPO, SCENARIOS, by_kind, one, operator_container, render

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
METRICS_DOC = REPO / "docs" / "metrics.md"

NAME = re.compile(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`")


def documented(deprecated: bool = False) -> dict[str, str]:
    """Metric name -> type, from the tables in docs/metrics.md (rows whose type is a metric type);
    names whose meaning starts with **Deprecated** only when `deprecated`."""
    metrics = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[1] not in {"counter", "gauge", "histogram"}:
            continue
        name = NAME.fullmatch(cells[0])
        assert name, f"metric cell not a `name`: {line}"
        assert name.group(1) not in metrics, f"{name.group(1)} documented twice"
        assert cells[3], line
        if deprecated or not cells[3].startswith("**Deprecated**"):
            metrics[name.group(1)] = cells[1]
    return metrics


def series_names(metrics: dict[str, str]) -> set[str]:
    """The series names a query may use: histograms are queried through their suffixes."""
    names = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "le",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (inside braces and grouping clauses), strings, durations or Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values)
    names = set(re.findall(r'__name__\s*=\s*"([^"]*)"', expr))
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, e.g. [5m] or [$__rate_interval]
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        word, call = match.groups()
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_name_extraction() -> None:
    # Guards the checks below: the extractor must find every metric and nothing else.
    expr = 'histogram_quantile(0.99, sum by (le, webhook) (rate(a_seconds_bucket{job=~"$job",x="b c"}[$__rate_interval]))) / on (pod) group_left b_total offset 5m > bool 1e3'
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}
    assert metric_names('(sum(up{job="x"}) or vector(0)) < 1 and time() - c') == {"up", "c"}
    assert variable_metric_names('label_values({__name__=~"spin_operator_.+"}, namespace)') == set()
    assert variable_metric_names('label_values(x_total{a="b"}, job)') == {"x_total"}


def variable_metric_names(query: str) -> set[str]:
    """Metric names of a Grafana variable query, `label_values(<selector>, <label>)`."""
    if match := re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip()):
        return metric_names(match.group(1))
    return metric_names(query)


def test_metrics_doc_lists_the_metrics() -> None:
    metrics = documented()
    # Spot checks that the table parses; tests/metrics_doc.rs checks it against the code.
    assert metrics["spin_operator_admission_requests_total"] == "counter"
    assert metrics["spin_operator_admission_duration_seconds"] == "histogram"
    assert metrics["spin_operator_controller_leader"] == "gauge"
    assert len(metrics) >= 9


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    exprs = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
        for inner in panel.get("panels", []):
            exprs.extend(t["expr"] for t in inner.get("targets", []))
    return exprs


def test_dashboard_parses_and_is_well_formed() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "job"} <= variables
    for panel in board["panels"]:
        assert panel["type"] in {"row", "timeseries", "stat"}, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # Every query is scoped to the selected installs.
            assert 'namespace=~"$namespace"' in target["expr"] and 'job=~"$job"' in target["expr"], target["expr"]


def test_dashboard_queries_use_only_documented_metrics() -> None:
    known = series_names(documented())
    board = dashboard()
    used = set()
    for expr in dashboard_exprs(board):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        used |= names
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            used |= variable_metric_names(variable["query"]["query"])
    assert used - known == set()


def test_deprecated_metric_names_are_documented_and_unused() -> None:
    # The old certificate metric names stay exported (and documented) for one release; the
    # dashboard and alerts (checked against documented() without them) already use the new ones.
    old = set(documented(deprecated=True)) - set(documented())
    assert old == {"webhook_certificate_not_after_timestamp_seconds", "webhook_certificate_reloads_total"}
    assert {f"spin_operator_{n}" for n in old} <= set(documented())


def test_dashboard_covers_what_operators_watch() -> None:
    used = {name for expr in dashboard_exprs(dashboard()) for name in metric_names(expr)}
    assert {
        "spin_operator_admission_requests_total",  # admissions by outcome, webhook errors
        "spin_operator_admission_rule_hits_total",  # by rule
        "spin_operator_admission_duration_seconds_bucket",  # webhook latency
        "spin_operator_controller_reconciles_total",  # reconciles and errors
        "spin_operator_controller_reconciles_in_flight",  # queue depth
        "spin_operator_controller_leader",
        "spin_operator_webhook_certificate_not_after_timestamp_seconds",  # certificate expiry
    } <= used


def test_dashboard_config_map_only_when_enabled() -> None:
    assert [c for c in by_kind(render(), "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")] == []
    docs = render(SCENARIOS["observability"])
    (config_map,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    assert config_map["metadata"]["namespace"] == NAMESPACE
    (data,) = config_map["data"].values()
    assert json.loads(data) == dashboard()
    moved = render({"metrics": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring", "labels": {"dash": "yes"}}}})
    (config_map,) = [c for c in by_kind(moved, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["dash"] == "yes"


def rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in one(docs, "PrometheusRule")["spec"]["groups"] for r in group["rules"]}


def test_prometheus_rule_only_when_enabled() -> None:
    assert by_kind(render(), "PrometheusRule") == []
    assert by_kind(render(SCENARIOS["everything-on"]), "PrometheusRule") == []


@pytest.mark.parametrize("base", ["defaults", "webhooks-only", "controllers-only", "custom-release-name"])
def test_prometheus_rule_queries_use_only_documented_metrics(base: str) -> None:
    known = series_names(documented())
    values = json.loads(json.dumps(SCENARIOS[base]))
    values.setdefault("metrics", {})["prometheusRule"] = {"enabled": True}
    docs = render(values)
    alerts = rules(docs)
    expected = set()
    if values.get("webhooks", {}).get("enabled", True):
        expected |= {"SpinOperatorWebhookErrors", "SpinOperatorCertificateExpiring"}
    if values.get("controllers", {}).get("enabled", True):
        expected |= {"SpinOperatorReconcileErrors", "SpinOperatorLeaderMissing"}
    assert set(alerts) == expected
    metrics_service = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")][0]["metadata"]["name"]
    for name, rule in alerts.items():
        names = metric_names(rule["expr"])
        assert names and names - known == set(), (name, rule["expr"])
        # Scoped to this install's series, as the ServiceMonitor scrapes them.
        assert f'job="{metrics_service}",namespace="{NAMESPACE}"' in rule["expr"], rule["expr"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert "{{ $labels" in rule["annotations"]["summary"] + rule["annotations"]["description"] or name == "SpinOperatorLeaderMissing"


def test_prometheus_rule_values() -> None:
    docs = render(SCENARIOS["observability"])
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = rules(docs)
    assert all(a["labels"]["team"] == "platform" for a in alerts.values())
    assert alerts["SpinOperatorLeaderMissing"]["labels"]["severity"] == "critical"
    assert alerts["SpinOperatorCertificateExpiring"]["expr"].endswith("< 604800")
    custom = rules(render({"metrics": {"prometheusRule": {"enabled": True, "certificateExpiryDays": 3, "selector": 'service="ops"'}}}))
    assert custom["SpinOperatorCertificateExpiring"]["expr"].endswith("< 259200")
    assert all('{service="ops"' in a["expr"] and "job=" not in a["expr"] for a in custom.values())
    # The leader alert also fires when no replica is scraped at all (the sum is then empty).
    assert "or vector(0)" in alerts["SpinOperatorLeaderMissing"]["expr"]


def test_alerts_and_dashboard_are_documented() -> None:
    text = METRICS_DOC.read_text()
    for alert in rules(render(SCENARIOS["observability"])):
        assert f"`{alert}`" in text, alert


def network_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "NetworkPolicy")


def container_ports(docs: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in operator_container(docs)["ports"]}


def test_network_policy_off_by_default() -> None:
    assert by_kind(render(), "NetworkPolicy") == []


@pytest.mark.parametrize("name", ["custom-ports", "everything-on"])
def test_network_policy_opens_the_webhook_and_limits_metrics(name: str) -> None:
    docs = render(SCENARIOS[name])
    policy = network_policy(docs)["spec"]
    ports = container_ports(docs)
    assert policy["policyTypes"] == ["Ingress"]  # egress unrestricted
    assert policy["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    by_port = {rule["ports"][0]["port"]: rule for rule in policy["ingress"]}
    assert set(by_port) == {ports["webhook"], ports["http"]}
    webhook_from = SCENARIOS[name].get("networkPolicy", {}).get("webhook", {}).get("from", [])
    assert by_port[ports["webhook"]].get("from", []) == webhook_from
    assert by_port[ports["http"]]["from"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    ]


def test_network_policy_peers_replace_the_default_and_webhooks_off() -> None:
    peers = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"ipBlock": {"cidr": "192.168.0.0/16"}},
    ]
    docs = render({"networkPolicy": {"enabled": True, "metrics": {"from": peers}}, "webhooks": {"enabled": False}})
    (rule,) = network_policy(docs)["spec"]["ingress"]
    assert rule == {"ports": [{"port": 8080, "protocol": "TCP"}], "from": peers}
    # Empty: the port is open to every source, like the webhook port by default.
    (_, rule) = network_policy(render({"networkPolicy": {"enabled": True, "metrics": {"from": []}}}))["spec"]["ingress"]
    assert rule == {"ports": [{"port": 8080, "protocol": "TCP"}]}


def test_custom_ports_flow_everywhere() -> None:
    values = SCENARIOS["custom-ports"]
    docs = render(values)
    container = operator_container(docs)
    ports = container_ports(docs)
    assert ports == {"webhook": values["ports"]["webhook"], "http": values["ports"]["health"]}
    assert f"--webhook-addr=0.0.0.0:{ports['webhook']}" in container["args"]
    assert f"--health-addr=0.0.0.0:{ports['http']}" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == values["ports"]["health"]
    services = {s["metadata"]["name"].rsplit("-", 1)[1]: s["spec"]["ports"] for s in by_kind(docs, "Service")}
    ((webhook,), (metrics,)) = services["webhook"], services["metrics"]
    assert (webhook["port"], ports[webhook["targetPort"]]) == (8443, 10443)
    assert (metrics["port"], ports[metrics["targetPort"]]) == (9091, 9090)
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert {w["clientConfig"]["service"]["port"] for w in one(docs, kind)["webhooks"]} == {8443}
    assert {r["ports"][0]["port"] for r in network_policy(docs)["spec"]["ingress"]} == {10443, 9090}
