//! The view path (`handle_view`) against the reference `Value` path (`handle_value`): whenever
//! the view answers, status and body are byte-identical to the reference's; and it does answer
//! the common requests (else the fast path would silently be the slow one).

use std::path::Path;

use axum::body::to_bytes;
use serde_json::{Value, json};

use super::*;
use crate::inventory::Inventory;

const NS: &str = "apps";

fn state() -> AdmissionState {
    let mut inventory = Inventory::default();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/executors.yaml"),
    )
    .unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut executor: Value = serde::Deserialize::deserialize(doc).unwrap();
        executor["metadata"]["namespace"] = NS.into();
        // One executor without a Deployment, for the annotation rule.
        if executor["metadata"]["name"] == "spintainer" {
            executor["spec"]["createDeployment"] = false.into();
        }
        inventory.add_executor(serde_json::from_value(executor).unwrap());
    }
    AdmissionState::new(
        Arc::new(inventory),
        Options::default(),
        AdmissionMetrics::default(),
    )
}

/// Every SpinApp of `examples/` (valid and invalid).
fn example_apps() -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .chain(std::fs::read_dir(root.join("invalid")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut apps = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"] == "SpinApp" {
                apps.push(v);
            }
        }
    }
    assert!(apps.len() >= 10, "{} example apps", apps.len());
    apps
}

fn app(spec: Value) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": "web", "namespace": NS, "labels": {"team": "wasm"}},
        "spec": spec,
    })
}

fn good_spec() -> Value {
    json!({
        "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
        "executor": "containerd-shim-spin", "replicas": 2,
        "podAnnotations": {"example.com/team": "wasm"},
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
    })
}

/// Objects: the examples, then valid, invalid, null-bearing and unknown-field variants.
fn objects() -> Vec<Value> {
    let mut objects = example_apps();
    let mut with = |f: &dyn Fn(&mut Value)| {
        let mut o = app(good_spec());
        f(&mut o);
        objects.push(o);
    };
    with(&|_| {});
    with(&|o| o["spec"] = json!({"image": "ghcr.io/a/b:v1"}));
    with(&|o| o["spec"]["enableAutoscaling"] = true.into());
    with(&|o| {
        o["spec"]["enableAutoscaling"] = false.into();
        o["spec"].as_object_mut().unwrap().remove("replicas");
    });
    with(&|o| o["spec"]["enableAutoscaling"] = "yes".into());
    with(&|o| o["spec"]["replicas"] = "three".into());
    with(&|o| o["spec"]["replicas"] = 0.into());
    with(&|o| o["spec"]["replicas"] = 2.5.into());
    with(&|o| o["spec"]["image"] = "ghcr.io/a/b".into());
    with(&|o| o["spec"]["image"] = "Not An Image".into());
    with(&|o| o["spec"]["image"] = "".into());
    with(&|o| o["spec"]["executor"] = "".into());
    with(&|o| o["spec"]["executor"] = "nope".into());
    with(&|o| o["spec"]["executor"] = 7.into());
    with(&|o| o["spec"]["executor"] = "spintainer".into());
    with(&|o| o["spec"]["imagePullPolicy"] = "Sometimes".into());
    with(&|o| o["spec"]["variables"] = json!([{"name": 1}, {"value": "x"}]));
    with(&|o| o["spec"]["podLabels"] = json!({"core.spinkube.dev/app-name": "x"}));
    with(&|o| o["metadata"]["name"] = "Web_App".into());
    with(&|o| o["metadata"]["name"] = 7.into());
    with(&|o| o["metadata"] = json!({"generateName": "web-", "namespace": NS}));
    with(&|o| o["metadata"] = Value::Null);
    with(&|o| o["metadata"]["deletionTimestamp"] = "2026-11-26T10:00:00Z".into());
    with(&|o| o["metadata"]["deletionTimestamp"] = Value::Null);
    // Null-bearing.
    with(&|o| o["spec"]["replicas"] = Value::Null);
    with(&|o| o["spec"]["executor"] = Value::Null);
    with(&|o| o["spec"]["enableAutoscaling"] = Value::Null);
    with(&|o| o["spec"]["podAnnotations"]["example.com/null"] = Value::Null);
    with(&|o| o["spec"]["checks"] = Value::Null);
    with(&|o| o["spec"]["image"] = "ghcr.io/a/null:v1".into());
    with(&|o| o["spec"]["image"] = Value::Null);
    with(&|o| o["spec"]["resources"] = json!({"limits": null, "requests": {"cpu": "1"}}));
    with(&|o| o["spec"]["resources"] = json!({"limits": {"cpu": null}}));
    with(&|o| o["spec"]["components"] = json!(["a", null]));
    with(&|o| o["spec"]["variables"] = json!([{"name": "a", "value": null, "valueFrom": null}]));
    with(&|o| o["spec"]["checks"] = json!({"liveness": null, "readiness": {"httpGet": null}}));
    with(&|o| o["spec"]["tolerations"] = json!([{"key": "k", "value": null, "effect": null}]));
    with(&|o| o["spec"]["affinity"] = json!({"nodeAffinity": null, "podAffinity": {}}));
    with(&|o| {
        o["spec"]["volumes"] =
            json!([{"name": "v", "emptyDir": null, "secret": {"secretName": null}}])
    });
    with(&|o| {
        o["spec"]["volumeMounts"] = json!([{"name": "v", "mountPath": "/m", "readOnly": null}])
    });
    with(&|o| {
        o["spec"]["runtimeConfig"] = json!({"loadFromSecret": null, "sqliteDatabases": null})
    });
    with(&|o| o["spec"]["serviceAccountName"] = Value::Null);
    with(&|o| o["spec"]["imagePullSecrets"] = json!([{"name": null}]));
    // Unknown fields.
    with(&|o| o["spec"]["futureField"] = json!({"deep": [1, {"x": "y"}]}));
    with(&|o| o["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]));
    with(&|o| o["status"] = json!({"readyReplicas": 2}));
    // Spec and object shapes.
    with(&|o| o["spec"] = Value::Null);
    with(&|o| {
        o.as_object_mut().unwrap().remove("spec");
    });
    with(&|o| o["spec"] = "nope".into());
    with(&|o| o["spec"] = json!(["image", 2]));
    with(&|o| o["spec"] = json!({}));
    objects.push(json!([{"name": "web"}, {}]));
    objects.push("not an object".into());
    objects
}

fn review(operation: &str, object: &Value, old: Option<&Value>) -> String {
    let old = match (operation, old) {
        ("CREATE", _) => Value::Null,
        (_, Some(old)) => old.clone(),
        (_, None) => object.clone(),
    };
    let object = match operation {
        "DELETE" => Value::Null,
        _ => object.clone(),
    };
    let gvk = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"});
    let gvr = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"});
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1", "kind": gvk, "resource": gvr, "requestKind": gvk,
            "name": "", "namespace": NS, "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false,
        }
    })
    .to_string()
}

