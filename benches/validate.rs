//! Cost of one admission decision: defaulting + validation of a typical and a large SpinApp,
//! as the webhooks run them (raw JSON in, lookups from an in-memory inventory).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use spin_operator::inventory::Inventory;
use spin_operator::rules::{self, Operation, Options, Request};

fn inventory() -> Inventory {
    let mut inv = Inventory {
        complete: true,
        ..Default::default()
    };
    for name in ["containerd-shim-spin", "spintainer", "traced-shim"] {
        inv.add_executor(
            serde_json::from_value(json!({
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"createDeployment": true,
                         "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}}
            }))
            .unwrap(),
        );
    }
    inv.add_secret(
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "app-credentials", "namespace": "default"}}))
        .unwrap(),
    );
    inv
}

/// Like examples/runtime-config.yaml plus probes and resources, executor and replicas unset.
fn typical() -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": "stateful", "namespace": "default"},
        "spec": {
            "image": "ghcr.io/example/stateful:v0.4.0",
            "variables": [
                {"name": "greetee", "value": "SpinKube"},
                {"name": "db_password", "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "pw"}}}
            ],
            "checks": {"liveness": {"httpGet": {"path": "/healthz"}},
                       "readiness": {"httpGet": {"path": "/ready"}}},
            "resources": {"limits": {"cpu": "1", "memory": "256Mi"},
                          "requests": {"cpu": "250m", "memory": "128Mi"}},
            "invocationLimits": {"memory": "64Mi"},
            "runtimeConfig": {
                "sqliteDatabases": [{"name": "default", "type": "libsql", "options": [
                    {"name": "url", "value": "https://db.example.com"},
                    {"name": "token", "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "t"}}}]}],
                "llmCompute": {"type": "remote_http", "options": [
                    {"name": "url", "value": "https://llm.example.com"},
                    {"name": "auth_token", "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "l"}}}]}
            }
        }
    })
}

/// 200 variables, 50 volumes and mounts, 50 labels and annotations, 20 key-value stores.
fn large() -> Value {
    let mut app = typical();
    let spec = &mut app["spec"];
    spec["variables"] = (0..200)
        .map(|i| json!({"name": format!("var_{i}"), "value": format!("value-{i}")}))
        .collect();
    spec["volumes"] = (0..50)
        .map(|i| json!({"name": format!("data-{i}"), "emptyDir": {}}))
        .collect();
    spec["volumeMounts"] = (0..50)
        .map(|i| json!({"name": format!("data-{i}"), "mountPath": format!("/mnt/data-{i}")}))
        .collect();
    spec["podLabels"] = (0..50)
        .map(|i| (format!("example.com/label-{i}"), json!(format!("v{i}"))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    spec["podAnnotations"] = spec["podLabels"].clone();
    spec["components"] = (0..20).map(|i| json!(format!("component{i}"))).collect();
    spec["runtimeConfig"]["keyValueStores"] = (0..20)
        .map(|i| {
            json!({"name": format!("store_{i}"), "type": "redis",
                   "options": [{"name": "url", "value": format!("redis://redis-{i}:6379")}]})
        })
        .collect();
    app
}

/// What the two webhooks do for one CREATE: default, apply the patch, validate the result.
fn admit(object: &Value, inv: &Inventory, opts: &Options) -> bool {
    let req = Request {
        operation: Operation::Create,
        namespace: "default",
        name: "stateful",
        object: Some(object),
        old_object: None,
    };
    let mutation = rules::mutate_spinapp(&req, inv, opts);
    let mut patched = object.clone();
    if json_patch::patch(&mut patched, &mutation.patch).is_err() {
        return false;
    }
    let req = Request {
        object: Some(&patched),
        ..req
    };
    rules::validate_spinapp(&req, inv, opts).allowed()
}

fn bench(c: &mut Criterion) {
    let inv = inventory();
    let opts = Options::default();
    for (name, app) in [("typical", typical()), ("large", large())] {
        assert!(admit(&app, &inv, &opts), "{name} app must be admitted");
        c.bench_function(&format!("mutate+validate {name} SpinApp"), |b| {
            b.iter(|| admit(black_box(&app), &inv, &opts))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
