//! Every rule of the table, one accepting and one rejecting case each, plus defaulting patches,
//! ratcheting, finalizing objects and the executor DELETE guard (through the public API only).

use serde_json::{Value, json};
use spin_operator::inventory::Inventory;
use spin_operator::rules::{
    self, Decision, ErrorType, Operation, Options, Request, Severity, catalogue,
};

const NS: &str = "default";

fn executor(name: &str, ns: &str, spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Executors `containerd-shim-spin` (creates Deployments) and `external` (does not) in
/// `default`, `other-ns-only` in `other`; Secret `creds` and ConfigMap `settings` exist, and the
/// inventory is complete (anything else is known to be absent).
fn inventory() -> Inventory {
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

fn app_object(spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": {"name": "app", "namespace": NS}, "spec": spec})
}

/// A valid spec with `changes` merged in (RFC 7386: `null` removes a field).
fn spec_with(changes: Value) -> Value {
    let mut spec = json!({
        "image": "ghcr.io/example/app:v1.0.0",
        "executor": "containerd-shim-spin",
        "replicas": 1,
    });
    json_patch::merge(&mut spec, &changes);
    spec
}

fn validate_app(spec: Value, opts: &Options) -> Decision {
    let object = app_object(spec);
    let req = Request {
        operation: Operation::Create,
        namespace: NS,
        name: "app",
        object: Some(&object),
        old_object: None,
    };
    rules::validate_spinapp(&req, &inventory(), opts)
}

fn validate_executor(spec: Value) -> Decision {
    let object = executor("exec", NS, spec);
    let req = Request {
        operation: Operation::Create,
        namespace: NS,
        name: "exec",
        object: Some(&object),
        old_object: None,
    };
    rules::validate_executor(&req, &inventory(), &Options::default())
}

fn severity_of(id: &str) -> Severity {
    catalogue()
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("{id} not in catalogue"))
        .severity
}

/// Asserts `reject` fires `rule` (as an error or warning per the catalogue) and `accept` does
/// not fire it and is admitted.
fn assert_rule(rule: &str, reject: &Decision, accept: &Decision) {
    assert!(
        reject.rules_fired.contains(&rule),
        "{rule} did not fire: {reject:#?}"
    );
    match severity_of(rule) {
        Severity::Error => {
            assert!(!reject.allowed(), "{rule}: expected a denial");
            assert!(reject.errors.iter().any(|e| e.rule == rule), "{reject:#?}");
        }
        Severity::Warning => {
            assert!(
                reject.warnings.iter().any(|w| w.rule == rule),
                "{reject:#?}"
            );
        }
    }
    assert!(
        !accept.rules_fired.contains(&rule),
        "{rule} fired on the accepting case: {accept:#?}"
    );
    assert!(
        accept.allowed(),
        "{rule}: accepting case denied: {accept:#?}"
    );
}

/// `(rule, rejecting spec changes, accepting spec changes)` for SpinApps.
fn app_cases() -> Vec<(&'static str, Value, Value)> {
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

#[test]
fn the_base_spec_is_clean() {
    let d = validate_app(spec_with(json!({})), &Options::default());
    assert!(
        d.allowed() && d.warnings.is_empty() && d.rules_fired.is_empty(),
        "{d:#?}"
    );
}

#[test]
fn every_spinapp_rule_accepts_and_rejects() {
    for (rule, reject, accept) in app_cases() {
        let opts = Options::default();
        assert_rule(
            rule,
            &validate_app(spec_with(reject), &opts),
            &validate_app(spec_with(accept), &opts),
        );
    }
}

#[test]
fn app_name_must_fit_service_and_label() {
    let check = |name: &str| {
        let mut object = app_object(spec_with(json!({})));
        object["metadata"]["name"] = json!(name);
        let req = Request {
            operation: Operation::Create,
            namespace: NS,
            name,
            object: Some(&object),
            old_object: None,
        };
        rules::validate_spinapp(&req, &inventory(), &Options::default())
    };
    assert_rule("SA-NAME", &check("1app"), &check(&"a".repeat(52)));
    assert_rule("SA-NAME", &check(&"a".repeat(53)), &check("app"));
}

#[test]
fn missing_executor_is_a_warning_when_opted_in() {
    let opts = Options {
        allow_missing_executor: true,
    };
    let d = validate_app(spec_with(json!({"executor": "later"})), &opts);
    assert!(d.allowed(), "{d:#?}");
    assert_eq!(d.rules_fired, vec!["SA-EXECUTOR-PENDING"]);
    assert!(d.warnings[0].message.contains("\"later\""));
    let strict = validate_app(spec_with(json!({"executor": "later"})), &Options::default());
    assert_eq!(
        strict.errors[0].to_string(),
        "spec.executor: Not found: \"later\": no SpinAppExecutor \"later\" in namespace \
         \"default\" (found: containerd-shim-spin, external)"
    );
}

#[test]
fn all_errors_are_collected_in_kubernetes_format() {
    let d = validate_app(
        spec_with(json!({
            "image": "ghcr.io/a/b:",
            "replicas": -1,
            "imagePullPolicy": "Sometimes",
            "variables": [{"name": "dup", "value": "a"}, {"name": "dup", "value": "b"}],
        })),
        &Options::default(),
    );
    let lines: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 1",
            "spec.image: Invalid value: \"ghcr.io/a/b:\": must be a valid OCI image reference: \
             tag must not be empty (remove the ':' or name a tag)",
            "spec.imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \
             \"Always\", \"IfNotPresent\", \"Never\"",
            "spec.variables[1].name: Duplicate value: \"dup\"",
        ]
    );
    assert_eq!(d.errors[2].error_type, ErrorType::NotSupported);
    assert_eq!(d.errors[2].cause_reason(), "FieldValueNotSupported");
    let message = d.message("SpinApp", "app");
    assert!(
        message.starts_with("SpinApp.core.spinkube.dev \"app\" is invalid: [spec.replicas: "),
        "{message}"
    );
    assert!(message.ends_with("Duplicate value: \"dup\"]"), "{message}");
}

