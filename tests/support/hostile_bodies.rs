//! AdmissionReview bodies built to cost the webhook the most memory and CPU per byte, each just
//! under the body limit: the worst inputs of `tests/admission_memory.rs` and of the hostile-load
//! benchmark (BENCHMARKS.md, "Webhook under hostile load"). Included with `#[path]`.

#![allow(dead_code)]

use serde_json::{Value, json};
use spin_operator::inventory::Inventory;

/// The cluster the bodies are judged against: namespace `apps` with the executor
/// `containerd-shim-spin`.
pub fn inventory() -> Inventory {
    let mut inv = Inventory {
        complete: true,
        ..Default::default()
    };
    let executor = serde_json::from_value(json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": "containerd-shim-spin", "namespace": "apps"},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}
    }))
    .expect("executor fixture");
    inv.add_executor(executor);
    inv
}

/// A valid SpinApp CREATE review (uid `u-1`, namespace `apps`), allowed against [`inventory`].
pub fn normal_review() -> Vec<u8> {
    let gvk = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"});
    let gvr = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"});
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": gvk, "resource": gvr, "name": "web", "namespace": "apps",
            "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "metadata": {"name": "web", "namespace": "apps"},
                "spec": {"image": "ghcr.io/example/web:v1", "executor": "containerd-shim-spin", "replicas": 1}
            }
        }
    }))
    .unwrap_or_default()
}

pub const VALIDATE_APP: &str = "/validate-core-spinkube-dev-v1alpha1-spinapp";
pub const MUTATE_APP: &str = "/mutate-core-spinkube-dev-v1alpha1-spinapp";
pub const VALIDATE_EXECUTOR: &str = "/validate-core-spinkube-dev-v1alpha1-spinappexecutor";

/// What replaces the `"@"` placeholder: a list or an object of generated elements, or a string.
#[derive(Clone, Copy)]
enum Fill {
    /// `[e(0),e(1),...]`
    List(fn(usize) -> String),
    /// `{e(0),e(1),...}` (members)
    Object(fn(usize) -> String),
    /// `"xxx..."`
    Text,
}

/// A review of `operation` on `resource` whose object (and old object, for UPDATE) is `object`,
/// each `"@"` placeholder filled so that the body is about `size` bytes.
fn review(resource: &str, operation: &str, object: Value, fill: Fill, size: usize) -> Vec<u8> {
    let kind = if resource == "spinapps" {
        "SpinApp"
    } else {
        "SpinAppExecutor"
    };
    let gvk = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "kind": kind});
    let gvr = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "resource": resource});
    let old = if operation == "UPDATE" {
        object.clone()
    } else {
        Value::Null
    };
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "hostile", "kind": gvk, "resource": gvr, "name": "web", "namespace": "apps",
            "operation": operation, "userInfo": {"username": "mallory"},
            "object": object, "oldObject": old,
        }
    });
    let skeleton = serde_json::to_string(&body).unwrap_or_default();
    let holes = skeleton.matches("\"@\"").count().max(1);
    let room = size.saturating_sub(skeleton.len()) / holes;
    let (open, close, element): (&str, &str, fn(usize) -> String) = match fill {
        Fill::List(e) => ("[", "]", e),
        Fill::Object(e) => ("{", "}", e),
        Fill::Text => ("\"", "\"", |_| "x".to_string()),
    };
    let separator = if matches!(fill, Fill::Text) { "" } else { "," };
    let mut text = String::from(open);
    let mut i = 0;
    while text.len() + 2 < room {
        if i > 0 {
            text.push_str(separator);
        }
        text.push_str(&element(i));
        i += 1;
    }
    text.push_str(close);
    skeleton.replace("\"@\"", &text).into_bytes()
}

fn app(spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": {"name": "web", "namespace": "apps"}, "spec": spec})
}

/// `(name, route, body)` of every hostile body, each `size` bytes (about).
pub fn hostile_bodies(size: usize) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    vec![
        // The densest JSON for `Value`: 2 bytes of body per 32-byte element.
        (
            "non-object spec [0,0,...]",
            VALIDATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!("@")),
                Fill::List(|_| "0".into()),
                size,
            ),
        ),
        (
            "spec.replicas [0,0,...]",
            VALIDATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!({"image": "a", "replicas": "@"})),
                Fill::List(|_| "0".into()),
                size,
            ),
        ),
        (
            "mutate spec.replicas [0,0,...]",
            MUTATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!({"image": "a", "replicas": "@"})),
                Fill::List(|_| "0".into()),
                size,
            ),
        ),
        (
            "UPDATE spec.replicas [0,0,...] twice",
            VALIDATE_APP,
            review(
                "spinapps",
                "UPDATE",
                app(json!({"image": "a", "replicas": "@"})),
                Fill::List(|_| "0".into()),
                size,
            ),
        ),
        // One decode pass per bad element, each over the whole list.
        (
            "variables [{name:1},...]",
            VALIDATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!({"image": "a", "executor": "containerd-shim-spin", "variables": "@"})),
                Fill::List(|_| r#"{"name":1}"#.into()),
                size,
            ),
        ),
        (
            "mutate variables [{name:1},...]",
            MUTATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!({"image": "a", "variables": "@"})),
                Fill::List(|_| r#"{"name":1}"#.into()),
                size,
            ),
        ),
        // Valid entries: every rule runs over all of them.
        (
            "variables [{name:vN,value:x},...] valid",
            VALIDATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!({"image": "a", "executor": "containerd-shim-spin", "variables": "@"})),
                Fill::List(|i| format!(r#"{{"name":"v{i}","value":"x"}}"#)),
                size,
            ),
        ),
        (
            "mutate variables [{name:vN,value:x},...] valid",
            MUTATE_APP,
            review(
                "spinapps",
                "UPDATE",
                app(json!({"image": "a", "variables": "@"})),
                Fill::List(|i| format!(r#"{{"name":"v{i}","value":"x"}}"#)),
                size,
            ),
        ),
        (
            "podAnnotations {kN:v,...} many keys",
            VALIDATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(
                    json!({"image": "a", "executor": "containerd-shim-spin", "podAnnotations": "@"}),
                ),
                Fill::Object(|i| format!(r#""k{i}":"v""#)),
                size,
            ),
        ),
        // A megabyte string echoed in an error.
        (
            "spec.replicas one huge string",
            VALIDATE_APP,
            review(
                "spinapps",
                "CREATE",
                app(json!({"image": "a", "replicas": "@"})),
                Fill::Text,
                size,
            ),
        ),
        (
            "executor deploymentConfig [0,0,...]",
            VALIDATE_EXECUTOR,
            review(
                "spinappexecutors",
                "CREATE",
                json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                       "metadata": {"name": "e", "namespace": "apps"},
                       "spec": {"createDeployment": true, "deploymentConfig": "@"}}),
                Fill::List(|_| "0".into()),
                size,
            ),
        ),
    ]
}
