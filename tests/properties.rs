//! Property tests (bounded case counts, part of the normal test run):
//! - defaulting is idempotent and its patch always applies;
//! - validate(default(x)) never fails for a reason defaulting could have fixed;
//! - desired::build is deterministic;
//! - AdmissionReview parsing and the SpinApp rules never panic on arbitrary input (fuzz-style);
//! - the fast path's rules on object views decide as the rules on the `Value` whenever they decide.
//!
//! Longer run: `PROPTEST_CASES=5000 cargo test --test properties`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use spin_operator::admission::review;
use spin_operator::api::{SpinApp, SpinAppExecutor};
use spin_operator::desired;
use spin_operator::inventory::{Inventory, Lookup};
use spin_operator::rules::{self, Operation, Options, Request};

/// Namespace `default` has executors; namespace `empty` has none.
fn inventory() -> Inventory {
    let mut inv = Inventory {
        complete: true,
        ..Default::default()
    };
    for (name, config) in [
        (
            "containerd-shim-spin",
            json!({"runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": true}),
        ),
        (
            "spintainer",
            json!({"spinImage": "ghcr.io/spinframework/spin:v3.4.1"}),
        ),
    ] {
        let e: SpinAppExecutor = serde_json::from_value(json!({
            "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"createDeployment": true, "deploymentConfig": config}
        }))
        .unwrap();
        inv.add_executor(e);
    }
    inv
}

fn opt<T: Clone + std::fmt::Debug + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![Just(None), s.prop_map(Some)].boxed()
}

fn label_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        "[a-z]{1,6}(\\.example\\.com/[a-z]{1,6})?",
        "[a-z0-9]{0,8}",
        0..4,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

/// SpinApps around the interesting fields: executor and replicas (defaulted), autoscaling
/// (which suppresses the replicas default), and a few others that validation looks at.
fn spinapp() -> impl Strategy<Value = (String, Value)> {
    let executor = opt(prop_oneof![
        Just(json!("")),
        Just(json!("containerd-shim-spin")),
        Just(json!("spintainer")),
        Just(json!("ghost")),
        Just(Value::Null),
    ]);
    let replicas = opt(prop_oneof![
        (-2i64..6).prop_map(Value::from),
        Just(Value::Null)
    ]);
    let autoscaling = opt(prop_oneof![
        Just(json!(true)),
        Just(json!(false)),
        Just(Value::Null)
    ]);
    let image = opt(prop_oneof![
        Just(json!(
            "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0"
        )),
        Just(json!("")),
        Just(json!("registry.example.com/app:latest")),
    ]);
    let variables = prop::collection::vec(("[a-z_]{1,8}", "[a-z]{0,6}"), 0..4);
    let namespace = prop_oneof![Just("default".to_string()), Just("empty".to_string())];
    let spec_missing = prop::bool::weighted(0.05);
    (
        namespace,
        executor,
        replicas,
        autoscaling,
        image,
        variables,
        opt(label_map()),
        spec_missing,
    )
        .prop_map(
            |(ns, executor, replicas, autoscaling, image, variables, annotations, spec_missing)| {
                let mut spec = Map::new();
                if let Some(v) = executor {
                    spec.insert("executor".into(), v);
                }
                if let Some(v) = replicas {
                    spec.insert("replicas".into(), v);
                }
                if let Some(v) = autoscaling {
                    spec.insert("enableAutoscaling".into(), v);
                }
                if let Some(v) = image {
                    spec.insert("image".into(), v);
                }
                if !variables.is_empty() {
                    let vars: Vec<Value> = variables
                        .into_iter()
                        .map(|(n, v)| json!({"name": n, "value": v}))
                        .collect();
                    spec.insert("variables".into(), Value::Array(vars));
                }
                if let Some(a) = annotations {
                    spec.insert("podAnnotations".into(), Value::Object(a));
                }
                let mut app = json!({
                    "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                    "metadata": {"name": "app", "namespace": ns.clone()},
                });
                if !spec_missing {
                    app["spec"] = Value::Object(spec);
                }
                (ns, app)
            },
        )
}

