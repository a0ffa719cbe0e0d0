//! The ValidatingAdmissionPolicy export of the rule table (`spin-operator rules --format vap`):
//! the committed file is current, every rule has an export decision, and the CEL, evaluated
//! with kube-cel, denies exactly what the webhooks deny among the exported rules: on the
//! rule-table cases (CREATE and UPDATE, so ratcheting too), the examples and upstream's samples.
//! Regenerate with `UPDATE_WEBHOOKS=1 cargo test --test admission_policy`.

#[path = "support/rule_cases.rs"]
mod rule_cases;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use spin_operator::inventory::Inventory;
use spin_operator::rules::vap::{self, Export};
use spin_operator::rules::{
    self, Decision, Operation, Options, Phase, Request, Severity, Target, catalogue,
};

use rule_cases::{NS, app_cases, app_object, executor, executor_cases, inventory, spec_with};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_policy_matches_the_rule_table() {
    let generated = vap::yaml().unwrap();
    for dir in ["webhooks", "helm/spin-operator/files/webhooks"] {
        let path = repo().join(dir).join(vap::FILE);
        if std::env::var_os("UPDATE_WEBHOOKS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        pretty_assertions::assert_eq!(
            committed,
            generated,
            "{} drifted from the rule table; run UPDATE_WEBHOOKS=1 cargo test --test admission_policy",
            path.display()
        );
    }
}

#[test]
fn every_rule_has_an_export_decision() {
    let (mut cel, mut policy, mut webhook_only) = (0, 0, 0);
    for rule in catalogue() {
        let export = vap::export(rule.id).unwrap_or_else(|| panic!("{}: no export", rule.id));
        match export {
            Export::Cel(checks) => {
                cel += 1;
                assert!(!checks.is_empty(), "{}", rule.id);
                // Only errors deny; a policy cannot warn next to denying in one binding.
                assert_eq!(rule.severity, Severity::Error, "{}", rule.id);
                assert_eq!(rule.phase, Phase::Validation, "{}", rule.id);
            }
            Export::Policy(how) => {
                policy += 1;
                assert!(!how.is_empty());
            }
            Export::WebhookOnly(why) => {
                webhook_only += 1;
                assert!(!why.is_empty());
            }
        }
    }
    assert_eq!(cel + policy + webhook_only, catalogue().len());
    eprintln!(
        "exported with CEL: {cel}, by the policy's structure: {policy}, webhook-only: {webhook_only}"
    );
    // The catalogue documents each decision.
    let md = rules::catalogue_markdown();
    for rule in catalogue() {
        assert!(
            md.matches(&format!("| `{}` |", rule.id)).count() == 2,
            "{} not listed in both tables of RULES.md",
            rule.id
        );
    }
}

#[test]
fn committed_file_holds_a_policy_and_binding_per_kind() {
    let text = std::fs::read_to_string(repo().join("webhooks").join(vap::FILE)).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = docs
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("ValidatingAdmissionPolicy", "spin-operator-spinapps"),
            ("ValidatingAdmissionPolicyBinding", "spin-operator-spinapps"),
            (
                "ValidatingAdmissionPolicy",
                "spin-operator-spinappexecutors"
            ),
            (
                "ValidatingAdmissionPolicyBinding",
                "spin-operator-spinappexecutors"
            ),
        ]
    );
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
    {
        assert_eq!(doc["apiVersion"], "admissionregistration.k8s.io/v1");
        let ops = &doc["spec"]["matchConstraints"]["resourceRules"][0]["operations"];
        assert_eq!(ops, &serde_yaml::to_value(["CREATE", "UPDATE"]).unwrap());
        for v in doc["spec"]["validations"].as_sequence().unwrap() {
            assert_eq!(v["reason"], "Invalid");
        }
    }
}

// --- Evaluation with kube-cel ---
//
// kube-cel's VapEvaluator escapes every object key ('_' becomes '__', '.' '__dot__', ...), map
// keys included, which the API server does not do (it escapes only declared property names,
// and a single '_' not at all): `otel.exporter_otlp_endpoint` or a podLabels key such as
// `core.spinkube.dev/app-name` would not be found. So the variables are bound here unescaped,
// with kube-cel's Kubernetes function library on its cel interpreter.

