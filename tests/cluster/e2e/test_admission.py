"""Admission as users meet it: `kubectl apply` through the real API server, which calls our
webhooks in the chart's pods through the chart's webhook configurations and Service."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import yaml

from conftest import EXAMPLES, OPERATOR_NAMESPACE, apply, new_namespace, operator_requests, resource_of, spinapp
from test_steady_state import now_rfc3339

VALID_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml"))


def example_apps() -> list[dict]:
    return [d for p in VALID_EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == "SpinApp"]


def admission_requests(op) -> dict[tuple[str, str], float]:
    """spin_operator_admission_requests_total by (webhook, outcome), from the operator's /metrics
    (summed over its replicas: the API server calls either)."""
    counts: dict[tuple[str, str], float] = {}
    for line in op.metrics().splitlines():
        m = re.match(r'spin_operator_admission_requests_total\{webhook="([^"]+)",outcome="([^"]+)"\} (\S+)', line)
        if m:
            counts[(m[1], m[2])] = counts.get((m[1], m[2]), 0.0) + float(m[3])
    return counts


def test_every_example_is_admitted_and_defaulted(cluster, namespace):
    for path in VALID_EXAMPLES:
        out = cluster.kubectl("apply", "-n", namespace, "-f", str(path), check=False)
        assert out.returncode == 0, f"{path.name}: {out.stderr}"
    for app in example_apps():
        stored = cluster.get_json("spinapp", app["metadata"]["name"], "-n", namespace)
        spec = stored["spec"]
        # The mutating webhook fills what the example leaves out, and the API server stores it.
        assert spec["executor"], app["metadata"]["name"]
        if not spec.get("enableAutoscaling"):
            assert spec["replicas"] == app["spec"].get("replicas", 1), app["metadata"]["name"]
        else:
            assert "replicas" not in spec
    hello = cluster.get_json("spinapp", "hello", "-n", namespace)
    # Defaulted to the alphabetically first executor of the app's namespace.
    assert hello["spec"]["executor"] == "containerd-shim-spin"
    assert hello["spec"]["replicas"] == 1


def field_errors(stderr: str, name: str) -> list[str]:
    """The field errors kubectl prints for object `name` (a `* ` list, or one `[a, b]` line)."""
    part = stderr.split(f'"{name}" is invalid:')[1].split("Error from server")[0]
    bullets = [line.strip()[2:] for line in part.splitlines() if line.strip().startswith("* ")]
    if bullets:
        return bullets
    part = part.strip()
    if part.startswith("[") and part.endswith("]"):
        return [e.strip() for e in re.split(r", (?=[.<a-z][A-Za-z.\[\]0-9/_-]*: )", part[1:-1])]
    return [part]


def test_invalid_examples_are_rejected_with_every_field_error(cluster, namespace, tmp_path):
    out = cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "invalid"), check=False)
    assert out.returncode != 0
    # The API server checks the CRD schema (enums, minimums, CEL) after the defaulting webhook and
    # before the validating one, so it is the schema that rejects these two first.
    broken = field_errors(out.stderr, "broken")
    assert any(e.startswith('spec.imagePullPolicy: Unsupported value: "Sometimes"') for e in broken), broken
    assert any(re.match(r"\.?spec\.replicas: Invalid value: -1", e) for e in broken), broken
    # Every error names its field; the API server adds one note of its own about skipped CEL rules.
    for error in broken:
        assert re.match(r"^\.?(spec|metadata)[.\[]", error) or error.startswith("<nil>: Invalid value: null: some validation rules were not checked"), error
    confused = field_errors(out.stderr, "confused")
    assert confused == ["spec.deploymentConfig: Invalid value: exactly one of runtimeClassName or spinImage must be set"], confused
    assert cluster.kubectl("get", "spinapps", "-n", namespace, "-o", "name").stdout == ""

    # With those two fixed, the object reaches our validating webhook: kubectl then shows every
    # error `spin-operator validate` reports for it, each naming its field.
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "invalid" / "bad-app.yaml").read_text()) if d]
    app = next(d for d in docs if d["kind"] == "SpinApp")
    app["spec"]["replicas"] = 0
    del app["spec"]["imagePullPolicy"]
    variant = tmp_path / "broken.yaml"
    variant.write_text(yaml.safe_dump(app))
    out = cluster.kubectl("apply", "-n", namespace, "-f", str(variant), check=False)
    assert out.returncode != 0
    online = field_errors(out.stderr, "broken")
    offline = subprocess.run(
        [str(cluster_binary()), "validate", "-f", str(EXAMPLES / "executors.yaml"), "-f", str(variant)],
        capture_output=True, text=True)
    expected = field_errors(offline.stdout + offline.stderr, "broken")
    assert len(expected) >= 10, offline.stdout + offline.stderr
    assert online == expected, out.stderr
    assert "spec.replicas: Invalid value: 0: must be greater than or equal to 1" in online


def cluster_binary():
    from controlplane import operator_binary
    return operator_binary()


def test_warnings_are_printed_by_kubectl(cluster, namespace):
    out = apply(cluster, namespace, spinapp("latest", image="ghcr.io/example/app:latest", replicas=1))
    assert out.returncode == 0
    warnings = [line for line in out.stderr.splitlines() if line.startswith("Warning:")]
    assert any(":latest" in w for w in warnings), out.stderr


def test_server_side_dry_run_returns_the_defaulted_object_and_stores_nothing(cluster, namespace):
    app = spinapp("dry", replicas=None)
    del app["spec"]["replicas"], app["spec"]["executor"]
    out = cluster.kubectl("apply", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-",
                          input=json.dumps(app))
    defaulted = json.loads(out.stdout)
    assert defaulted["spec"]["executor"] == "containerd-shim-spin"
    assert defaulted["spec"]["replicas"] == 1
    assert cluster.kubectl("get", "spinapp", "dry", "-n", namespace, check=False).returncode != 0

    bad = spinapp("dry-bad", replicas=0)
    out = cluster.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0
    assert "spec.replicas: Invalid value: 0: must be greater than or equal to 1" in out.stderr, out.stderr


def test_excluded_namespace_is_not_sent_to_the_webhooks(cluster, operator):
    before = admission_requests(operator)
    # kube-system and the release namespace are excluded by the chart's namespaceSelector.
    app = spinapp("not-sent", replicas=1, image="ghcr.io/example/app:latest")
    del app["spec"]["executor"]
    out = apply(cluster, OPERATOR_NAMESPACE, app, check=False)
    stored = cluster.get_json("spinapp", "not-sent", "-n", OPERATOR_NAMESPACE)
    cluster.kubectl("delete", "spinapp", "not-sent", "-n", OPERATOR_NAMESPACE)
    # Not defaulted (no executor set), no warning, and our webhook server counted nothing.
    assert out.returncode == 0, out.stderr
    assert stored["spec"].get("executor", "") == "", stored["spec"]
    assert "Warning:" not in out.stderr
    assert admission_requests(operator) == before

    # The same app elsewhere is defaulted and warned about, and counted.
    ns = new_namespace(cluster, "e2e-sent")
    out = apply(cluster, ns, app)
    assert "Warning:" in out.stderr
    assert cluster.get_json("spinapp", "not-sent", "-n", ns)["spec"]["executor"] == "containerd-shim-spin"
    after = admission_requests(operator)
    assert after.get(("mspinapp.kb.io", "allowed"), 0) > before.get(("mspinapp.kb.io", "allowed"), 0), after


def test_scaffolded_manifests_are_admitted_by_the_api_server(cluster, namespace, tmp_path):
    """`spin-operator scaffold` output (SpinApp, runtime-config Secret, HPA) applies as it is."""
    out_file = tmp_path / "scaffolded.yaml"
    subprocess.run([str(cluster_binary()), "scaffold", "-f", "ghcr.io/example/scaffolded:v2.0.0",
                    "--autoscaler", "hpa", "--cpu-limit", "100m", "--memory-limit", "128Mi",
                    "-c", str(EXAMPLES.parent / "tests" / "fixtures" / "scaffold" / "runtime-config.toml"),
                    "-o", str(out_file)], check=True, capture_output=True, text=True)
    out = cluster.kubectl("apply", "-n", namespace, "-f", str(out_file), check=False)
    assert out.returncode == 0, out.stderr
    kinds = {line.split("/")[0] for line in out.stdout.split()  if "/" in line}
    assert {"spinapp.core.spinkube.dev", "secret", "horizontalpodautoscaler.autoscaling"} <= kinds, out.stdout
    stored = cluster.get_json("spinapp", "scaffolded", "-n", namespace)
    assert stored["spec"]["enableAutoscaling"] is True and "replicas" not in stored["spec"]

    # What scaffold refuses, the webhook refuses with the same words.
    refused = subprocess.run([str(cluster_binary()), "scaffold", "-f", "ghcr.io/example/scaffolded:v2.0.0", "-r", "0"],
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "spec.replicas: Invalid value: 0: must be greater than or equal to 1" in refused.stderr + refused.stdout


def test_executors_and_their_apps_applied_together_are_admitted(cluster, operator, tmp_path):
    """`kubectl apply -f dir/` of fresh namespaces, each with the example executors and an app
    naming one, 60 namespaces by 6 concurrent applies: each app follows its executor by
    milliseconds, before the webhooks' watch may have delivered it (the concurrent writes make
    it lag more often), and a cache miss fetches it once. Not one denial. (How often the watch
    lags here depends on the machine; tests/admission_executor_fetch.rs holds it back to make
    every app a miss.)"""
    executors = [d for d in yaml.safe_load_all((EXAMPLES / "executors.yaml").read_text()) if d]
    run = uuid.uuid4().hex[:6]
    dirs = [tmp_path / f"together-{d}" for d in range(6)]
    namespaces = []
    for d, directory in enumerate(dirs):
        directory.mkdir()
        for i in range(10):
            ns = f"e2e-together-{run}-{d}{i}"
            namespaces.append(ns)
            placed = [{**e, "metadata": {**e["metadata"], "namespace": ns}} for e in executors]
            app = spinapp("together", replicas=1)
            app["metadata"]["namespace"] = ns
            docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, *placed, app]
            (directory / f"{ns}.yaml").write_text(yaml.safe_dump_all(docs))
    start = now_rfc3339()
    try:
        applies = [subprocess.Popen([str(cluster.bin_dir / "kubectl"), "apply", "-f", str(d)], env=cluster.env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for d in dirs]
        outcomes = [(p.wait(timeout=300), p.communicate()[1]) for p in applies]
        end = now_rfc3339()
        assert [err for code, err in outcomes if code != 0] == []
        created = cluster.get_json("spinapps", "-A", "--field-selector", "metadata.name=together")
        assert sorted(a["metadata"]["namespace"] for a in created["items"]
                      if a["metadata"]["namespace"] in namespaces) == sorted(namespaces)
        # A review fetches only what it missed: at most one GET per app (the audit log shows
        # how many of these apps the watch was too slow for).
        gets = [e for e in operator_requests(cluster, operator, since=start, until=end)
                if e["verb"] == "get" and resource_of(e) == "spinappexecutors"]
        assert len(gets) <= len(namespaces), len(gets)
        print(f"{len(gets)} of {len(namespaces)} apps missed their executor in the webhooks' cache")

        # A miss is fetched with the chart's RBAC (a 404 here, not a 403), once; hits cost nothing.
        start = now_rfc3339()
        missing = json.dumps(spinapp("missing", executor="not-there", replicas=1))
        cached = json.dumps(spinapp("cached", replicas=1))
        out = cluster.kubectl("create", "--dry-run=server", "-n", namespaces[0], "-f", "-", input=missing, check=False)
        assert out.returncode != 0 and 'no SpinAppExecutor "not-there"' in out.stderr, out.stderr
        cluster.kubectl("create", "--dry-run=server", "-n", namespaces[0], "-f", "-", input=cached)
        end = now_rfc3339()
        calls = [(e["verb"], resource_of(e), e["objectRef"].get("name"), e["responseStatus"]["code"])
                 for e in operator_requests(cluster, operator, since=start, until=end)
                 if e["objectRef"].get("resource") == "spinappexecutors"]
        assert calls == [("get", "spinappexecutors", "not-there", 404)], calls
    finally:
        cluster.kubectl("delete", "namespace", *namespaces, "--wait=false", check=False)
