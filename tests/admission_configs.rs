//! `webhooks/*.yaml` must equal what the route table generates.
//! Regenerate with `UPDATE_WEBHOOKS=1 cargo test --test admission_configs`.

use std::path::Path;

use spin_operator::admission::config;
use spin_operator::admission::routes::ROUTES;

#[test]
fn committed_webhook_configurations_match_the_route_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks");
    let update = std::env::var_os("UPDATE_WEBHOOKS").is_some();
    for (name, generated) in config::files().unwrap() {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        pretty_assertions::assert_eq!(
            committed,
            generated,
            "{name} drifted from the route table; run UPDATE_WEBHOOKS=1 cargo test --test admission_configs"
        );
    }
}

#[test]
fn every_registered_route_path_appears_in_the_files() {
    let files = config::files().unwrap();
    let all: String = files.iter().map(|(_, text)| text.as_str()).collect();
    for route in ROUTES {
        assert_eq!(
            all.contains(route.path),
            route.registered,
            "{} registered={}",
            route.path,
            route.registered
        );
    }
}

/// Evaluate the `spec-changed` matchCondition with a CEL implementation: it must skip exactly
/// the UPDATEs that leave `spec` alone, and never error (an erroring matchCondition fails the
/// request under failurePolicy Fail).
#[test]
fn match_condition_skips_only_spec_preserving_updates() {
    use kube_cel::{AdmissionRequest, VapEvaluator, VapExpression};
    use serde_json::{Value, json};

    let validating = config::validating_configuration();
    let conditions = validating.webhooks.unwrap()[0]
        .match_conditions
        .clone()
        .unwrap();
    let expression = conditions[0].expression.clone();

    // Some(true) = webhook called, Some(false) = skipped, None = evaluation error.
    let eval = |op: &str, object: Value, old: Value| -> Option<bool> {
        let mut builder = VapEvaluator::builder().request(AdmissionRequest {
            operation: op.into(),
            ..Default::default()
        });
        if !object.is_null() {
            builder = builder.object(object);
        }
        if !old.is_null() {
            builder = builder.old_object(old);
        }
        let results = builder.build().evaluate(&[
            VapExpression {
                expression: expression.clone(),
                message: None,
                message_expression: None,
            },
            VapExpression {
                expression: format!("!({expression})"),
                message: None,
                message_expression: None,
            },
        ]);
        match (results[0].passed, results[1].passed) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    };
    let app = |replicas: i64| json!({"metadata": {"name": "a", "finalizers": []}, "spec": {"replicas": replicas}});
    let mut relabelled = app(1);
    relabelled["metadata"]["labels"] = json!({"team": "x"});

    assert_eq!(eval("CREATE", app(1), Value::Null), Some(true));
    assert_eq!(eval("UPDATE", app(2), app(1)), Some(true));
    assert_eq!(eval("UPDATE", relabelled, app(1)), Some(false));
    assert_eq!(
        eval("UPDATE", json!({"metadata": {"name": "a"}}), app(1)),
        Some(true)
    );
    assert_eq!(eval("DELETE", Value::Null, app(1)), Some(true));
}