use kube_cel::KubeCelExt;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use std::collections::HashMap;
use std::sync::Arc;

/// JSON as CEL values, keys unescaped; integral numbers are CEL ints.
fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<Key, Cel> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Cel::Map(Map { map: Arc::new(map) })
        }
    }
}

/// The policy's compiled matchConditions and validations (with the rule id of each).
struct Compiled {
    variables: Vec<(String, String, Program)>,
    conditions: Vec<(String, Program)>,
    validations: Vec<(&'static str, String, Program, Program)>,
}

fn program(expression: &str) -> Program {
    Program::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"))
}

fn compile(target: Target) -> Compiled {
    Compiled {
        variables: vap::variables(target)
            .unwrap()
            .into_iter()
            .map(|v| {
                let p = program(&v.expression);
                (v.name, v.expression, p)
            })
            .collect(),
        conditions: vap::match_conditions()
            .into_iter()
            .map(|c| {
                let p = program(&c.expression);
                (c.expression, p)
            })
            .collect(),
        validations: vap::validations(target)
            .into_iter()
            .map(|(id, v)| {
                let message = v
                    .message_expression
                    .expect("every validation has a messageExpression");
                let (p, m) = (program(&v.expression), program(&message));
                (id, v.expression, p, m)
            })
            .collect(),
    }
}

/// `true`, `false`, or a panic naming the expression: an expression that errors makes the API
/// server fail the request (failurePolicy Fail) without naming a rule.
fn holds(ctx: &Context, expression: &str, program: &Program, object: &Value) -> bool {
    match program.execute(ctx) {
        Ok(Cel::Bool(b)) => b,
        other => panic!("{other:?}\nexpression: {expression}\nobject: {object:#}"),
    }
}

/// The rule ids the policy denies `object` with (empty when a matchCondition skips it).
fn denials(
    policy: &Compiled,
    op: &str,
    object: &Value,
    old: Option<&Value>,
) -> BTreeSet<&'static str> {
    let mut ctx = Context::default();
    ctx.register_all();
    ctx.add_variable_from_value("object", to_cel(object));
    ctx.add_variable_from_value("oldObject", old.map_or(Cel::Null, to_cel));
    ctx.add_variable_from_value("request", to_cel(&json!({"operation": op})));
    // The API server evaluates variables lazily; these never error, so eagerly is the same.
    let mut variables = HashMap::new();
    for (name, expression, program) in &policy.variables {
        let value = match program.execute(&ctx) {
            Ok(v @ Cel::Bool(_)) => v,
            other => panic!("variable {name}: {other:?}\nexpression: {expression}"),
        };
        variables.insert(Key::String(Arc::new(name.clone())), value);
    }
    ctx.add_variable_from_value(
        "variables",
        Cel::Map(Map {
            map: Arc::new(variables),
        }),
    );
    for (expression, program) in &policy.conditions {
        if !holds(&ctx, expression, program, object) {
            return BTreeSet::new();
        }
    }
    let mut out = BTreeSet::new();
    for (id, expression, program, message) in &policy.validations {
        if holds(&ctx, expression, program, object) {
            continue;
        }
        match message.execute(&ctx) {
            Ok(Cel::String(m)) => assert!(m.starts_with(&format!("{id}: ")), "{m}"),
            other => panic!("{id}: messageExpression gave {other:?}"),
        }
        out.insert(*id);
    }
    out
}

/// The rule ids exported as CEL validations.
fn exported() -> BTreeSet<&'static str> {
    catalogue()
        .iter()
        .filter(|r| matches!(vap::export(r.id), Some(Export::Cel(_))))
        .map(|r| r.id)
        .collect()
}

/// The exported rules the webhook denies with (errors, after ratcheting), or `None` for an
/// object with a decode error: the API server's schema check rejects those before any policy.
fn webhook_denials(d: &Decision) -> Option<BTreeSet<&'static str>> {
    if d.rules_fired.iter().any(|r| r.ends_with("-DECODE")) {
        return None;
    }
    let exported = exported();
    Some(
        d.errors
            .iter()
            .map(|e| e.rule)
            .filter(|r| exported.contains(r))
            .collect(),
    )
}

