//! `spin-operator validate` and `spin-operator rules`, run as the built binary.

use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("binary runs");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn examples_are_all_admitted() {
    let r = run(&["validate", "-f", "examples/"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(
        "spinapp.core.spinkube.dev/hello: admitted (defaulted: \
         spec.executor=\"containerd-shim-spin\", spec.replicas=1)"
    ));
    assert!(
        r.stdout
            .contains("spinappexecutor.core.spinkube.dev/traced-shim: admitted")
    );
    assert!(
        r.stdout
            .contains("horizontalpodautoscaler/autoscaled: skipped")
    );
    assert!(r.stdout.contains(" admitted, 0 denied"));
    assert!(
        !r.stdout.contains("broken"),
        "examples/invalid must not be read without -R"
    );
    assert!(!r.stderr.contains("Error from server"), "{}", r.stderr);
}

#[test]
fn invalid_examples_are_denied_with_every_error() {
    let r = run(&[
        "validate",
        "-f",
        "examples/executors.yaml",
        "examples/invalid/",
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    for expected in [
        "Error from server (Invalid): error when creating \"examples/invalid/bad-app.yaml\": \
         SpinApp.core.spinkube.dev \"broken\" is invalid:",
        "  * spec.replicas: Invalid value: -1: must be greater than or equal to 1",
        "  * spec.image: Invalid value: \"ghcr.io/Example/App:\": must be a valid OCI image reference",
        "  * spec.imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        "  * spec.variables[0].name: Invalid value: \"Greetee\"",
        "  * spec.variables[2].name: Duplicate value: \"dup\"",
        "  * spec.volumes[0].name: Invalid value: \"spin-data\"",
        "  * spec.volumeMounts[0].name: Not found: \"missing\"",
        "  * spec.volumeMounts[0].mountPath: Invalid value: \"/runtime-config.toml\"",
        "  * spec.checks.liveness.httpGet.path: Invalid value: \"healthz\"",
        "  * spec.checks.liveness.successThreshold: Invalid value: 2: must be 1",
        "  * spec.resources.requests[memory]: Invalid value: \"256Mi\": must be less than or equal to memory limit of 128Mi",
        "  * spec.invocationLimits[memory]: Invalid value: \"1Gi\"",
        "  * spec.runtimeConfig.llmCompute.options[1].name: Invalid value: \"token\": not an option of llm_compute type \"remote_http\"; did you mean \"auth_token\"?",
        "  * spec.podLabels[core.spinkube.dev/app-name]: Invalid value: \"hijack\"",
        "SpinAppExecutor.core.spinkube.dev \"confused\" is invalid:",
        "  * spec.deploymentConfig.spinImage: Forbidden: may not be set together with runtimeClassName",
        "  * spec.deploymentConfig.otel.exporter_otlp_endpoint: Invalid value: \"collector:4318\"",
    ] {
        assert!(
            r.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            r.stderr
        );
    }
    assert!(r.stdout.contains("4 admitted, 2 denied"), "{}", r.stdout);
}

#[test]
fn output_shows_the_defaulted_object_or_patch() {
    let r = run(&[
        "validate",
        "-f",
        "examples/executors.yaml",
        "examples/hello.yaml",
        "-o",
        "patch",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let start = r.stdout.find('[').unwrap();
    let end = r.stdout.rfind(']').unwrap();
    let patch: serde_json::Value = serde_json::from_str(&r.stdout[start..=end]).unwrap();
    assert_eq!(
        patch,
        serde_json::json!([
            {"op": "add", "path": "/spec/executor", "value": "containerd-shim-spin"},
            {"op": "add", "path": "/spec/replicas", "value": 1}
        ])
    );
    let r = run(&[
        "validate",
        "-f",
        "examples/executors.yaml",
        "examples/hello.yaml",
        "-o",
        "yaml",
    ]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("executor: containerd-shim-spin\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("replicas: 1\n"), "{}", r.stdout);
}

#[test]
fn missing_executor_denied_unless_opted_in() {
    let strict = run(&["validate", "-f", "tests/fixtures/rules/gitops-app.yaml"]);
    assert_eq!(strict.code, 1);
    assert!(
        strict.stderr.contains(
            "spec.executor: Not found: \"arrives-later\": no SpinAppExecutor \"arrives-later\" in \
         namespace \"apps\" (none exist)"
        ),
        "{}",
        strict.stderr
    );
    let lenient = run(&[
        "validate",
        "-f",
        "tests/fixtures/rules/gitops-app.yaml",
        "--allow-missing-executor",
    ]);
    assert_eq!(lenient.code, 0, "{}", lenient.stderr);
    assert!(
        lenient
            .stderr
            .contains("Warning: spec.executor: SpinAppExecutor \"arrives-later\"")
    );
    assert!(
        lenient
            .stdout
            .contains("spinapp.core.spinkube.dev/early: admitted")
    );
}

#[test]
fn undecodable_objects_get_field_errors_and_the_run_goes_on() {
    let r = run(&[
        "validate",
        "-f",
        "examples/executors.yaml",
        "tests/fixtures/rules/malformed.yaml",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("  * spec.replicas: Invalid value: \"three\": must be of type integer"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("  * spec.variables[1].name: Invalid value: 42: must be of type string"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("Warning: spec.image \"ghcr.io/example/app\" uses the \"latest\" tag")
    );
    assert!(
        r.stdout
            .contains("spinapp.core.spinkube.dev/still-checked: admitted")
    );
}

#[test]
fn unreadable_input_exits_2() {
    let r = run(&["validate", "-f", "tests/fixtures/rules/does-not-exist.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does-not-exist.yaml"), "{}", r.stderr);
    let r = run(&["validate", "-f", "tests/fixtures/rules/not-yaml.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not valid YAML"), "{}", r.stderr);
}

#[test]
fn rules_prints_the_catalogue() {
    let md = run(&["rules"]);
    assert_eq!(md.code, 0);
    assert_eq!(md.stdout, spin_operator::rules::catalogue_markdown());
    let json = run(&["rules", "--format", "json"]);
    assert_eq!(json.code, 0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v.as_array().unwrap().len(),
        spin_operator::rules::catalogue().len()
    );
    let vap = run(&["rules", "--format", "vap"]);
    assert_eq!(vap.code, 0);
    assert_eq!(vap.stdout, spin_operator::rules::vap::yaml().unwrap());
}
