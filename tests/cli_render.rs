//! `spin-operator render` end to end: the real binary on the example manifests.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .arg("render")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Values resolved from `examples/runtime-config.yaml`'s Secret.
const EXAMPLE_SECRETS: [&str; 3] = [
    "example-libsql-token",
    "example-password",
    "example-llm-token",
];

fn yaml_docs(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn renders_yaml_with_secrets_redacted_by_default() {
    let out = render(&[
        "-f",
        "examples/executors.yaml",
        "-f",
        "examples/runtime-config.yaml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for secret in EXAMPLE_SECRETS {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    let docs = yaml_docs(&text);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "Secret", "Deployment", "Service"]);
    let rc = &docs[1];
    assert!(
        rc["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("stateful-")
    );
    assert_eq!(
        rc["data"]["runtime-config.toml"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(docs[0]["metadata"]["name"].as_str(), Some("spin-ca"));
    assert_eq!(
        docs[0]["data"]["ca-certificates.crt"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(docs[2]["metadata"]["name"].as_str(), Some("stateful"));
}

#[test]
fn show_secrets_prints_the_runtime_config() {
    let out = render(&[
        "-f",
        "examples/executors.yaml",
        "-f",
        "examples/runtime-config.yaml",
        "--show-secrets",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let rc = items
        .iter()
        .find(|i| {
            i["kind"] == "Secret"
                && i["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("stateful-")
        })
        .unwrap();
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(rc["data"]["runtime-config.toml"].clone()).unwrap();
    let toml_text = String::from_utf8(bytes.0).unwrap();
    let doc: toml::Table = toml_text.parse().unwrap();
    assert_eq!(
        doc["sqlite_database"]["default"]["token"].as_str(),
        Some("example-libsql-token")
    );
    // The Deployment mounts the Secret that was printed.
    let deployment = items.iter().find(|i| i["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        rc["metadata"]["name"]
    );
}

#[test]
fn unset_executor_defaults_to_first_in_namespace() {
    let out = render(&["-f", "examples/executors.yaml", "-f", "examples/hello.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = yaml_docs(&stdout(&out));
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    // containerd-shim-spin sorts first among the example executors.
    assert_eq!(
        deployment["spec"]["template"]["spec"]["runtimeClassName"].as_str(),
        Some("wasmtime-spin-v2")
    );
}

#[test]
fn directory_input_renders_all_apps_and_ca_once() {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "executors.yaml",
        "hello.yaml",
        "annotated.yaml",
        "external.yaml",
    ] {
        std::fs::copy(root().join("examples").join(f), dir.path().join(f)).unwrap();
    }
    let out = render(&["-f", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let docs = yaml_docs(&stdout(&out));
    let services: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["annotated", "elsewhere", "hello"]);
    let ca = docs
        .iter()
        .filter(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "spin-ca")
        .count();
    assert_eq!(ca, 1);
    let deployments = docs.iter().filter(|d| d["kind"] == "Deployment").count();
    assert_eq!(deployments, 2, "external executor: no Deployment");
}

#[test]
fn missing_references_fail_that_app_only() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata: {name: broken}\nspec:\n  image: i\n  executor: containerd-shim-spin\n  runtimeConfig:\n    keyValueStores:\n      - name: default\n        type: redis\n        options: [{name: url, valueFrom: {secretKeyRef: {name: absent, key: url}}}]\n---\napiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata: {name: nowhere}\nspec: {image: i, executor: no-such-executor}\n",
    )
    .unwrap();
    let out = render(&[
        "-f",
        "examples/executors.yaml",
        "-f",
        broken.to_str().unwrap(),
        "-f",
        "examples/annotated.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("default/broken"), "{err}");
    assert!(err.contains("\"absent\""), "{err}");
    assert!(err.contains("MissingSecret"), "{err}");
    assert!(err.contains("default/nowhere"), "{err}");
    assert!(err.contains("no-such-executor"), "{err}");
    // The good app is still rendered.
    let docs = yaml_docs(&stdout(&out));
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "annotated")
    );
    assert!(!docs.iter().any(|d| d["metadata"]["name"] == "broken"));
}

#[test]
fn errors_never_print_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dup.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: hunter2-value}\n---\napiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata: {name: dup}\nspec:\n  image: i\n  executor: containerd-shim-spin\n  runtimeConfig:\n    keyValueStores:\n      - {name: d, type: redis, options: [{name: url, valueFrom: {secretKeyRef: {name: s, key: k}}}]}\n      - {name: d, type: redis, options: [{name: url, valueFrom: {secretKeyRef: {name: s, key: k}}}]}\n",
    )
    .unwrap();
    let out = render(&["-f", "examples/executors.yaml", "-f", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("InvalidRuntimeConfig"), "{all}");
    assert!(!all.contains("hunter2-value"), "{all}");
}

#[test]
fn unreadable_input_is_an_error() {
    let out = render(&["-f", "does/not/exist.yaml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does/not/exist.yaml"));
}