fn operation(op: &str) -> Operation {
    match op {
        "CREATE" => Operation::Create,
        _ => Operation::Update,
    }
}

fn namespace(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(NS)
}

fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn webhook(
    target: Target,
    op: &str,
    object: &Value,
    old: Option<&Value>,
    inv: &Inventory,
) -> Decision {
    let req = Request {
        operation: operation(op),
        namespace: namespace(object),
        name: name(object),
        object: Some(object),
        old_object: old,
    };
    match target {
        Target::SpinApp => rules::validate_spinapp(&req, inv, &Options::default()),
        Target::SpinAppExecutor => rules::validate_executor(&req, inv, &Options::default()),
    }
}

/// Asserts the policy denies `object` with exactly the exported rules the webhook denies it
/// with; returns them.
fn assert_agrees(
    policy: &Compiled,
    target: Target,
    op: &str,
    object: &Value,
    old: Option<&Value>,
    inv: &Inventory,
    context: &str,
) -> BTreeSet<&'static str> {
    let decision = webhook(target, op, object, old, inv);
    let Some(expected) = webhook_denials(&decision) else {
        return BTreeSet::new();
    };
    let policy_denials = denials(policy, op, object, old);
    pretty_assertions::assert_eq!(
        policy_denials,
        expected,
        "{context}: {op} of {object:#}\nold: {old:#?}\nwebhook: {decision:#?}"
    );
    policy_denials
}

fn merged(base: &Value, changes: &Value) -> Value {
    let mut out = base.clone();
    json_patch::merge(&mut out, changes);
    out
}

/// Every case of the rule table, as CREATE and in UPDATEs (introducing the error, editing
/// another field next to it, fixing it): the policy denies exactly as the webhook. Returns the
/// exported rules a rejecting case was denied with.
fn agree_on_cases(
    target: Target,
    cases: Vec<(&'static str, Value, Value)>,
    object: impl Fn(Value) -> Value,
    edits: &[Value],
) -> BTreeSet<&'static str> {
    let policy = compile(target);
    let inv = inventory();
    let mut denied = BTreeSet::new();
    for (rule, reject, accept) in cases {
        let (reject, accept) = (object(reject), object(accept));
        let got = assert_agrees(&policy, target, "CREATE", &reject, None, &inv, rule);
        denied.extend(got.into_iter().filter(|r| *r == rule));
        let got = assert_agrees(&policy, target, "CREATE", &accept, None, &inv, rule);
        assert!(got.is_empty(), "{rule}: accepting case denied with {got:?}");
        assert_agrees(
            &policy,
            target,
            "UPDATE",
            &reject,
            Some(&accept),
            &inv,
            rule,
        );
        assert_agrees(
            &policy,
            target,
            "UPDATE",
            &accept,
            Some(&reject),
            &inv,
            rule,
        );
        for edit in edits {
            let edited = merged(&reject, edit);
            assert_agrees(
                &policy,
                target,
                "UPDATE",
                &edited,
                Some(&reject),
                &inv,
                rule,
            );
        }
    }
    denied
}

fn exported_of(target: Target) -> BTreeSet<&'static str> {
    catalogue()
        .iter()
        .filter(|r| r.target == target && exported().contains(r.id))
        .map(|r| r.id)
        .collect()
}

#[test]
fn spinapp_rule_cases_are_denied_with_the_webhooks_rule_ids() {
    let denied = agree_on_cases(
        Target::SpinApp,
        app_cases(),
        |changes| app_object(spec_with(changes)),
        &[
            json!({"spec": {"podLabels": {"edited": "yes"}}}),
            json!({"spec": {"serviceAccountName": "edited"}}),
        ],
    );
    // Every exported SpinApp rule but SA-NAME (names are not in specs: see below) has a
    // rejecting case, and the policy denied it.
    let mut want = exported_of(Target::SpinApp);
    want.remove("SA-NAME");
    assert_eq!(denied, want);
}

