//! Our generated CRD schemas against upstream's field set, our additions, and the CRD-level
//! validation (CEL) that must hold even when the webhooks are down.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use spin_operator::crd;

fn root_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// `path -> type`, walked exactly like tests/fixtures/api/extract_fields.py walks upstream's CRDs.
fn walk(schema: &Value, path: String, out: &mut BTreeMap<String, String>) {
    let kind = schema["type"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            if schema["x-kubernetes-int-or-string"] == true {
                "int-or-string".into()
            } else {
                "any".into()
            }
        });
    out.insert(
        if path.is_empty() {
            ".".into()
        } else {
            path.clone()
        },
        kind,
    );
    if let Some(props) = schema["properties"].as_object() {
        for (key, child) in props {
            walk(child, format!("{path}.{key}"), out);
        }
    }
    if schema.get("items").is_some() {
        walk(&schema["items"], format!("{path}[]"), out);
    }
    if schema["additionalProperties"].is_object() {
        walk(&schema["additionalProperties"], format!("{path}{{}}"), out);
    }
}

fn our_fields() -> BTreeMap<(String, String), String> {
    let mut fields = BTreeMap::new();
    for (kind, crd) in [
        ("SpinApp", crd::spinapp_crd()),
        ("SpinAppExecutor", crd::executor_crd()),
    ] {
        let mut paths = BTreeMap::new();
        walk(&root_schema(&crd), String::new(), &mut paths);
        for (path, ty) in paths {
            fields.insert((kind.to_string(), path), ty);
        }
    }
    fields
}

#[test]
fn every_upstream_field_exists_with_the_same_type() {
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api/upstream-fields.txt"),
    )
    .unwrap();
    let ours = our_fields();
    let mut checked = 0;
    for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind, path, ty] = parts[..] else {
            panic!("bad fixture line {line:?}")
        };
        // apiVersion/kind/metadata are the apiserver's own; kube-derive leaves them out.
        if matches!(path, ".apiVersion" | ".kind" | ".metadata") {
            continue;
        }
        let found = ours
            .get(&(kind.to_string(), path.to_string()))
            .unwrap_or_else(|| panic!("{kind} {path} missing from our CRD"));
        assert_eq!(found, ty, "{kind} {path} has another type");
        checked += 1;
    }
    assert!(checked > 400, "fixture looks truncated: {checked} paths");
}

#[test]
fn additions_are_in_the_schema() {
    let ours = our_fields();
    for (path, ty) in [
        (".spec.imagePullPolicy", "string"),
        (".spec.nodeSelector", "object"),
        (".spec.nodeSelector{}", "string"),
        (".spec.tolerations[]", "object"),
        (".spec.affinity.nodeAffinity", "object"),
        (".status.observedGeneration", "integer"),
        (".status.selector", "string"),
    ] {
        assert_eq!(
            ours.get(&("SpinApp".to_string(), path.to_string()))
                .map(String::as_str),
            Some(ty),
            "{path}"
        );
    }
    let schema = root_schema(&crd::spinapp_crd());
    assert_eq!(
        schema["properties"]["spec"]["properties"]["imagePullPolicy"]["enum"],
        json!(["Always", "IfNotPresent", "Never"])
    );
}

#[test]
fn required_fields_and_defaults_match_upstream() {
    let app = root_schema(&crd::spinapp_crd());
    let spec = &app["properties"]["spec"];
    assert_eq!(spec["required"], json!(["executor", "image"]));
    assert_eq!(spec["properties"]["enableAutoscaling"]["default"], false);
    assert_eq!(spec["properties"]["components"]["minItems"], 1);
    let probe = &spec["properties"]["checks"]["properties"]["liveness"]["properties"];
    for (field, default, minimum) in [
        ("initialDelaySeconds", 10, 0),
        ("timeoutSeconds", 1, 1),
        ("periodSeconds", 10, 1),
        ("successThreshold", 1, 1),
        ("failureThreshold", 3, 1),
    ] {
        assert_eq!(probe[field]["default"], default, "{field} default");
        assert_eq!(
            probe[field]["minimum"].as_f64(),
            Some(minimum as f64),
            "{field} minimum"
        );
    }
    let executor = root_schema(&crd::executor_crd());
    assert_eq!(
        executor["properties"]["spec"]["required"],
        json!(["createDeployment"])
    );
}

