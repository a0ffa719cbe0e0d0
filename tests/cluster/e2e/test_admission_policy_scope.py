"""The chart's ValidatingAdmissionPolicy option (validatingAdmissionPolicy.enabled) on the real API
server, scoped like the chart's webhooks: a tenant install (watchNamespaces) with an objectSelector
enforces its policies in its watched namespaces only, never in its own release namespace, other
namespaces or on objects its objectSelector leaves out.

The chart is rendered by the real Helm CLI (`helm template`) and only its policies and bindings are
applied (release `vap-tenant-spin-operator`), so the test needs no second operator. It lives in its own module:
test_admission_policy.py installs the repository's cluster-wide policies for its whole module,
which would deny everywhere; its fixtures are torn down before this module starts.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from conftest import new_namespace, spinapp
from controlplane import CHART, ControlPlane, wait_until

RELEASE = "vap-tenant-spin-operator"  # its fullname: object names are the release name
KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
SKIP_LABEL = "vap-scope-test/skip"


def denied_by_policy(out: subprocess.CompletedProcess) -> str:
    """The ValidatingAdmissionPolicy denial in kubectl's output ('' when there is none)."""
    if out.returncode == 0 or "ValidatingAdmissionPolicy" not in out.stderr:
        return ""
    return out.stderr.strip()


@pytest.fixture(scope="module")
def scoped(cluster: ControlPlane):
    watched, unwatched, release_ns = (new_namespace(cluster, p) for p in ("vap-watched", "vap-other", "vap-ops"))
    values = {
        "validatingAdmissionPolicy": {"enabled": True},
        # The release namespace is listed on purpose: it stays excluded, as from the webhooks.
        "watchNamespaces": [watched, release_ns],
        "webhooks": {"objectSelector": {"matchExpressions": [{"key": SKIP_LABEL, "operator": "DoesNotExist"}]}},
    }
    values_file = cluster.workdir / "values-vap-scope.json"
    values_file.write_text(json.dumps(values))
    rendered = cluster.helm("template", RELEASE, str(CHART), "--namespace", release_ns, "-f", str(values_file)).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in KINDS]
    assert len(docs) == 4, [d["kind"] for d in docs]
    manifest = yaml.safe_dump_all(docs)
    cluster.kubectl("apply", "-f", "-", input=manifest)
    probe = json.dumps(spinapp("probe", replicas=0))

    def enforced() -> bool:
        out = cluster.kubectl("create", "--dry-run=server", "-n", watched, "-f", "-", input=probe, check=False)
        return "SA-REPLICAS-MIN" in denied_by_policy(out)

    wait_until("the chart's policies to be enforced in the watched namespace", enforced, timeout=60, interval=0.5)
    yield {"watched": watched, "unwatched": unwatched, "release": release_ns}
    cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifest)


def dry_run(cp: ControlPlane, namespace: str, obj: dict) -> subprocess.CompletedProcess:
    return cp.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


def test_watched_namespace_is_enforced(cluster: ControlPlane, scoped) -> None:
    out = dry_run(cluster, scoped["watched"], spinapp("zero", replicas=0))
    message = denied_by_policy(out)
    assert f"ValidatingAdmissionPolicy '{RELEASE}-spinapps'" in message, out.stderr
    assert "SA-REPLICAS-MIN: " in message
    executor = {"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor", "metadata": {"name": "bad"},
                "spec": {"createDeployment": True, "deploymentConfig": {"runtimeClassName": "Wasm_Time"}}}
    assert "SAE-RUNTIME-CLASS-NAME: " in denied_by_policy(dry_run(cluster, scoped["watched"], executor))


@pytest.mark.parametrize("where", ["unwatched", "release"])
def test_other_namespaces_are_not_enforced(cluster: ControlPlane, scoped, where: str) -> None:
    out = dry_run(cluster, scoped[where], spinapp("zero", replicas=0))
    assert denied_by_policy(out) == "", out.stderr


def test_objects_outside_the_object_selector_are_not_enforced(cluster: ControlPlane, scoped) -> None:
    app = spinapp("zero", replicas=0)
    app["metadata"]["labels"] = {SKIP_LABEL: "yes"}
    out = dry_run(cluster, scoped["watched"], app)
    assert denied_by_policy(out) == "", out.stderr