#[test]
fn app_names_are_judged_as_by_the_webhook() {
    // The cases of rules_table's app_name_must_fit_service_and_label (names are not in specs).
    let policy = compile(Target::SpinApp);
    let inv = inventory();
    for (name, denied) in [
        ("1app", true),
        (&*"a".repeat(53), true),
        (&*"a".repeat(52), false),
        ("app", false),
    ] {
        let mut object = app_object(spec_with(json!({})));
        object["metadata"]["name"] = json!(name);
        let got = assert_agrees(
            &policy,
            Target::SpinApp,
            "CREATE",
            &object,
            None,
            &inv,
            name,
        );
        assert_eq!(got.contains("SA-NAME"), denied, "{name}: {got:?}");
    }
}

#[test]
fn executor_rule_cases_are_denied_with_the_webhooks_rule_ids() {
    let denied = agree_on_cases(
        Target::SpinAppExecutor,
        executor_cases(),
        |spec| executor("exec", NS, spec),
        &[
            json!({"metadata": {"labels": {"edited": "yes"}}, "spec": {"createDeployment": true}}),
            json!({"spec": {"deploymentConfig": {"installDefaultCACerts": true}}}),
        ],
    );
    assert_eq!(denied, exported_of(Target::SpinAppExecutor));
}

#[test]
fn objects_being_deleted_are_not_evaluated() {
    let policy = compile(Target::SpinApp);
    let old = app_object(spec_with(json!({})));
    let mut bad = app_object(spec_with(json!({"replicas": -5, "image": "NOT VALID"})));
    assert!(!denials(&policy, "UPDATE", &bad, Some(&old)).is_empty());
    bad["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert!(denials(&policy, "UPDATE", &bad, Some(&old)).is_empty());
}

/// Every document of the YAML files in `dir` (not recursing).
fn manifests(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for de in serde_yaml::Deserializer::from_str(&text) {
            let yaml = serde_yaml::Value::deserialize(de).unwrap();
            if !yaml.is_null() {
                docs.push(serde_json::to_value(yaml).unwrap());
            }
        }
    }
    docs
}

fn kind(o: &Value) -> &str {
    o.get("kind").and_then(Value::as_str).unwrap_or("")
}

/// The executors, Secrets and ConfigMaps of `docs`, as `spin-operator validate` sees them.
fn inventory_of(docs: &[Value]) -> Inventory {
    let mut inv = Inventory::default();
    for doc in docs {
        match kind(doc) {
            "SpinAppExecutor" => {
                if let Ok(e) = serde_json::from_value(doc.clone()) {
                    inv.add_executor(e);
                }
            }
            "Secret" => {
                if let Ok(s) = serde_json::from_value(doc.clone()) {
                    inv.add_secret(s);
                }
            }
            "ConfigMap" => {
                if let Ok(c) = serde_json::from_value(doc.clone()) {
                    inv.add_config_map(c);
                }
            }
            _ => {}
        }
    }
    inv
}

/// Defaults every SpinApp of `docs` as the mutating webhook would, then checks the policy
/// agrees with the webhook on every SpinApp and executor; returns the denials per object.
fn agree_on_manifests(docs: &[Value]) -> Vec<(String, BTreeSet<&'static str>)> {
    let apps = compile(Target::SpinApp);
    let executors = compile(Target::SpinAppExecutor);
    let inv = inventory_of(docs);
    let mut out = Vec::new();
    for doc in docs {
        let (target, policy) = match kind(doc) {
            "SpinApp" => (Target::SpinApp, &apps),
            "SpinAppExecutor" => (Target::SpinAppExecutor, &executors),
            _ => continue,
        };
        let mut object = doc.clone();
        if target == Target::SpinApp {
            let req = Request {
                operation: Operation::Create,
                namespace: namespace(doc),
                name: name(doc),
                object: Some(doc),
                old_object: None,
            };
            let patch = rules::mutate_spinapp(&req, &inv, &Options::default()).patch;
            json_patch::patch(&mut object, &patch).unwrap();
        }
        let label = format!("{} {}", kind(doc), name(doc));
        let denied = assert_agrees(policy, target, "CREATE", &object, None, &inv, &label);
        out.push((label, denied));
    }
    out
}

