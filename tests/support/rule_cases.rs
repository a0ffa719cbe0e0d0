//! The rule-table test cases: every rule with a rejecting and an accepting spec, and the
//! inventory they are judged against. Shared by tests/rules_table.rs (the webhooks) and
//! tests/admission_policy.rs (the ValidatingAdmissionPolicy); included with `#[path]`.
#![allow(dead_code)] // each test file uses a different subset

use serde_json::{Value, json};
use spin_operator::inventory::Inventory;

pub const NS: &str = "default";

pub fn executor(name: &str, ns: &str, spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Executors `containerd-shim-spin` (creates Deployments) and `external` (does not) in
/// `default`, `other-ns-only` in `other`; Secret `creds` and ConfigMap `settings` exist, and the
/// inventory is complete (anything else is known to be absent).
pub fn inventory() -> Inventory {
    let mut inv = Inventory {
        complete: true,
        ..Default::default()
    };
    for e in [
        executor(
            "containerd-shim-spin",
            NS,
            json!({"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}),
        ),
        executor("external", NS, json!({"createDeployment": false})),
        executor(
            "other-ns-only",
            "other",
            json!({"createDeployment": true, "deploymentConfig": {"runtimeClassName": "x"}}),
        ),
    ] {
        inv.add_executor(serde_json::from_value(e).unwrap());
    }
    inv.add_secret(
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": NS}}))
        .unwrap(),
    );
    inv.add_config_map(
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": NS}}))
        .unwrap(),
    );
    inv
}

pub fn app_object(spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": {"name": "app", "namespace": NS}, "spec": spec})
}

/// A valid spec with `changes` merged in (RFC 7386: `null` removes a field).
pub fn spec_with(changes: Value) -> Value {
    let mut spec = json!({
        "image": "ghcr.io/example/app:v1.0.0",
        "executor": "containerd-shim-spin",
        "replicas": 1,
    });
    json_patch::merge(&mut spec, &changes);
    spec
}

/// `(rule, rejecting spec changes, accepting spec changes)` for SpinApps.
pub fn app_cases() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "SA-DECODE",
            json!({"replicas": "three"}),
            json!({"replicas": 3}),
        ),
        ("SA-EXECUTOR-REQUIRED", json!({"executor": null}), json!({})),
        (
            "SA-EXECUTOR-EXISTS",
            json!({"executor": "nope"}),
            json!({"executor": "external"}),
        ),
        (
            "SA-EXECUTOR-EXISTS",
            json!({"executor": "other-ns-only"}),
            json!({}),
        ),
        (
            "SA-EXECUTOR-EXISTS",
            json!({"executor": "Bad_Name"}),
            json!({}),
        ),
        (
            "SA-REPLICAS-MIN",
            json!({"replicas": 0}),
            json!({"replicas": 5}),
        ),
        (
            "SA-REPLICAS-AUTOSCALING",
            json!({"enableAutoscaling": true, "replicas": 2}),
            json!({"enableAutoscaling": true, "replicas": null}),
        ),
        (
            "SA-ANNOTATIONS-NO-DEPLOYMENT",
            json!({"executor": "external", "podAnnotations": {"a": "b"}}),
            json!({"podAnnotations": {"a": "b"}}),
        ),
        (
            "SA-ANNOTATIONS-NO-DEPLOYMENT",
            json!({"executor": "external", "deploymentAnnotations": {"a": "b"}}),
            json!({"executor": "external", "serviceAnnotations": {"a": "b"}}),
        ),
        (
            "SA-IMAGE-REQUIRED",
            json!({"image": ""}),
            json!({"image": "nginx:1"}),
        ),
        (
            "SA-IMAGE-REFERENCE",
            json!({"image": "ghcr.io/<user>/<image>:<tag>"}),
            json!({}),
        ),
        (
            "SA-IMAGE-REFERENCE",
            json!({"image": "ghcr.io/Example/App:v1"}),
            json!({}),
        ),
        (
            "SA-IMAGE-LATEST",
            json!({"image": "ghcr.io/a/b"}),
            json!({"image": "ghcr.io/a/b:v1"}),
        ),
        (
            "SA-IMAGE-LATEST",
            json!({"image": "ghcr.io/a/b:latest"}),
            json!({}),
        ),
        (
            "SA-IMAGE-PULL-POLICY",
            json!({"imagePullPolicy": "Sometimes"}),
            json!({"imagePullPolicy": "Never"}),
        ),
        (
            "SA-SERVICE-ACCOUNT-NAME",
            json!({"serviceAccountName": "Not_Valid"}),
            json!({"serviceAccountName": "app-sa"}),
        ),
        (
            "SA-REF-NAME",
            json!({"imagePullSecrets": [{"name": "Bad Name"}]}),
            json!({"imagePullSecrets": [{"name": "creds"}]}),
        ),
        (
            "SA-REF-MISSING",
            json!({"variables": [{"name": "a", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}),
            json!({"variables": [{"name": "a", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}}]}),
        ),
        (
            "SA-REF-MISSING",
            json!({"runtimeConfig": {"loadFromSecret": "gone"}}),
            json!({"runtimeConfig": {"loadFromSecret": "creds"}}),
        ),
        (
            "SA-VARIABLE-NAME",
            json!({"variables": [{"name": "Greetee", "value": "x"}]}),
            json!({"variables": [{"name": "greetee", "value": "x"}]}),
        ),
        (
            "SA-VARIABLE-DUPLICATE",
            json!({"variables": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}),
            json!({"variables": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}),
        ),
        (
            "SA-VARIABLE-SOURCE",
            json!({"variables": [{"name": "a", "value": "1", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}),
            json!({"variables": [{"name": "a", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}),
        ),
        (
            "SA-VARIABLE-SOURCE",
            json!({"variables": [{"name": "a"}]}),
            json!({"variables": [{"name": "a", "value": ""}]}),
        ),
        (
            "SA-VARIABLE-SOURCE",
            json!({"variables": [{"name": "a", "valueFrom": {}}]}),
            json!({"variables": [{"name": "a", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}),
        ),
        (
            "SA-VOLUME-NAME",
            json!({"volumes": [{"name": "Data", "emptyDir": {}}]}),
            json!({"volumes": [{"name": "data", "emptyDir": {}}]}),
        ),
        (
            "SA-VOLUME-RESERVED",
            json!({"volumes": [{"name": "spin-data", "emptyDir": {}}]}),
            json!({"volumes": [{"name": "my-spin-data", "emptyDir": {}}]}),
        ),
        (
            "SA-VOLUME-DUPLICATE",
            json!({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}]}),
            json!({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "e", "emptyDir": {}}]}),
        ),
        (
            "SA-VOLUMEMOUNT-VOLUME",
            json!({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "/d"}]}),
            json!({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/d"}]}),
        ),
        (
            "SA-VOLUMEMOUNT-PATH",
            json!({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/runtime-config.toml"}]}),
            json!({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/runtime-config"}]}),
        ),
        (
            "SA-VOLUMEMOUNT-PATH",
            json!({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/etc/ssl/certs/ca-certificates.crt/"}]}),
            json!({"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/etc/ssl/private"}]}),
        ),
        (
            "SA-VOLUMEMOUNT-PATH",
            json!({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "e", "emptyDir": {}}],
                   "volumeMounts": [{"name": "d", "mountPath": "/x"}, {"name": "e", "mountPath": "/x/"}]}),
            json!({"volumes": [{"name": "d", "emptyDir": {}}, {"name": "e", "emptyDir": {}}],
                   "volumeMounts": [{"name": "d", "mountPath": "/x"}, {"name": "e", "mountPath": "/y"}]}),
        ),
        (
            "SA-PROBE-HTTPGET",
            json!({"checks": {"readiness": {"periodSeconds": 5}}}),
            json!({"checks": {"readiness": {"httpGet": {"path": "/ready"}, "periodSeconds": 5}}}),
        ),
        (
            "SA-PROBE-PATH",
            json!({"checks": {"liveness": {"httpGet": {"path": "healthz"}}}}),
            json!({"checks": {"liveness": {"httpGet": {"path": "/healthz"}}}}),
        ),
        (
            "SA-PROBE-HEADER",
            json!({"checks": {"liveness": {"httpGet": {"path": "/", "httpHeaders": [{"name": "X Bad", "value": "v"}]}}}}),
            json!({"checks": {"liveness": {"httpGet": {"path": "/", "httpHeaders": [{"name": "X-Good", "value": "v"}]}}}}),
        ),
        (
            "SA-PROBE-THRESHOLDS",
            json!({"checks": {"readiness": {"httpGet": {"path": "/"}, "failureThreshold": 0}}}),
            json!({"checks": {"readiness": {"httpGet": {"path": "/"}, "failureThreshold": 1}}}),
        ),
        (
            "SA-PROBE-THRESHOLDS",
            json!({"checks": {"readiness": {"httpGet": {"path": "/"}, "initialDelaySeconds": -1}}}),
            json!({"checks": {"readiness": {"httpGet": {"path": "/"}, "initialDelaySeconds": 0}}}),
        ),
        (
            "SA-PROBE-LIVENESS-SUCCESS",
            json!({"checks": {"liveness": {"httpGet": {"path": "/"}, "successThreshold": 2}}}),
            json!({"checks": {"readiness": {"httpGet": {"path": "/"}, "successThreshold": 2}}}),
        ),
        (
            "SA-RESOURCES-QUANTITY",
            json!({"resources": {"limits": {"memory": "128MB"}}}),
            json!({"resources": {"limits": {"memory": "128M"}}}),
        ),
        (
            "SA-RESOURCES-QUANTITY",
            json!({"resources": {"requests": {"cpu": "-1"}}}),
            json!({"resources": {"requests": {"cpu": "0"}}}),
        ),
        (
            "SA-RESOURCES-REQUESTS-LE-LIMITS",
            json!({"resources": {"limits": {"memory": "128Mi"}, "requests": {"memory": "129Mi"}}}),
            json!({"resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "1024Mi"}}}),
        ),
        (
            "SA-RESOURCES-REQUESTS-LE-LIMITS",
            json!({"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "0.6"}}}),
            json!({"resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "0.5"}}}),
        ),
        (
            "SA-INVOCATION-MEMORY",
            json!({"invocationLimits": {"memory": "lots"}}),
            json!({"invocationLimits": {"memory": "64Mi"}}),
        ),
        (
            "SA-INVOCATION-MEMORY",
            json!({"invocationLimits": {"memory": "0"}}),
            json!({"invocationLimits": {"memory": "1"}}),
        ),
        (
            "SA-INVOCATION-MEMORY-LIMIT",
            json!({"invocationLimits": {"memory": "1Gi"}, "resources": {"limits": {"memory": "128Mi"}}}),
            json!({"invocationLimits": {"memory": "128Mi"}, "resources": {"limits": {"memory": "128Mi"}}}),
        ),
        (
            "SA-INVOCATION-MEMORY-LIMIT",
            json!({"invocationLimits": {"memory": "1Gi"}, "resources": {"requests": {"memory": "128Mi"}}}),
            json!({"invocationLimits": {"memory": "1Gi"}, "resources": {"requests": {"cpu": "1"}}}),
        ),
        (
            "SA-INVOCATION-UNKNOWN",
            json!({"invocationLimits": {"cpu": "1"}}),
            json!({"invocationLimits": {"memory": "1Mi"}}),
        ),
        (
            "SA-COMPONENTS-EMPTY",
            json!({"components": []}),
            json!({"components": ["hello"]}),
        ),
        (
            "SA-COMPONENTS-ID",
            json!({"components": ["hello_world"]}),
            json!({"components": ["hello-world"]}),
        ),
        (
            "SA-COMPONENTS-DUPLICATE",
            json!({"components": ["a", "a"]}),
            json!({"components": ["a", "b"]}),
        ),
        (
            "SA-RC-EXCLUSIVE",
            json!({"runtimeConfig": {"loadFromSecret": "creds", "llmCompute": {"type": "spin"}}}),
            json!({"runtimeConfig": {"llmCompute": {"type": "spin"}}}),
        ),
        (
            "SA-RC-NAME",
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "spin"}, {"name": "default", "type": "redis", "options": [{"name": "url", "value": "redis://r"}]}]}}),
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "spin"}, {"name": "cache", "type": "redis", "options": [{"name": "url", "value": "redis://r"}]}]}}),
        ),
        (
            "SA-RC-TYPE",
            json!({"runtimeConfig": {"sqliteDatabases": [{"name": "default", "type": ""}]}}),
            json!({"runtimeConfig": {"sqliteDatabases": [{"name": "default", "type": "spin"}]}}),
        ),
        (
            "SA-RC-TYPE-UNKNOWN",
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "memcached"}]}}),
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "azure_cosmos",
                "options": [{"name": "account", "value": "a"}, {"name": "key", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}]}}),
        ),
        (
            "SA-RC-OPTION",
            json!({"runtimeConfig": {"sqliteDatabases": [{"name": "default", "type": "libsql", "options": [{"name": "url", "value": "a"}, {"name": "url", "value": "b"}]}]}}),
            json!({"runtimeConfig": {"sqliteDatabases": [{"name": "default", "type": "libsql", "options": [{"name": "url", "value": "a"}, {"name": "token", "value": "b"}]}]}}),
        ),
        (
            "SA-RC-OPTION-SOURCE",
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "redis", "options": [{"name": "url"}]}]}}),
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "redis", "options": [{"name": "url", "value": "redis://r"}]}]}}),
        ),
        (
            "SA-RC-OPTION-SOURCE",
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "redis", "options": [{"name": "url",
                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}, "configMapKeyRef": {"name": "settings", "key": "k"}}}]}]}}),
            json!({"runtimeConfig": {"keyValueStores": [{"name": "default", "type": "redis", "options": [{"name": "url",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}]}}),
        ),
        (
            "SA-RC-KEY-UNKNOWN",
            json!({"runtimeConfig": {"llmCompute": {"type": "remote_http", "options": [{"name": "timeout", "value": "1"}]}}}),
            json!({"runtimeConfig": {"llmCompute": {"type": "remote_http", "options": [{"name": "url", "value": "https://x"}]}}}),
        ),
        (
            "SA-RC-KEY-MISSPELLED",
            json!({"runtimeConfig": {"llmCompute": {"type": "remote_http", "options": [{"name": "token", "value": "t"}]}}}),
            json!({"runtimeConfig": {"llmCompute": {"type": "remote_http", "options": [{"name": "auth_token", "value": "t"}]}}}),
        ),
        (
            "SA-PODLABELS-SELECTOR",
            json!({"podLabels": {"core.spinkube.dev/app.app.status": "ready"}}),
            json!({"podLabels": {"core.spinkube.dev/app.other.status": "ready"}}),
        ),
        (
            "SA-LABEL-KEY",
            json!({"nodeSelector": {"bad key": "x"}}),
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
        ),
        (
            "SA-LABEL-VALUE",
            json!({"podLabels": {"tier": "front end"}}),
            json!({"podLabels": {"tier": "front-end"}}),
        ),
        (
            "SA-ANNOTATION-KEY",
            json!({"serviceAnnotations": {"-bad": "x"}}),
            json!({"serviceAnnotations": {"service.beta.kubernetes.io/x": "any value at all"}}),
        ),
        (
            "SA-ANNOTATION-SIZE",
            json!({"podAnnotations": {"big": "x".repeat(256 * 1024)}}),
            json!({"podAnnotations": {"big": "x".repeat(1024)}}),
        ),
    ]
}

