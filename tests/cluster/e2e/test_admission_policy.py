"""The ValidatingAdmissionPolicies (webhooks/validating-admission-policy.yaml, `spin-operator rules
--format vap`) on the real API server with no webhook involved: the objects live in the operator's
namespace, which the chart's webhooks never see. Denials carry the rule ids the webhooks use;
unchanged fields are ratcheted."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES, OPERATOR_NAMESPACE, apply, spinapp
from controlplane import REPO, ControlPlane, wait_until

POLICY = REPO / "webhooks" / "validating-admission-policy.yaml"
NS = OPERATOR_NAMESPACE

# (rule id, spec changes of a valid app) for the exported rules the CRD schema lets through: the
# schema answers first for imagePullPolicy (enum), probe thresholds (minimum), an empty
# components list (minItems) and replicas with autoscaling (a CRD CEL rule).
APP_CASES: list[tuple[str, dict[str, Any]]] = [
    ("SA-EXECUTOR-REQUIRED", {"executor": ""}),
    ("SA-REPLICAS-MIN", {"replicas": 0}),
    ("SA-IMAGE-REQUIRED", {"image": ""}),
    ("SA-IMAGE-REFERENCE", {"image": "ghcr.io/Example/App:v1"}),
    ("SA-IMAGE-REFERENCE", {"image": "ghcr.io/a/b@sha256:abc"}),
    ("SA-SERVICE-ACCOUNT-NAME", {"serviceAccountName": "Not_Valid"}),
    ("SA-REF-NAME", {"imagePullSecrets": [{"name": "Bad Name"}]}),
    ("SA-REF-NAME", {"variables": [{"name": "a", "valueFrom": {"secretKeyRef": {"name": "creds", "key": ""}}}]}),
    ("SA-VARIABLE-NAME", {"variables": [{"name": "Greetee", "value": "x"}]}),
    ("SA-VARIABLE-DUPLICATE", {"variables": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}),
    ("SA-VARIABLE-SOURCE", {"variables": [{"name": "a"}]}),
    ("SA-VOLUME-NAME", {"volumes": [{"name": "Data", "emptyDir": {}}]}),
    ("SA-VOLUME-RESERVED", {"volumes": [{"name": "spin-data", "emptyDir": {}}]}),
    ("SA-VOLUME-DUPLICATE", {"volumes": [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}]}),
    ("SA-VOLUMEMOUNT-VOLUME", {"volumeMounts": [{"name": "x", "mountPath": "/d"}]}),
    ("SA-VOLUMEMOUNT-PATH", {"volumes": [{"name": "d", "emptyDir": {}}],
                             "volumeMounts": [{"name": "d", "mountPath": "/runtime-config.toml"}]}),
    ("SA-PROBE-HTTPGET", {"checks": {"readiness": {"periodSeconds": 5}}}),
    ("SA-PROBE-PATH", {"checks": {"liveness": {"httpGet": {"path": "healthz"}}}}),
    ("SA-PROBE-HEADER", {"checks": {"liveness": {"httpGet": {"path": "/", "httpHeaders": [{"name": "X Bad", "value": "v"}]}}}}),
    ("SA-PROBE-LIVENESS-SUCCESS", {"checks": {"liveness": {"httpGet": {"path": "/"}, "successThreshold": 2}}}),
    ("SA-RESOURCES-QUANTITY", {"resources": {"limits": {"memory": "128MB"}}}),
    ("SA-RESOURCES-REQUESTS-LE-LIMITS", {"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "0.6"}}}),
    ("SA-INVOCATION-MEMORY", {"invocationLimits": {"memory": "lots"}}),
    ("SA-INVOCATION-MEMORY-LIMIT", {"invocationLimits": {"memory": "1Gi"}, "resources": {"limits": {"memory": "128Mi"}}}),
    ("SA-COMPONENTS-ID", {"components": ["hello_world"]}),
    ("SA-COMPONENTS-DUPLICATE", {"components": ["a", "a"]}),
    ("SA-RC-EXCLUSIVE", {"runtimeConfig": {"loadFromSecret": "creds", "llmCompute": {"type": "spin"}}}),
    ("SA-RC-NAME", {"runtimeConfig": {"keyValueStores": [{"name": "a", "type": "spin"}, {"name": "a", "type": "spin"}]}}),
    ("SA-RC-TYPE", {"runtimeConfig": {"sqliteDatabases": [{"name": "default", "type": ""}]}}),
    ("SA-RC-OPTION", {"runtimeConfig": {"llmCompute": {"type": "remote_http", "options": [
        {"name": "url", "value": "a"}, {"name": "url", "value": "b"}]}}}),
    ("SA-RC-OPTION-SOURCE", {"runtimeConfig": {"llmCompute": {"type": "remote_http", "options": [{"name": "url"}]}}}),
    ("SA-PODLABELS-SELECTOR", {"podLabels": {"core.spinkube.dev/app-name": "hijack"}}),
    ("SA-LABEL-KEY", {"nodeSelector": {"bad key": "x"}}),
    ("SA-LABEL-VALUE", {"podLabels": {"tier": "front end"}}),
    ("SA-ANNOTATION-KEY", {"serviceAnnotations": {"-bad": "x"}}),
    ("SA-ANNOTATION-SIZE", {"podAnnotations": {"big": "x" * (256 * 1024 + 1)}}),
]

EXECUTOR_CASES: list[tuple[str, dict[str, Any]]] = [
    ("SAE-RUNTIME-CLASS-NAME", {"runtimeClassName": "Wasm_Time"}),
    ("SAE-SPIN-IMAGE", {"spinImage": "ghcr.io/Spin:v3"}),
    ("SAE-CA-SECRET-NAME", {"runtimeClassName": "x", "caCertSecret": "CA!"}),
    ("SAE-OTEL-ENDPOINT", {"runtimeClassName": "x", "otel": {"exporter_otlp_endpoint": "collector:4318"}}),
]

# Admitted before the policy existed (as by the Go operator): an uppercase variable name.
LEGACY = spinapp("legacy-app", replicas=1, variables=[{"name": "Greetee", "value": "x"}])


def executor(name: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": name},
        "spec": {"createDeployment": True, "deploymentConfig": config},
    }


def dry_run(cp: ControlPlane, obj: dict[str, Any]) -> subprocess.CompletedProcess:
    return cp.kubectl("create", "-n", NS, "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)


def denied_with(out: subprocess.CompletedProcess) -> str:
    """The policy message of a denial ('' when admitted or denied by something else)."""
    if out.returncode == 0 or "ValidatingAdmissionPolicy" not in out.stderr:
        return ""
    return out.stderr.split("denied request: ", 1)[-1].strip()


@pytest.fixture(scope="module")
def policy(cluster: ControlPlane):
    # The chart (the `cluster` fixture) installed the CRDs and the release namespace.
    # Until the CRDs are established and served (kubectl's discovery included).
    wait_until("the CRDs to be served", lambda: apply(cluster, NS, LEGACY, check=False).returncode == 0,
               timeout=60, interval=0.5)
    cluster.kubectl("apply", "-f", str(POLICY))

    def enforced() -> bool:
        out = dry_run(cluster, spinapp("probe", replicas=0))
        if not denied_with(out).startswith("SA-REPLICAS-MIN"):
            raise AssertionError(f"not yet denied: {out.returncode} {out.stdout} {out.stderr}")
        return True

    wait_until("the admission policies to be enforced", enforced, timeout=60, interval=0.5)
    yield
    cluster.kubectl("delete", "-f", str(POLICY), "--ignore-not-found")
    cluster.kubectl("delete", "spinapp", "legacy-app", "-n", NS, "--ignore-not-found", "--wait=false")


@pytest.mark.parametrize("rule,changes", APP_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(APP_CASES)])
def test_apps_are_denied_with_the_rule_id(cluster: ControlPlane, policy, rule: str, changes: dict[str, Any]) -> None:
    app = spinapp(f"case-{uuid.uuid4().hex[:6]}")
    app["spec"].update(changes)
    message = denied_with(dry_run(cluster, app))
    assert message.startswith(f"{rule}: "), message or dry_run(cluster, app).stderr


def test_app_names_are_denied_with_the_rule_id(cluster: ControlPlane, policy) -> None:
    for name in ("1app", "a" * 53):
        assert denied_with(dry_run(cluster, spinapp(name))).startswith("SA-NAME: "), name
    assert dry_run(cluster, spinapp("a" * 52)).returncode == 0


@pytest.mark.parametrize("rule,config", EXECUTOR_CASES, ids=[r for r, _ in EXECUTOR_CASES])
def test_executors_are_denied_with_the_rule_id(cluster: ControlPlane, policy, rule: str, config: dict[str, Any]) -> None:
    message = denied_with(dry_run(cluster, executor(f"exec-{uuid.uuid4().hex[:6]}", config)))
    assert message.startswith(f"{rule}: "), message


def test_examples_are_admitted(cluster: ControlPlane, policy) -> None:
    # Without the mutating webhook nothing is defaulted: name the executor as it would.
    docs = [d for p in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    checked = 0
    for doc in docs:
        if doc["kind"] not in ("SpinApp", "SpinAppExecutor"):
            continue
        obj = copy.deepcopy(doc)
        if obj["kind"] == "SpinApp":
            obj["spec"].setdefault("executor", "containerd-shim-spin")
        out = dry_run(cluster, obj)
        assert out.returncode == 0, f"{obj['kind']} {obj['metadata']['name']}: {out.stderr}"
        checked += 1
    assert checked >= 10


def test_unchanged_errors_are_ratcheted_on_update(cluster: ControlPlane, policy) -> None:
    def patch(spec: dict[str, Any]) -> subprocess.CompletedProcess:
        return cluster.kubectl("patch", "spinapp", "legacy-app", "-n", NS, "--type=merge",
                               "-p", json.dumps({"spec": spec}), check=False)

    # An edit next to the old invalid variable name is admitted...
    out = patch({"replicas": 2})
    assert out.returncode == 0, out.stderr
    # ...a label change is not even evaluated (spec unchanged)...
    out = cluster.kubectl("label", "spinapp", "legacy-app", "-n", NS, "edited=yes", check=False)
    assert out.returncode == 0, out.stderr
    # ...but rewriting it to another invalid name is denied.
    message = denied_with(patch({"variables": [{"name": "Greetee2", "value": "x"}]}))
    assert message.startswith("SA-VARIABLE-NAME: "), message
    # Deleting is never blocked.
    assert cluster.kubectl("delete", "spinapp", "legacy-app", "-n", NS, "--wait=false", check=False).returncode == 0