#[test]
fn undecodable_fields_become_field_errors_without_follow_ups() {
    let d = validate_app(
        spec_with(json!({"replicas": "three", "variables": [{"name": 7}], "image": 1})),
        &Options::default(),
    );
    let lines: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "spec.image: Invalid value: 1: must be of type string",
            "spec.replicas: Invalid value: \"three\": must be of type integer",
            "spec.variables[0].name: Invalid value: 7: must be of type string",
        ],
    );
    // No SA-IMAGE-REQUIRED for the image that did not decode.
    assert!(!d.rules_fired.contains(&"SA-IMAGE-REQUIRED"));
}

#[test]
fn non_object_bodies_never_panic() {
    for body in [
        json!(null),
        json!("x"),
        json!([1]),
        json!({"spec": 3}),
        json!({"spec": []}),
    ] {
        for op in [Operation::Create, Operation::Update] {
            let req = Request {
                operation: op,
                namespace: NS,
                name: "x",
                object: Some(&body),
                old_object: Some(&body),
            };
            let _ = rules::mutate_spinapp(&req, &inventory(), &Options::default());
            let _ = rules::validate_spinapp(&req, &inventory(), &Options::default());
            let _ = rules::validate_executor(&req, &inventory(), &Options::default());
        }
    }
}

// --- SpinAppExecutor ---