pub fn executor_cases() -> Vec<(&'static str, Value, Value)> {
    let shim = |extra: Value| {
        let mut config = json!({"runtimeClassName": "wasmtime-spin-v2"});
        json_patch::merge(&mut config, &extra);
        json!({"createDeployment": true, "deploymentConfig": config})
    };
    vec![
        (
            "SAE-DECODE",
            json!({"createDeployment": "yes"}),
            json!({"createDeployment": false}),
        ),
        (
            "SAE-DEPLOYMENT-CONFIG-REQUIRED",
            json!({"createDeployment": true}),
            shim(json!({})),
        ),
        (
            "SAE-DEPLOYMENT-CONFIG-UNUSED",
            json!({"createDeployment": false, "deploymentConfig": {"runtimeClassName": "x"}}),
            json!({"createDeployment": false}),
        ),
        (
            "SAE-RUNTIME-XOR",
            shim(json!({"spinImage": "ghcr.io/spinframework/spin:v3"})),
            shim(json!({})),
        ),
        (
            "SAE-RUNTIME-XOR",
            shim(json!({"runtimeClassName": null})),
            shim(json!({})),
        ),
        (
            "SAE-RUNTIME-CLASS-NAME",
            shim(json!({"runtimeClassName": "Wasm_Time"})),
            shim(json!({})),
        ),
        (
            "SAE-SPIN-IMAGE",
            json!({"createDeployment": true, "deploymentConfig": {"spinImage": "ghcr.io/Spin:v3"}}),
            json!({"createDeployment": true, "deploymentConfig": {"spinImage": "ghcr.io/spin:v3"}}),
        ),
        (
            "SAE-CA-SECRET-NAME",
            shim(json!({"caCertSecret": "CA!"})),
            shim(json!({"caCertSecret": "corp-ca"})),
        ),
        (
            "SAE-OTEL-ENDPOINT",
            shim(json!({"otel": {"exporter_otlp_endpoint": "collector:4318"}})),
            shim(json!({"otel": {"exporter_otlp_endpoint": "http://collector:4318"}})),
        ),
        (
            "SAE-OTEL-ENDPOINT",
            shim(json!({"otel": {"exporter_otlp_logs_endpoint": "ftp://collector/logs"}})),
            shim(json!({"otel": {"exporter_otlp_logs_endpoint": "https://collector/v1/logs"}})),
        ),
    ]
}
