//! Every rule of the table, one accepting and one rejecting case each, plus defaulting patches,
//! ratcheting, finalizing objects and the executor DELETE guard (through the public API only).

use serde_json::{Value, json};
use spin_operator::inventory::Inventory;
use spin_operator::rules::{
    self, Decision, ErrorType, Operation, Options, Request, Severity, catalogue,
};

#[path = "support/rule_cases.rs"]
mod rule_cases;

use rule_cases::{NS, app_cases, app_object, executor, executor_cases, inventory, spec_with};

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
