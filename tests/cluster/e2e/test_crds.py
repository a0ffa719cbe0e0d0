"""The CRDs as the real API server stores them: accepted (CEL compiled within the cost budget),
explained by kubectl, printed with our columns, and enforcing their CEL rules on their own."""

from __future__ import annotations

import json
import re

from conftest import OPERATOR_NAMESPACE, apply, spinapp


def test_crds_are_established_with_every_version_served(cluster, operator):
    for name in ("spinapps.core.spinkube.dev", "spinappexecutors.core.spinkube.dev"):
        crd = cluster.get_json("crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions
        assert [v["name"] for v in crd["spec"]["versions"] if v["served"]] == ["v1alpha1"]


def test_kubectl_explain_describes_the_spec(cluster, operator):
    out = cluster.kubectl("explain", "spinapp.spec").stdout
    for field in ("image", "executor", "replicas", "runtimeConfig", "variables", "enableAutoscaling"):
        assert f"  {field}\t" in out, f"{field} missing from kubectl explain:\n{out}"
    replicas = cluster.kubectl("explain", "spinapp.spec.replicas").stdout
    assert "FIELD: replicas <integer>" in replicas, replicas
    executor = cluster.kubectl("explain", "spinappexecutor.spec.deploymentConfig").stdout
    assert "runtimeClassName" in executor and "spinImage" in executor, executor


def test_printer_columns_and_scale_subresource(cluster, apps_ns):
    apply(cluster, apps_ns, spinapp("columns", replicas=2))
    header = cluster.kubectl("get", "spinapps", "-n", apps_ns).stdout.splitlines()[0].split()
    assert header[:4] == ["NAME", "READY", "DESIRED", "EXECUTOR"], header
    wide = cluster.kubectl("get", "spinapp", "columns", "-n", apps_ns, "-o", "wide").stdout.splitlines()
    row = table_row(wide[0], wide[1])
    assert row["DESIRED"] == "2" and row["EXECUTOR"] == "containerd-shim-spin", wide
    scale = json.loads(cluster.kubectl("get", "--raw",
                                       f"/apis/core.spinkube.dev/v1alpha1/namespaces/{apps_ns}/spinapps/columns/scale").stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2, scale


def table_row(header: str, line: str) -> dict[str, str]:
    """A kubectl table row by the header's column positions (a cell may be empty, e.g. READY
    before the first status, so splitting on white space would shift the cells)."""
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    bounds = list(zip(starts, starts[1:] + [None]))
    return {header[a:b].strip(): line[a:b].strip() for a, b in bounds}


def test_cel_rules_hold_without_the_webhooks(cluster, operator):
    """The release namespace is excluded from the webhooks: only the CRDs' CEL rules apply there."""
    ns = OPERATOR_NAMESPACE
    out = apply(cluster, ns, spinapp("cel-autoscaling", replicas=2, enableAutoscaling=True), check=False)
    assert out.returncode != 0
    assert 'spec.replicas: Forbidden: replicas must not be set when enableAutoscaling is true' in out.stderr, out.stderr

    executor = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                "metadata": {"name": "cel-executor"}, "spec": {"createDeployment": True}}
    out = apply(cluster, ns, executor, check=False)
    assert out.returncode != 0
    assert "spec.deploymentConfig: Required value: deploymentConfig is required when createDeployment is true" \
        in out.stderr, out.stderr

    executor["spec"]["deploymentConfig"] = {"runtimeClassName": "wasmtime-spin-v2", "spinImage": "ghcr.io/x/spin:v1"}
    out = apply(cluster, ns, executor, check=False)
    assert out.returncode != 0
    assert "spec.deploymentConfig: Invalid value: exactly one of runtimeClassName or spinImage must be set" \
        in out.stderr, out.stderr

    # What only the webhook checks passes here: the exclusion really bypasses the webhooks.
    out = apply(cluster, ns, spinapp("cel-only", image="ghcr.io/Example/App:latest", replicas=1))
    assert "created" in out.stdout, out.stdout
    cluster.kubectl("delete", "spinapp", "cel-only", "-n", ns)