#[test]
fn printer_columns_and_subresources() {
    let crd = crd::spinapp_crd();
    let version = &crd.spec.versions[0];
    let columns: Vec<(String, String, i32)> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.clone(), c.json_path.clone(), c.priority.unwrap_or(0)))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Ready".into(), ".status.readyReplicas".into(), 0),
            ("Desired".into(), ".spec.replicas".into(), 0),
            ("Executor".into(), ".spec.executor".into(), 0),
            ("Deployment".into(), ".status.deploymentName".into(), 1),
            ("Service".into(), ".status.serviceName".into(), 1),
        ]
    );
    let sub = version.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.readyReplicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.group, "core.spinkube.dev");
    let executor = crd::executor_crd();
    assert!(
        executor.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
}

/// Every property has a description, so `kubectl explain` is useful.
#[test]
fn every_field_is_described() {
    fn check(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (key, child) in props {
                let child_path = format!("{path}.{key}");
                if child["description"].as_str().is_none_or(str::is_empty)
                    && !matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    missing.push(child_path.clone());
                }
                check(child, &child_path, missing);
            }
        }
        if schema.get("items").is_some() {
            check(&schema["items"], &format!("{path}[]"), missing);
        }
    }
    for crd in [crd::spinapp_crd(), crd::executor_crd()] {
        let mut missing = Vec::new();
        check(&root_schema(&crd), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{}: undescribed fields {missing:?}",
            crd.spec.names.kind
        );
    }
}

fn cel(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    object: Value,
) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(&root_schema(crd), &object, None)
        .map_err(|e| e.to_string())
}

fn app(spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": {"name": "a"}, "spec": spec})
}

fn executor(spec: Value) -> Value {
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
           "metadata": {"name": "e"}, "spec": spec})
}

#[test]
fn cel_rejects_replicas_with_autoscaling() {
    let crd = crd::spinapp_crd();
    let err = cel(
        &crd,
        app(json!({"image": "x:1", "executor": "e", "enableAutoscaling": true, "replicas": 2})),
    )
    .unwrap_err();
    assert!(
        err.contains("replicas must not be set when enableAutoscaling is true"),
        "{err}"
    );
    cel(
        &crd,
        app(json!({"image": "x:1", "executor": "e", "enableAutoscaling": true})),
    )
    .unwrap();
    cel(
        &crd,
        app(json!({"image": "x:1", "executor": "e", "replicas": 2})),
    )
    .unwrap();
}

#[test]
fn cel_requires_exactly_one_executor_runtime() {
    let crd = crd::executor_crd();
    let both = cel(
        &crd,
        executor(json!({"createDeployment": true, "deploymentConfig":
        {"runtimeClassName": "r", "spinImage": "ghcr.io/spin:v3"}})),
    )
    .unwrap_err();
    assert!(
        both.contains("exactly one of runtimeClassName or spinImage"),
        "{both}"
    );
    let neither = cel(
        &crd,
        executor(json!({"createDeployment": true, "deploymentConfig":
        {"installDefaultCACerts": true}})),
    )
    .unwrap_err();
    assert!(
        neither.contains("exactly one of runtimeClassName or spinImage"),
        "{neither}"
    );
    let no_config = cel(&crd, executor(json!({"createDeployment": true}))).unwrap_err();
    assert!(
        no_config.contains("deploymentConfig is required when createDeployment is true"),
        "{no_config}"
    );
    cel(&crd, executor(json!({"createDeployment": false}))).unwrap();
    cel(
        &crd,
        executor(json!({"createDeployment": true, "deploymentConfig": {"spinImage": "s:1"}})),
    )
    .unwrap();
}

#[test]
fn cel_accepts_every_example_and_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifests = spin_operator::manifests::load(&[
        root.join("examples/executors.yaml"),
        root.join("examples/hello.yaml"),
        root.join("examples/annotated.yaml"),
        root.join("examples/autoscaled.yaml"),
        root.join("examples/probes-and-limits.yaml"),
        root.join("examples/runtime-config.yaml"),
        root.join("examples/runtime-config-secret.yaml"),
        root.join("examples/variables.yaml"),
        root.join("examples/spintainer.yaml"),
        root.join("examples/scheduling.yaml"),
        root.join("examples/external.yaml"),
        root.join("tests/fixtures/api"),
    ])
    .unwrap();
    let (apps, executors) = (crd::spinapp_crd(), crd::executor_crd());
    let mut checked = 0;
    for m in manifests {
        let (crd, value) = match &m.object {
            spin_operator::manifests::Manifest::SpinApp(a) => {
                (&apps, serde_json::to_value(a).unwrap())
            }
            spin_operator::manifests::Manifest::SpinAppExecutor(e) => {
                (&executors, serde_json::to_value(e).unwrap())
            }
            _ => continue,
        };
        cel(crd, value).unwrap_or_else(|e| panic!("{}#{}: {e}", m.source, m.index));
        checked += 1;
    }
    assert!(checked >= 15, "{checked}");
}