/// Bodies: every object on CREATE, UPDATE (unchanged and from the good app) and DELETE, and
/// textual variants with repeated keys.
fn bodies() -> Vec<String> {
    let good = app(good_spec());
    let mut bodies = Vec::new();
    for object in objects() {
        for (op, old) in [
            ("CREATE", None),
            ("UPDATE", None),
            ("UPDATE", Some(&good)),
            ("DELETE", None),
        ] {
            bodies.push(review(op, &object, old));
        }
    }
    // Envelope variants, accepted or not by the reference.
    let base: Value = serde_json::from_str(&review("CREATE", &good, None)).unwrap();
    for (field, value) in [
        ("userInfo", json!(["alice"])),
        ("userInfo", Value::Null),
        (
            "userInfo",
            json!({"username": null, "uid": "u", "groups": null}),
        ),
        ("userInfo", json!({"username": "bob", "groups": [1]})),
        ("userInfo", json!({"username": "bob", "uid": 5})),
        (
            "userInfo",
            json!({"username": "bob", "extra": {"a": ["b"]}, "future": {}}),
        ),
        ("userInfo", json!({"username": "bob", "extra": {"a": "b"}})),
        (
            "userInfo",
            json!({"username": "bob", "extra": {"a": [null]}}),
        ),
        ("kind", json!(["core.spinkube.dev", "v1alpha1", "SpinApp"])),
        (
            "kind",
            json!({"group": "core.spinkube.dev", "version": "v1alpha1"}),
        ),
        (
            "kind",
            json!({"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "Pod"}),
        ),
        (
            "resource",
            json!({"group": "core.spinkube.dev", "version": "v1alpha1",
                            "resource": "spinapps", "api_version": "core.spinkube.dev/v1alpha1"}),
        ),
        (
            "resource",
            json!({"group": "core.spinkube.dev", "version": "v1alpha1",
                            "resource": "spinapps", "api_version": 1}),
        ),
        (
            "resource",
            json!(["core.spinkube.dev", "v1alpha1", "spinapps"]),
        ),
        ("subResource", json!("status")),
        ("subResource", json!("")),
        ("name", json!("web")),
        ("name", Value::Null),
        ("namespace", Value::Null),
        ("namespace", json!("")),
        ("dryRun", json!(true)),
        ("dryRun", json!("yes")),
        ("operation", json!("CONNECT")),
        ("operation", json!("EXPLODE")),
        ("uid", json!("")),
        ("uid", json!(7)),
        ("requestKind", json!([[[]]])),
        ("options", json!({"deep": {"er": [1, 2.5, "x"]}})),
    ] {
        let mut b = base.clone();
        b["request"][field] = value;
        bodies.push(b.to_string());
    }
    for (field, value) in [
        ("apiVersion", json!("admission.k8s.io/v1beta1")),
        ("kind", json!("Nope")),
        ("request", Value::Null),
    ] {
        let mut b = base.clone();
        b[field] = value;
        bodies.push(b.to_string());
    }
    bodies.push(r#"{"nope"#.to_string());
    let text = review("CREATE", &good, None);
    let image = r#""image":"ghcr.io/spinframework"#;
    for (from, to) in [
        (image, r#""image":"x","image":"ghcr.io/spinframework"#),
        (r#""replicas":2"#, r#""replicas":1,"replicas":2"#),
        (r#""executor":"#, r#""executor":"","executor":"#),
        (r#""spec":{"#, r#""spec":{"x":1,"x":2,"#),
        (r#""spec":{"#, r#""spec":null,"spec":{"#),
        (r#""metadata":{"#, r#""metadata":{"name":"x","#),
        (
            r#""example.com/team":"#,
            r#""example.com/team":"a","example.com/team":"#,
        ),
        (r#""uid":"u-1""#, r#""uid":"u-0","uid":"u-1""#),
        (r#""object":{"#, r#""object":null,"object":{"#),
    ] {
        assert!(text.contains(from), "{from}");
        bodies.push(text.replacen(from, to, 1));
    }
    bodies
}

async fn bytes(response: Response) -> (StatusCode, Vec<u8>) {
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, body.to_vec())
}

#[tokio::test]
async fn the_view_path_answers_as_the_value_path() {
    let state = state();
    let bodies = bodies();
    let mut answered = 0;
    for route in [
        route_for("/mutate-core-spinkube-dev-v1alpha1-spinapp"),
        route_for("/validate-core-spinkube-dev-v1alpha1-spinapp"),
    ] {
        for body in &bodies {
            let Some(view) = handle_view(&state, route, body.as_bytes(), Instant::now()) else {
                continue;
            };
            answered += 1;
            let reference = handle_value(&state, route, body.as_bytes(), Instant::now());
            let (view, reference) = (bytes(view).await, bytes(reference).await);
            assert_eq!(
                (view.0, String::from_utf8_lossy(&view.1)),
                (reference.0, String::from_utf8_lossy(&reference.1)),
                "{} {body}",
                route.path
            );
        }
    }
    // Most requests take the view path; the rest is checked by the cases below.
    let total = bodies.len() * 2;
    eprintln!("{answered} of {total} requests answered by the view path");
    assert!(
        answered * 2 > total,
        "{answered} of {total} answered by the view path"
    );
}

fn route_for(path: &str) -> &'static Route {
    crate::admission::routes::route_for_path(path).unwrap()
}

/// Which requests take which path: the common ones the view, what it cannot tell exactly the
/// reference.
#[test]
fn the_view_path_takes_the_common_requests_and_leaves_the_rest() {
    let state = state();
    let mutate = route_for("/mutate-core-spinkube-dev-v1alpha1-spinapp");
    let validate = route_for("/validate-core-spinkube-dev-v1alpha1-spinapp");
    let view =
        |route, body: &str| handle_view(&state, route, body.as_bytes(), Instant::now()).is_some();
    let good = app(good_spec());
    let with = |f: &dyn Fn(&mut Value)| {
        let mut o = app(good_spec());
        f(&mut o);
        o
    };
    for route in [mutate, validate] {
        assert!(view(route, &review("CREATE", &good, None)));
        assert!(view(route, &review("UPDATE", &good, None)));
        let bad_image = with(&|o| o["spec"]["image"] = "Not An Image".into());
        assert!(view(route, &review("CREATE", &bad_image, None)));
        // Repeated keys: a `Value` keeps the last, the typed passes refuse.
        let text = review("CREATE", &good, None);
        let twice = text.replacen(r#""replicas":2"#, r#""replicas":1,"replicas":2"#, 1);
        assert!(!view(route, &twice));
        assert!(!view(route, &review("CREATE", &json!(["x"]), None)));
    }
    // Validation: an UPDATE with errors is ratcheted against the old object; nulls and decode
    // errors are worded by the reference.
    let bad_image = with(&|o| o["spec"]["image"] = "Not An Image".into());
    assert!(!view(validate, &review("UPDATE", &bad_image, None)));
    // A null where the typed spec takes one (an absent optional field, as the `Value` path
    // strips it) is read by the view; a null it refuses is worded by the reference.
    let null = with(&|o| o["spec"]["replicas"] = Value::Null);
    assert!(view(validate, &review("CREATE", &null, None)));
    assert!(view(mutate, &review("CREATE", &null, None)));
    let null_image = with(&|o| o["spec"]["image"] = Value::Null);
    assert!(!view(validate, &review("CREATE", &null_image, None)));
    let three = with(&|o| o["spec"]["replicas"] = "three".into());
    assert!(!view(validate, &review("CREATE", &three, None)));
    assert!(view(mutate, &review("CREATE", &three, None)));
    // The executor routes keep the reference path.
    let executor = route_for("/validate-core-spinkube-dev-v1alpha1-spinappexecutor");
    assert!(!view(executor, &review("CREATE", &good, None)));
}