#[test]
fn every_example_is_admitted() {
    let results = agree_on_manifests(&manifests(&repo().join("examples")));
    assert!(results.len() >= 10, "examples not found: {results:?}");
    for (label, denied) in results {
        assert!(denied.is_empty(), "{label} denied with {denied:?}");
    }
}

#[test]
fn invalid_examples_are_denied_as_by_the_webhook() {
    let results = agree_on_manifests(&manifests(&repo().join("examples/invalid")));
    assert!(
        results.iter().any(|(_, denied)| !denied.is_empty()),
        "{results:?}"
    );
}

/// Upstream's samples (a read-only checkout outside the repository, `UPSTREAM_SAMPLES` or
/// /work/shared/upstream/samples): the policy agrees with the webhook on each.
#[test]
fn upstream_samples_are_judged_as_by_the_webhook() {
    let dir = std::env::var_os("UPSTREAM_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/upstream/samples"));
    if !dir.is_dir() {
        eprintln!(
            "{}: not present, upstream samples not checked",
            dir.display()
        );
        return;
    }
    let results = agree_on_manifests(&manifests(&dir));
    assert!(!results.is_empty());
    for (label, denied) in &results {
        eprintln!("{label}: {denied:?}");
    }
}

/// An explicit `null` (kept by the API server for the CRD's nullable fields) is unset for the
/// webhook; the policy must read it so too, not fail the request.
#[test]
fn explicit_nulls_are_judged_as_by_the_webhook() {
    let apps = compile(Target::SpinApp);
    let inv = inventory();
    let mut checked = 0;
    for field in [
        "replicas",
        "enableAutoscaling",
        "imagePullPolicy",
        "serviceAccountName",
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
        "nodeSelector",
        "serviceAnnotations",
        "deploymentAnnotations",
        "podAnnotations",
    ] {
        let mut object = app_object(spec_with(json!({})));
        object["spec"][field] = Value::Null;
        let denied = assert_agrees(&apps, Target::SpinApp, "CREATE", &object, None, &inv, field);
        assert!(denied.is_empty(), "{field}: null denied with {denied:?}");
        checked += 1;
    }
    for nested in [
        json!({"checks": {"liveness": null, "readiness": {"httpGet": {"path": "/", "httpHeaders": null}, "periodSeconds": null}}}),
        json!({"resources": {"limits": null, "requests": {"memory": "1Gi"}}, "invocationLimits": {"memory": "64Mi"}}),
        json!({"runtimeConfig": {"loadFromSecret": null, "llmCompute": null, "sqliteDatabases": null,
            "keyValueStores": [{"name": "a", "type": "spin", "options": null}]}}),
        json!({"variables": [{"name": "a", "value": "x", "valueFrom": null}]}),
        json!({"variables": [{"name": "a", "value": null, "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k", "optional": null}}}]}),
    ] {
        let mut object = app_object(spec_with(json!({})));
        for (k, v) in nested.as_object().unwrap() {
            object["spec"][k] = v.clone();
        }
        let denied = assert_agrees(
            &apps,
            Target::SpinApp,
            "CREATE",
            &object,
            None,
            &inv,
            "nested null",
        );
        assert!(denied.is_empty(), "{nested}: denied with {denied:?}");
        checked += 1;
    }
    let executors = compile(Target::SpinAppExecutor);
    for spec in [
        json!({"createDeployment": false, "deploymentConfig": null}),
        json!({"createDeployment": true, "deploymentConfig": {"runtimeClassName": "x", "spinImage": null, "caCertSecret": null, "otel": null}}),
        json!({"createDeployment": true, "deploymentConfig": {"runtimeClassName": "x", "otel": {"exporter_otlp_endpoint": null}}}),
    ] {
        let object = executor("exec", NS, spec.clone());
        let denied = assert_agrees(
            &executors,
            Target::SpinAppExecutor,
            "CREATE",
            &object,
            None,
            &inv,
            "null",
        );
        assert!(denied.is_empty(), "{spec}: denied with {denied:?}");
        checked += 1;
    }
    assert_eq!(checked, 26);
}
