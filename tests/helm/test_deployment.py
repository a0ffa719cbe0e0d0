"""The operator Deployment: availability, probes, resources, pod security, image."""

from __future__ import annotations

import re

import helm_python as helm
import pytest

from conftest import REPO, SCENARIOS, by_kind, chart, one, operator_container, render


def pod_spec(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def test_defaults_give_two_replicas_a_pdb_and_anti_affinity() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    (term,) = pod_spec(docs)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    for service in by_kind(docs, "Service"):
        assert service["spec"]["selector"] == selector


def test_pdb_min_available_replaces_max_unavailable() -> None:
    pdb = one(render({"podDisruptionBudget": {"minAvailable": 1}}), "PodDisruptionBudget")
    assert pdb["spec"] == {**pdb["spec"], "minAvailable": 1} and "maxUnavailable" not in pdb["spec"]
    assert by_kind(render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []


def test_pod_security(scenario) -> None:
    _, values = scenario
    spec = pod_spec(render(values))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in sc or sc["privileged"] is False


def test_probes_hit_the_health_port() -> None:
    docs = render()
    container = operator_container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"webhook": 9443, "http": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "--health-addr=0.0.0.0:8080" in container["args"]
    metrics = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    (port,) = metrics[0]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, "http")


def test_resources_have_requests_and_a_memory_limit() -> None:
    resources = operator_container(render())["resources"]
    assert resources == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def test_args_follow_values() -> None:
    args = operator_container(render())["args"]
    assert args[0] == "run"
    for flag in ("--self-signed", "--disable-controllers", "--disable-webhooks", "--allow-missing-executor"):
        assert flag not in args
    assert "--disable-controllers" in operator_container(render(SCENARIOS["webhooks-only"]))["args"]
    assert "--allow-missing-executor" in operator_container(render({"allowMissingExecutor": True}))["args"]
    assert "--log-format=json" in args and "--skip-reference-watch" not in args
    args = operator_container(render(SCENARIOS["webhooks-only-no-reference-watch"]))["args"]
    assert "--log-format=text" in args and "--skip-reference-watch" in args
    assert operator_container(render({"extraArgs": ["--foo=bar"]}))["args"][-1] == "--foo=bar"


def test_webhook_timeout_and_memory_budget_reach_the_operator() -> None:
    # The server's deadline follows the timeout the API server is configured with.
    args = operator_container(render())["args"]
    assert "--webhook-timeout-seconds=5" in args
    assert not any(a.startswith("--webhook-memory-budget") for a in args)
    args = operator_container(render({"webhooks": {"timeoutSeconds": 12, "memoryBudget": "96Mi"}}))["args"]
    assert "--webhook-timeout-seconds=12" in args and "--webhook-memory-budget=96Mi" in args
    with pytest.raises(helm.HelmValuesError):
        render({"webhooks": {"memoryBudget": "lots"}})


def test_leader_election_namespace_comes_from_the_pod() -> None:
    env = {e["name"]: e for e in operator_container(render())["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RUST_LOG"]["value"] == "info"


def test_image_defaults_to_the_app_version_and_honours_digest() -> None:
    app_version = chart().metadata["appVersion"]
    assert operator_container(render())["image"] == f"ghcr.io/spinkube-rs/spin-operator:{app_version}"
    assert operator_container(render({"image": {"tag": "dev"}}))["image"] == "ghcr.io/spinkube-rs/spin-operator:dev"
    digest = "sha256:" + "b" * 64
    assert operator_container(render({"image": {"digest": digest, "tag": "dev"}}))["image"] == f"ghcr.io/spinkube-rs/spin-operator@{digest}"


def test_chart_matches_the_dockerfile() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    docs = render()
    spec = pod_spec(docs)
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert (int(user[0]), int(user[1])) == (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"])
    (exposed,) = re.findall(r"^EXPOSE (.+)$", dockerfile, re.M)
    ports = {p["containerPort"] for p in operator_container(docs)["ports"]}
    assert {int(p) for p in exposed.split()} == ports
    # The binary is the entrypoint, so the chart passes only the subcommand and flags.
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/spin-operator"\]$', dockerfile, re.M)
    assert "cargo build --release --locked" in dockerfile
    # No shell or package manager: a static binary on scratch, run as the non-root user above.
    (runtime,) = [line for line in dockerfile.splitlines() if line.startswith("FROM ") and " AS " not in line]
    assert runtime == "FROM scratch"
    assert int(user[0]) != 0 and int(user[1]) != 0
    assert str(chart().values["image"]["repository"]) in dockerfile


def test_default_executor_and_runtime_class_are_off_by_default() -> None:
    docs = render()
    assert by_kind(docs, "SpinAppExecutor") == [] and by_kind(docs, "RuntimeClass") == []
    docs = render(SCENARIOS["everything-on"])
    executors = by_kind(docs, "SpinAppExecutor")
    assert sorted(e["metadata"]["namespace"] for e in executors) == ["apps", "default"]
    for executor in executors:
        assert executor["metadata"]["name"] == "containerd-shim-spin"
        assert executor["spec"]["deploymentConfig"]["runtimeClassName"] == "wasmtime-spin-v2"
        # Created after the operator is up, so the validating webhook can answer.
        assert executor["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    runtime_class = one(docs, "RuntimeClass")
    assert (runtime_class["metadata"]["name"], runtime_class["handler"]) == ("wasmtime-spin-v2", "spin")
    assert runtime_class["scheduling"]["nodeSelector"] == {"spin": "yes"}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = render(SCENARIOS["everything-on"])
    monitor = one(docs, "ServiceMonitor")
    (metrics,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    (webhook,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-webhook")]
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= webhook["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert by_kind(render(), "ServiceMonitor") == []


def test_notes_tell_what_to_check() -> None:
    notes = chart().render({}, name="spin-operator", namespace="spin-operator")["spin-operator/templates/NOTES.txt"]
    assert "rollout status deployment/spin-operator" in notes
    assert "spin-operator-webhook" in notes
    assert "certificate spin-operator-webhook-cert" in notes
    notes = chart().render(SCENARIOS["self-signed"], name="spin-operator", namespace="spin-operator")["spin-operator/templates/NOTES.txt"]
    assert "get secret spin-operator-webhook-cert" in notes
    assert "get certificate" not in notes


def test_docker_context_keeps_what_cargo_needs() -> None:
    # Cargo reads every declared target and path dependency even for `--bin spin-operator`.
    import tomllib

    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())
    paths = ["Cargo.toml", "Cargo.lock", "src/main.rs"]
    for section in ("lib", "bin", "bench", "test", "example"):
        entries = manifest.get(section, [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if "path" in entry:
                paths.append(entry["path"])
    paths += manifest.get("workspace", {}).get("members", [])
    for table in ("dependencies", "dev-dependencies", "build-dependencies"):
        for dep in manifest.get(table, {}).values():
            if isinstance(dep, dict) and "path" in dep:
                paths.append(dep["path"])
    ignored = [line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    for path in paths:
        path = path.removeprefix("./").rstrip("/") or "."
        assert (REPO / path).exists(), path
        assert not any(path == i or path.startswith(i + "/") for i in ignored), f"{path} is excluded by .dockerignore"


def run_flags() -> set[str]:
    """Long flags of `spin-operator run`, from the clap Args struct in src/cli/run.rs (and the
    TlsArgs it flattens)."""
    source = (REPO / "src" / "cli" / "run.rs").read_text()
    flags = set()
    for struct in ("pub struct Args {", "pub struct TlsArgs {"):
        body = source[source.index(struct):]
        body = body[: body.index("\n}\n")]
        fields = re.findall(r"#\[arg\(([^\]]*)\)\]\s*(?:///[^\n]*\n\s*)*pub (\w+):", body)
        flags |= {"--" + name.replace("_", "-") for attrs, name in fields if re.search(r"\blong\b", attrs)}
    return flags


def test_every_chart_flag_exists_in_the_operator(scenario) -> None:
    # A renamed or missing flag would crash-loop the pod on `run`; catch it at render time.
    flags = run_flags()
    assert {"--webhook-addr", "--health-addr", "--webhook-secret", "--self-signed"} <= flags
    _, values = scenario
    args = operator_container(render(values))["args"]
    assert args[0] == "run"
    used = {a.split("=", 1)[0] for a in args[1:] if a.startswith("--")} - {"--foo"}
    assert used - flags == set()


def test_watch_namespaces_reach_the_operator() -> None:
    assert "--watch-namespaces" in run_flags()
    args = operator_container(render({"watchNamespaces": ["team-b", "team-a"]}))["args"]
    assert "--watch-namespaces=team-a,team-b" in args
    assert not any(a.startswith("--watch-namespaces") for a in operator_container(render())["args"])


def test_watch_namespaces_must_be_namespace_names() -> None:
    for bad in (["Team-A"], ["a,b"], "team-a"):
        with pytest.raises(Exception):
            render({"watchNamespaces": bad})


def test_each_release_elects_its_own_leader() -> None:
    # Two operators in one namespace (one per tenant) must not share a Lease, or only one leads.
    def lease_of(name: str) -> str:
        (flag,) = [a for a in operator_container(render(name=name))["args"]
                   if a.startswith("--leader-election-lease=")]
        return flag.split("=", 1)[1]

    assert "--leader-election-lease" in run_flags()
    assert lease_of("spin-operator") == "spin-operator-leader"  # the default release keeps its Lease
    assert lease_of("tenant-a") == "tenant-a-spin-operator-leader"
    assert lease_of("tenant-b") != lease_of("tenant-a")


def test_shutdown_periods_reach_the_operator_and_fit_the_grace_period() -> None:
    docs = render()
    args = operator_container(docs)["args"]
    assert "--shutdown-lame-duck-seconds=10" in args and "--shutdown-drain-seconds=15" in args
    assert pod_spec(docs)["terminationGracePeriodSeconds"] >= 10 + 15
    assert {"--shutdown-lame-duck-seconds", "--shutdown-drain-seconds"} <= run_flags()
    longer = {"shutdown": {"lameDuckSeconds": 30, "drainSeconds": 20}}
    with pytest.raises(Exception, match="terminationGracePeriodSeconds"):
        render(longer)
    docs = render({**longer, "terminationGracePeriodSeconds": 50})
    assert "--shutdown-lame-duck-seconds=30" in operator_container(docs)["args"]
    assert pod_spec(docs)["terminationGracePeriodSeconds"] == 50


def test_tls_settings_reach_the_webhook_server() -> None:
    assert {"--tls-min-version", "--tls-cipher-suites", "--metrics-auth"} <= run_flags()
    args = operator_container(render())["args"]
    assert "--tls-min-version=VersionTLS12" in args
    assert not any(a.startswith("--tls-cipher-suites") for a in args)
    suites = ["TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]
    args = operator_container(render({"tls": {"minVersion": "VersionTLS13", "cipherSuites": suites}}))["args"]
    assert "--tls-min-version=VersionTLS13" in args
    assert f"--tls-cipher-suites={','.join(suites)}" in args
    with pytest.raises(Exception):
        render({"tls": {"minVersion": "VersionTLS10"}})
