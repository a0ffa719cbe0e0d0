//! Webhook configurations as the chart installs them (no caBundle), for the self-signed tests.

use serde_json::{Value, json};

/// A `kind` (Mutating/ValidatingWebhookConfiguration) named `name` with two webhooks calling
/// the Service `service` in `namespace`.
pub fn webhook_config(kind: &str, name: &str, service: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": {"name": name},
        "webhooks": [
            {"name": "spinapp.core.spinkube.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/x"}}},
            {"name": "spinappexecutor.core.spinkube.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
             "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/y"}}}
        ]
    })
}