/// SpinApps that defaulting + validation admit (mostly), for the reconciler-side properties.
fn admissible_spinapp() -> impl Strategy<Value = (String, Value)> {
    (
        opt(prop_oneof![Just("containerd-shim-spin"), Just("spintainer")]),
        opt(1i64..6),
        opt(Just(false)),
        prop::collection::btree_map("[a-z][a-z0-9]{0,6}", "[a-z]{0,6}", 0..4),
        label_map(),
    )
        .prop_map(|(executor, replicas, autoscaling, variables, annotations)| {
            let vars: Vec<Value> = variables
                .into_iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
            let mut spec = json!({
                "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
                "variables": vars, "podAnnotations": annotations,
            });
            if let Some(e) = executor {
                spec["executor"] = json!(e);
            }
            if let Some(r) = replicas {
                spec["replicas"] = json!(r);
            }
            if let Some(a) = autoscaling {
                spec["enableAutoscaling"] = json!(a);
            }
            let app = json!({
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "metadata": {"name": "app", "namespace": "default"}, "spec": spec,
            });
            ("default".to_string(), app)
        })
}

fn request<'a>(ns: &'a str, object: &'a Value) -> Request<'a> {
    Request {
        operation: Operation::Create,
        namespace: ns,
        name: "app",
        object: Some(object),
        old_object: None,
    }
}

/// Apply the mutating webhook's patch.
fn default(ns: &str, object: &Value, inv: &Inventory) -> Value {
    let decision = rules::mutate_spinapp(&request(ns, object), inv, &Options::default());
    assert!(decision.allowed(), "defaulting never denies");
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &decision.patch)
        .unwrap_or_else(|e| panic!("patch {:?} must apply to {object}: {e}", decision.patch));
    patched
}

fn prune_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, prune_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune_nulls).collect()),
        other => other,
    }
}

/// Arbitrary JSON (bounded depth and size).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arbitrary content in the SpinApp fields the rules read.
fn fuzzed_spinapp() -> impl Strategy<Value = Value> {
    let fields = prop::sample::subsequence(
        vec![
            "executor",
            "replicas",
            "enableAutoscaling",
            "image",
            "imagePullSecrets",
            "variables",
            "volumes",
            "volumeMounts",
            "checks",
            "resources",
            "invocationLimits",
            "components",
            "runtimeConfig",
            "podLabels",
            "podAnnotations",
            "deploymentAnnotations",
            "serviceAnnotations",
            "serviceAccountName",
        ],
        0..6,
    );
    (fields, prop::collection::vec(any_json(), 6), any_json()).prop_map(
        |(fields, values, metadata)| {
            let spec: Map<String, Value> = fields
                .into_iter()
                .zip(values)
                .map(|(f, v)| (f.to_string(), v))
                .collect();
            json!({
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "metadata": if metadata.is_object() { metadata } else { json!({"name": "app"}) },
                "spec": spec,
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn defaulting_is_idempotent_and_its_patch_applies((ns, app) in spinapp()) {
        let inv = inventory();
        let once = default(&ns, &app, &inv);
        let again = rules::mutate_spinapp(&request(&ns, &once), &inv, &Options::default());
        prop_assert!(again.patch.0.is_empty(), "second defaulting patched {:?}", again.patch);
        prop_assert_eq!(default(&ns, &once, &inv), once);
    }

    #[test]
    fn validation_after_defaulting_never_fails_for_a_defaultable_reason((ns, app) in spinapp()) {
        let inv = inventory();
        let defaulted = default(&ns, &app, &inv);
        let decision = rules::validate_spinapp(&request(&ns, &defaulted), &inv, &Options::default());
        let spec = app.get("spec");
        let unset = |f: &str| spec.and_then(|s| s.get(f)).is_none_or(|v| v.is_null() || v.as_str() == Some(""));
        let autoscaling_off = spec
            .and_then(|s| s.get("enableAutoscaling"))
            .is_none_or(|v| matches!(v, Value::Null | Value::Bool(false)));
        let rules_of: Vec<&str> = decision.errors.iter().map(|e| e.rule).collect();
        if unset("executor") && !inv.executor_names(&ns).is_empty() {
            prop_assert!(
                !rules_of.iter().any(|r| r.starts_with("SA-EXECUTOR")),
                "executor defaultable, yet {:?}", decision.errors
            );
        }
        if spec.and_then(|s| s.get("replicas")).is_none_or(Value::is_null) && autoscaling_off {
            prop_assert!(
                !rules_of.iter().any(|r| r.starts_with("SA-REPLICAS")),
                "replicas defaultable, yet {:?}", decision.errors
            );
        }
    }

    #[test]
    fn desired_build_is_deterministic((ns, app) in admissible_spinapp()) {
        let inv = inventory();
        let defaulted = default(&ns, &app, &inv);
        // Only admitted apps reach the reconciler.
        let decision = rules::validate_spinapp(&request(&ns, &defaulted), &inv, &Options::default());
        prop_assume!(decision.allowed());
        // The apiserver drops nulls of non-nullable fields before storing (structural schema
        // pruning), so the controller never decodes e.g. `enableAutoscaling: null`.
        let defaulted = prune_nulls(defaulted);
        let typed: SpinApp = serde_json::from_value(defaulted.clone()).unwrap();
        let executor = inv.executor(&ns, &typed.spec.executor).unwrap();
        let first = desired::build(&typed, &executor, &inv);
        // The same app decoded again (fresh maps and strings) builds the same children.
        let again: SpinApp = serde_json::from_value(defaulted).unwrap();
        let second = desired::build(&again, &executor, &inv);
        prop_assert_eq!(first.is_ok(), second.is_ok());
        if let (Ok(a), Ok(b)) = (&first, &second) {
            prop_assert_eq!(a, b);
            prop_assert_eq!(
                serde_json::to_string(&a.deployment).unwrap(),
                serde_json::to_string(&b.deployment).unwrap()
            );
        }
    }

    #[test]
    fn rules_never_panic_on_arbitrary_spinapps(app in fuzzed_spinapp(), update in any::<bool>()) {
        let inv = inventory();
        let old = app.clone();
        let req = Request {
            operation: if update { Operation::Update } else { Operation::Create },
            old_object: update.then_some(&old),
            ..request("default", &app)
        };
        let m = rules::mutate_spinapp(&req, &inv, &Options::default());
        let mut patched = app.clone();
        prop_assert!(json_patch::patch(&mut patched, &m.patch).is_ok());
        let v = rules::validate_spinapp(&Request { object: Some(&patched), ..req }, &inv, &Options::default());
        // Every error names a catalogued rule.
        for e in &v.errors {
            prop_assert!(rules::catalogue().iter().any(|r| r.id == e.rule), "{}", e.rule);
        }
    }

    #[test]
    fn review_parsing_never_panics(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (any_json(), any_json()).prop_map(|(req, obj)| serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": if req.is_object() {
                let mut r = req; r["uid"] = json!("u"); r["object"] = obj; r
            } else { req },
        })).unwrap()),
    ]) {
        let _ = review::parse(&body);
    }
}

