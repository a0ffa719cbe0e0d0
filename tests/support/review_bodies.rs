//! The SpinApp AdmissionReview bodies of the admission benches (load and profile), so both
//! measure the same request. Included with `#[path]` (not a test target of its own).

use serde_json::{Value, json};

pub const NS: &str = "apps";
pub const EXECUTOR: &str = "containerd-shim-spin";
pub const MUTATE_APP: &str = "/mutate-core-spinkube-dev-v1alpha1-spinapp";
pub const VALIDATE_APP: &str = "/validate-core-spinkube-dev-v1alpha1-spinapp";

/// The executor the bench namespace holds.
pub fn executor() -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": EXECUTOR, "namespace": NS},
        "spec": {"createDeployment": true,
                 "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}
    })
}

/// A small SpinApp (~1 KiB as a review); `executor`/`replicas` unset for the mutate body.
pub fn app(executor: Option<&str>, replicas: Option<u32>) -> Value {
    let mut spec = json!({
        "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
        "podAnnotations": {"example.com/team": "wasm"},
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
    });
    if let Some(e) = executor {
        spec["executor"] = json!(e);
    }
    if let Some(r) = replicas {
        spec["replicas"] = json!(r);
    }
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": "web", "namespace": NS, "labels": {"team": "wasm"}},
        "spec": spec,
    })
}

/// An AdmissionReview shaped like the apiserver's (CREATE of a SpinApp).
pub fn review(object: Value) -> Vec<u8> {
    let gvk = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"});
    let gvr = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"});
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "3b8f7d8e-0c44-4a8e-9a51-5f8d7c1d0a01",
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "web", "namespace": NS, "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Body of the validate point: executor and replicas set, allowed without warnings.
pub fn validate_body() -> Vec<u8> {
    review(app(Some(EXECUTOR), Some(2)))
}

/// Body of the mutate point: executor and replicas unset, a 2-operation patch.
pub fn mutate_body() -> Vec<u8> {
    review(app(None, None))
}