fn executor_cases() -> Vec<(&'static str, Value, Value)> {
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

#[test]
fn every_executor_rule_accepts_and_rejects() {
    for (rule, reject, accept) in executor_cases() {
        assert_rule(rule, &validate_executor(reject), &validate_executor(accept));
    }
}

fn delete_executor(inv: &Inventory, name: &str) -> Decision {
    let old = executor(name, NS, json!({"createDeployment": false}));
    let req = Request {
        operation: Operation::Delete,
        namespace: NS,
        name,
        object: None,
        old_object: Some(&old),
    };
    rules::validate_executor(&req, inv, &Options::default())
}

#[test]
fn deleting_an_executor_in_use_is_denied_naming_five_apps() {
    let mut inv = inventory();
    for i in 0..7 {
        inv.add_app(
            serde_json::from_value(json!({"apiVersion": "core.spinkube.dev/v1alpha1",
                "kind": "SpinApp", "metadata": {"name": format!("app-{i}"), "namespace": NS},
                "spec": {"executor": "external", "image": "x"}}))
            .unwrap(),
        );
    }
    let d = delete_executor(&inv, "external");
    assert_eq!(d.rules_fired, vec!["SAE-IN-USE"]);
    let msg = d.errors[0].to_string();
    assert!(
        msg.contains("app-0, app-1, app-2, app-3, app-4 and 2 more"),
        "{msg}"
    );
    assert!(!msg.contains("app-5"));
    assert!(delete_executor(&inv, "containerd-shim-spin").allowed());
}

// --- Ratcheting and finalizers ---

fn update_app(old_spec: Value, new_spec: Value, deleting: bool) -> Decision {
    let old = app_object(old_spec);
    let mut new = app_object(new_spec);
    if deleting {
        new["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    let req = Request {
        operation: Operation::Update,
        namespace: NS,
        name: "app",
        object: Some(&new),
        old_object: Some(&old),
    };
    rules::validate_spinapp(&req, &inventory(), &Options::default())
}

#[test]
fn unchanged_errors_are_downgraded_on_update() {
    // An object the Go operator admitted (uppercase variable) stays editable...
    let legacy = spec_with(json!({"variables": [{"name": "Greetee", "value": "x"}]}));
    let edited =
        spec_with(json!({"variables": [{"name": "Greetee", "value": "x"}], "replicas": 3}));
    let d = update_app(legacy.clone(), edited, false);
    assert!(d.allowed(), "{d:#?}");
    assert!(d.rules_fired.contains(&"SA-RATCHET"));
    assert!(d.warnings.iter().any(|w| {
        w.rule == "SA-VARIABLE-NAME"
            && w.message
                .starts_with("spec.variables[0].name: Invalid value: \"Greetee\"")
    }));
    // ...but a change that introduces (or rewrites) a bad value is still denied.
    let worse = spec_with(json!({"variables": [{"name": "Greetee2", "value": "x"}]}));
    assert!(!update_app(legacy, worse, false).allowed());
    let d = update_app(
        spec_with(json!({})),
        spec_with(json!({"replicas": 0})),
        false,
    );
    assert!(!d.allowed());
    assert!(!d.rules_fired.contains(&"SA-RATCHET"));
    // replicas set by an HPA through the scale subresource stays editable...
    let scaled = spec_with(json!({"enableAutoscaling": true, "replicas": 4}));
    let relabelled =
        spec_with(json!({"enableAutoscaling": true, "replicas": 4, "podLabels": {"a": "b"}}));
    assert!(update_app(scaled, relabelled, false).allowed());
    // ...but turning autoscaling on next to an unchanged replicas is a new error.
    let d = update_app(
        spec_with(json!({"replicas": 4})),
        spec_with(json!({"replicas": 4, "enableAutoscaling": true})),
        false,
    );
    assert_eq!(d.errors.len(), 1, "{d:#?}");
    assert_eq!(d.errors[0].rule, "SA-REPLICAS-AUTOSCALING");
}

#[test]
fn objects_being_deleted_are_always_admitted() {
    let bad = spec_with(json!({"replicas": -5, "image": "NOT VALID"}));
    let d = update_app(spec_with(json!({})), bad.clone(), true);
    assert!(d.allowed() && d.errors.is_empty());
    assert_eq!(d.rules_fired, vec!["SA-FINALIZING"]);
    assert!(!update_app(spec_with(json!({})), bad, false).allowed());
}

#[test]
fn executor_updates_ratchet_and_finalize() {
    let update = |old_spec: Value, new_spec: Value, deleting: bool| {
        let old = executor("exec", NS, old_spec);
        let mut new = executor("exec", NS, new_spec);
        new["metadata"]["labels"] = json!({"edited": "yes"});
        if deleting {
            new["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let req = Request {
            operation: Operation::Update,
            namespace: NS,
            name: "exec",
            object: Some(&new),
            old_object: Some(&old),
        };
        rules::validate_executor(&req, &inventory(), &Options::default())
    };
    // Upstream admitted createDeployment=true without deploymentConfig; edits stay possible.
    let legacy = json!({"createDeployment": true});
    let d = update(legacy.clone(), legacy.clone(), false);
    assert!(d.allowed(), "{d:#?}");
    assert!(d.rules_fired.contains(&"SAE-RATCHET"));
    assert!(d.rules_fired.contains(&"SAE-DEPLOYMENT-CONFIG-REQUIRED"));
    let broken = json!({"createDeployment": true, "deploymentConfig": {}});
    assert!(!update(legacy.clone(), broken.clone(), false).allowed());
    let d = update(legacy, broken, true);
    assert!(d.allowed());
    assert_eq!(d.rules_fired, vec!["SAE-FINALIZING"]);
}

// --- Defaulting ---

fn mutate(object: &Value, inv: &Inventory) -> Decision {
    let req = Request {
        operation: Operation::Create,
        namespace: object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(NS),
        name: "app",
        object: Some(object),
        old_object: None,
    };
    rules::mutate_spinapp(&req, inv, &Options::default())
}

/// Applies the defaulting patch and checks that defaulting the result changes nothing.
fn default_and_check_idempotent(object: Value, inv: &Inventory) -> (Value, Decision) {
    let first = mutate(&object, inv);
    assert!(first.allowed());
    let mut patched = object;
    json_patch::patch(&mut patched, &first.patch).expect("patch applies to its input");
    let second = mutate(&patched, inv);
    assert!(
        second.patch.0.is_empty(),
        "not idempotent: {:?}",
        second.patch
    );
    (patched, first)
}

#[test]
fn defaults_executor_and_replicas_with_a_minimal_patch() {
    let inv = inventory();
    let (out, d) =
        default_and_check_idempotent(app_object(json!({"image": "ghcr.io/a/b:v1"})), &inv);
    assert_eq!(out["spec"]["executor"], json!("containerd-shim-spin"));
    assert_eq!(out["spec"]["replicas"], json!(1));
    assert_eq!(d.patch.0.len(), 2);
    assert_eq!(
        d.rules_fired,
        vec!["SA-DEFAULT-EXECUTOR", "SA-DEFAULT-REPLICAS"]
    );
    let ops = serde_json::to_value(&d.patch).unwrap();
    assert_eq!(
        ops,
        json!([
            {"op": "add", "path": "/spec/executor", "value": "containerd-shim-spin"},
            {"op": "add", "path": "/spec/replicas", "value": 1},
        ])
    );
}

#[test]
fn creates_spec_when_absent_and_leaves_set_fields_alone() {
    let inv = inventory();
    let mut no_spec = app_object(json!({}));
    no_spec.as_object_mut().unwrap().remove("spec");
    let (out, d) = default_and_check_idempotent(no_spec, &inv);
    assert_eq!(d.patch.0.len(), 1);
    assert_eq!(
        out["spec"],
        json!({"executor": "containerd-shim-spin", "replicas": 1})
    );

    let set = app_object(json!({"executor": "external", "replicas": 4}));
    let d = mutate(&set, &inv);
    assert!(d.patch.0.is_empty() && d.rules_fired.is_empty());

    let (out, _) =
        default_and_check_idempotent(app_object(json!({"executor": "", "replicas": null})), &inv);
    assert_eq!(out["spec"]["executor"], json!("containerd-shim-spin"));
    assert_eq!(out["spec"]["replicas"], json!(1));
}

#[test]
fn no_replicas_default_when_autoscaling_and_no_executor_from_other_namespaces() {
    let inv = inventory();
    let (out, d) =
        default_and_check_idempotent(app_object(json!({"enableAutoscaling": true})), &inv);
    assert!(out["spec"].get("replicas").is_none());
    assert_eq!(d.rules_fired, vec!["SA-DEFAULT-EXECUTOR"]);

    // Namespace "other" has only other-ns-only; "empty" has none (executor stays unset).
    let mut other = app_object(json!({}));
    other["metadata"]["namespace"] = json!("other");
    let (out, _) = default_and_check_idempotent(other, &inv);
    assert_eq!(out["spec"]["executor"], json!("other-ns-only"));
    let mut empty = app_object(json!({}));
    empty["metadata"]["namespace"] = json!("empty");
    let (out, d) = default_and_check_idempotent(empty, &inv);
    assert!(out["spec"].get("executor").is_none());
    assert_eq!(d.rules_fired, vec!["SA-DEFAULT-REPLICAS"]);
}

#[test]
fn malformed_specs_are_not_patched() {
    let inv = inventory();
    for spec in [json!("x"), json!([]), json!(5)] {
        assert!(mutate(&app_object(spec), &inv).patch.0.is_empty());
    }
    // A non-boolean enableAutoscaling is left for validation to explain.
    let d = mutate(
        &app_object(json!({"executor": "external", "enableAutoscaling": "yes"})),
        &inv,
    );
    assert!(d.patch.0.is_empty());
    // DELETE never patches.
    let object = app_object(json!({}));
    let req = Request {
        operation: Operation::Delete,
        namespace: NS,
        name: "app",
        object: Some(&object),
        old_object: None,
    };
    assert!(
        rules::mutate_spinapp(&req, &inv, &Options::default())
            .patch
            .0
            .is_empty()
    );
}

/// Every validation rule in the catalogue has accepting/rejecting cases in this file.
#[test]
fn every_catalogue_rule_is_exercised_here() {
    let mut covered: Vec<&str> = app_cases()
        .into_iter()
        .chain(executor_cases())
        .map(|(r, _, _)| r)
        .collect();
    covered.extend([
        "SA-NAME",
        "SA-EXECUTOR-PENDING",
        "SAE-IN-USE",
        "SA-RATCHET",
        "SA-FINALIZING",
        "SA-DEFAULT-EXECUTOR",
        "SA-DEFAULT-REPLICAS",
    ]);
    covered.extend(["SAE-RATCHET", "SAE-FINALIZING"]);
    for rule in catalogue() {
        assert!(covered.contains(&rule.id), "no test case for {}", rule.id);
    }
}
