//! Every SpinApp/SpinAppExecutor we ship or use as a fixture decodes into the typed API and
//! re-encodes with no field lost (round trip), so the operator never drops user data.

use std::path::{Path, PathBuf};

use serde_json::Value;
use spin_operator::api::{SpinApp, SpinAppExecutor};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// All documents of our kinds in the examples and API fixtures, as raw JSON.
fn documents() -> Vec<(String, Value)> {
    let files =
        spin_operator::manifests::expand_paths(&[repo("examples"), repo("tests/fixtures/api")])
            .expect("fixture directories exist");
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = value["kind"].as_str().unwrap_or_default();
            if value["apiVersion"] == "core.spinkube.dev/v1alpha1"
                && (kind == "SpinApp" || kind == "SpinAppExecutor")
            {
                docs.push((format!("{}#{i}", file.display()), value));
            }
        }
    }
    docs
}

/// Asserts every leaf of `input` is present in `output` with the same value.
fn assert_contained(input: &Value, output: &Value, path: &str, doc: &str) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let child = format!("{path}.{key}");
                let other = b
                    .get(key)
                    .unwrap_or_else(|| panic!("{doc}: field {child} lost in round trip"));
                assert_contained(value, other, &child, doc);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{doc}: {path} changed length");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_contained(x, y, &format!("{path}[{i}]"), doc);
            }
        }
        // Quantities and int-or-string fields may come back as strings: compare rendered forms.
        (Value::Number(n), Value::String(s)) => assert_eq!(&n.to_string(), s, "{doc}: {path}"),
        _ => assert_eq!(input, output, "{doc}: {path} changed"),
    }
}

#[test]
fn every_fixture_round_trips_without_losing_a_field() {
    let docs = documents();
    assert!(
        docs.len() >= 15,
        "expected the examples and fixtures, found {}",
        docs.len()
    );
    for (name, value) in docs {
        let output = match value["kind"].as_str() {
            Some("SpinApp") => {
                let typed: SpinApp =
                    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                let again: SpinApp =
                    serde_json::from_value(serde_json::to_value(&typed).unwrap()).unwrap();
                assert_eq!(typed, again, "{name}: second round trip differs");
                serde_json::to_value(&typed).unwrap()
            }
            _ => {
                let typed: SpinAppExecutor =
                    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
                serde_json::to_value(&typed).unwrap()
            }
        };
        assert_contained(&value, &output, "", &name);
    }
}

#[test]
fn every_field_fixture_sets_every_spec_field() {
    // The round trip above only proves something for fields the fixtures use: make sure the
    // every-field fixture really uses every field the type has.
    let text =
        std::fs::read_to_string(repo("tests/fixtures/api/spinapp-every-field.yaml")).unwrap();
    let app: SpinApp = serde_yaml::from_str(&text).unwrap();
    let spec = serde_json::to_value(&app.spec).unwrap();
    let schema = spin_operator::crd::spinapp_crd().spec.versions[0]
        .schema
        .clone()
        .unwrap()
        .open_api_v3_schema
        .unwrap();
    let spec_props = schema.properties.unwrap()["spec"]
        .properties
        .clone()
        .unwrap();
    for field in spec_props.keys() {
        assert!(
            spec.get(field).is_some(),
            "fixture does not set spec.{field}"
        );
    }
    let status = serde_json::to_value(app.status.as_ref().unwrap()).unwrap();
    for field in [
        "conditions",
        "activeScheduler",
        "readyReplicas",
        "deploymentName",
        "serviceName",
        "observedGeneration",
        "selector",
    ] {
        assert!(
            status.get(field).is_some(),
            "fixture does not set status.{field}"
        );
    }
}

#[test]
fn wire_names_match_upstream() {
    let text =
        std::fs::read_to_string(repo("tests/fixtures/api/executors-every-field.yaml")).unwrap();
    let first = serde_yaml::Deserializer::from_str(&text).next().unwrap();
    let executor: SpinAppExecutor = serde::Deserialize::deserialize(first).unwrap();
    let json = serde_json::to_value(&executor).unwrap();
    let config = &json["spec"]["deploymentConfig"];
    // Upstream spells these exactly so (OTel fields are snake_case, CA fields are acronyms).
    assert_eq!(config["caCertSecret"], "my-ca");
    assert_eq!(config["installDefaultCACerts"], false);
    assert_eq!(config["runtimeClassName"], "wasmtime-spin-v2");
    assert_eq!(config["otel"]["exporter_otlp_endpoint"], "http://otel:4318");
    assert_eq!(
        config["otel"]["exporter_otlp_traces_endpoint"],
        "http://otel:4318/v1/traces"
    );
    assert_eq!(json["spec"]["createDeployment"], true);
}

#[test]
fn probe_defaults_are_upstreams() {
    let app: SpinApp = serde_json::from_value(serde_json::json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": "p"},
        "spec": {"image": "x:1", "executor": "e",
                 "checks": {"liveness": {"httpGet": {"path": "/"}}}}
    }))
    .unwrap();
    let probe = app.spec.checks.unwrap().liveness.unwrap();
    assert_eq!(
        (
            probe.initial_delay_seconds,
            probe.timeout_seconds,
            probe.period_seconds,
            probe.success_threshold,
            probe.failure_threshold
        ),
        (10, 1, 10, 1, 3)
    );
    assert!(!app.spec.enable_autoscaling);
}

#[test]
fn missing_required_fields_still_decode_for_admission_to_explain() {
    let app: SpinApp = serde_json::from_value(serde_json::json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinApp",
        "metadata": {"name": "bare"},
        "spec": {}
    }))
    .unwrap();
    assert_eq!(app.spec.executor, "");
    assert_eq!(app.spec.image, "");
    assert_eq!(app.spec.replicas, None);
}