/// The admission fast path's rules on object views (the review decoded without a `Value`),
/// against the rules on the object's `Value`: whenever a view decides, it decides the same.
fn views_agree(ns: &str, app: &Value, old: &Value, update: bool) -> Result<(), TestCaseError> {
    use spin_operator::rules::{AppSpec, DefaultingSpec, ObjectView};
    let inv = inventory();
    let opts = Options::default();
    let operation = if update {
        Operation::Update
    } else {
        Operation::Create
    };
    let by_value = Request {
        operation,
        old_object: update.then_some(old),
        ..request(ns, app)
    };
    let (text, old_text) = (app.to_string(), old.to_string());
    if let (Ok(object), Ok(old_object)) = (
        serde_json::from_str::<ObjectView<DefaultingSpec>>(&text),
        serde_json::from_str::<ObjectView<DefaultingSpec>>(&old_text),
    ) {
        let by_view = Request {
            operation,
            namespace: ns,
            name: "",
            object: Some(&object),
            old_object: update.then_some(&old_object),
        };
        if let Some(d) = rules::mutate_spinapp_view(&by_view, &inv, &opts) {
            prop_assert_eq!(d, rules::mutate_spinapp(&by_value, &inv, &opts));
        }
    }
    if let (Ok(object), Ok(old_object)) = (
        serde_json::from_str::<ObjectView<AppSpec>>(&text),
        serde_json::from_str::<ObjectView<AppSpec>>(&old_text),
    ) {
        let by_view = Request {
            operation,
            namespace: ns,
            name: "",
            object: Some(&object),
            old_object: update.then_some(&old_object),
        };
        if let Some(d) = rules::validate_spinapp_view(&by_view, &inv, &opts) {
            prop_assert_eq!(d, rules::validate_spinapp(&by_value, &inv, &opts));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn view_rules_agree_with_value_rules_on_generated_apps(
        (ns, app) in spinapp(),
        (_, old) in spinapp(),
        update in any::<bool>(),
    ) {
        views_agree(&ns, &app, &old, update)?;
    }

    #[test]
    fn view_rules_agree_with_value_rules_on_fuzzed_apps(
        app in fuzzed_spinapp(),
        old in fuzzed_spinapp(),
        update in any::<bool>(),
    ) {
        views_agree("default", &app, &old, update)?;
    }
}
