//! The reflector-backed lookup against a fake API server: the caches fill from one list + one
//! watch per resource, and admission requests afterwards make zero API calls.

use std::sync::Arc;

use serde_json::{Value, json};
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::admission::{AdmissionMetrics, AdmissionState, router};
use spin_operator::inventory::{Lookup, Presence};
use spin_operator::rules::Options;

mod admission_fake_api;
use admission_fake_api::{Calls, admit, executor, fake_api};

fn review(path_kind: &str, operation: &str, name: &str, object: Value, old: Value) -> Value {
    let (kind, resource) = match path_kind {
        "app" => ("SpinApp", "spinapps"),
        _ => ("SpinAppExecutor", "spinappexecutors"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{operation}-{name}"),
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": resource},
            "name": name, "namespace": "apps", "operation": operation,
            "userInfo": {"username": "alice"},
            "object": object, "oldObject": old,
        }
    })
}

#[tokio::test]
async fn caches_fill_from_watches_and_admission_makes_no_api_calls() {
    let calls: Calls = Arc::default();
    let client = kube::Client::new(fake_api(calls.clone()), "default");
    let (lookup, writers) = cache::stores(CacheConfig::default());
    let watches = tokio::spawn(writers.run(client));
    lookup.wait_until_ready().await.unwrap();

    // One list and one watch per resource; wait for the watches to be opened.
    let settled = || {
        let c = calls.lock().unwrap();
        c.iter().filter(|c| c.contains("watch=true")).count() == 4
    };
    while !settled() {
        tokio::task::yield_now().await;
    }
    let before = calls.lock().unwrap().clone();
    assert_eq!(before.len(), 8, "{before:#?}");
    // Secrets and ConfigMaps are watched metadata-only: their data is never sent to us.
    for call in before
        .iter()
        .filter(|c| c.contains("/secrets") || c.contains("/configmaps"))
    {
        assert!(call.contains("as=PartialObjectMetadata"), "{call}");
    }

    // The lookup answers from the caches.
    assert_eq!(
        lookup.executor_names("apps"),
        ["containerd-shim-spin", "zeta"]
    );
    assert!(lookup.executor("apps", "zeta").is_some());
    assert!(lookup.executor("other", "zeta").is_none());
    assert_eq!(lookup.apps_using_executor("apps", "zeta"), ["hello"]);
    assert_eq!(lookup.secret("apps", "db-creds"), Presence::Present);
    assert_eq!(lookup.secret("apps", "nope"), Presence::Absent);
    assert_eq!(lookup.config_map("apps", "settings"), Presence::Present);

    // Admission through the production router, backed by the caches.
    let app = router(AdmissionState::new(
        cache::shared(lookup.clone()),
        Options::default(),
        AdmissionMetrics::default(),
    ));
    let new_app = json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "image": "ghcr.io/example/web:v1",
            "variables": [
                {"name": "password", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "p"}}},
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "absent-secret", "key": "t"}}},
            ],
        },
    });
    let r = admit(
        &app,
        "/mutate-core-spinkube-dev-v1alpha1-spinapp",
        &review("app", "CREATE", "web", new_app.clone(), Value::Null),
    )
    .await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["patch"].is_string(),
        "executor defaulted from the cache: {r}"
    );

    let mut defaulted = new_app.clone();
    defaulted["spec"]["executor"] = "containerd-shim-spin".into();
    defaulted["spec"]["replicas"] = 1.into();
    let r = admit(
        &app,
        "/validate-core-spinkube-dev-v1alpha1-spinapp",
        &review("app", "CREATE", "web", defaulted, Value::Null),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("absent-secret"), "{warnings}");
    assert!(!warnings.contains("db-creds"), "{warnings}");

    let r = admit(
        &app,
        "/validate-core-spinkube-dev-v1alpha1-spinappexecutor",
        &review("executor", "DELETE", "zeta", Value::Null, executor("zeta")),
    )
    .await;
    assert_eq!(r["allowed"], false, "zeta is used by hello: {r}");

    assert_eq!(
        *calls.lock().unwrap(),
        before,
        "admission must not call the API server"
    );
    watches.abort();
}

#[tokio::test]
async fn without_reference_watches_presence_is_unknown_and_nothing_is_listed() {
    let calls: Calls = Arc::default();
    let client = kube::Client::new(fake_api(calls.clone()), "default");
    let (lookup, writers) = cache::stores(CacheConfig {
        watch_references: false,
        ..CacheConfig::default()
    });
    let watches = tokio::spawn(writers.run(client));
    lookup.wait_until_ready().await.unwrap();
    assert_eq!(lookup.secret("apps", "db-creds"), Presence::Unknown);
    assert_eq!(lookup.config_map("apps", "settings"), Presence::Unknown);
    let listed: Vec<String> = calls.lock().unwrap().clone();
    assert!(
        listed
            .iter()
            .all(|c| !c.contains("/secrets") && !c.contains("/configmaps")),
        "{listed:#?}"
    );
    watches.abort();
}

#[tokio::test]
async fn hiding_secret_existence_warns_about_config_maps_only_and_never_lists_secrets() {
    let calls: Calls = Arc::default();
    let client = kube::Client::new(fake_api(calls.clone()), "default");
    let (lookup, writers) = cache::stores(CacheConfig {
        watch_secrets: false,
        ..CacheConfig::default()
    });
    let watches = tokio::spawn(writers.run(client));
    lookup.wait_until_ready().await.unwrap();
    assert_eq!(lookup.secret("apps", "db-creds"), Presence::Unknown);
    assert_eq!(lookup.secret("apps", "nope"), Presence::Unknown);
    assert_eq!(lookup.config_map("apps", "settings"), Presence::Present);
    assert_eq!(lookup.config_map("apps", "nope"), Presence::Absent);

    let app = router(AdmissionState::new(
        cache::shared(lookup.clone()),
        Options::default(),
        AdmissionMetrics::default(),
    ));
    let object = json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "image": "ghcr.io/example/web:v1", "executor": "zeta", "replicas": 1,
            "variables": [
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "absent-secret", "key": "t"}}},
                {"name": "url", "valueFrom": {"configMapKeyRef": {"name": "absent-config", "key": "u"}}},
            ],
        },
    });
    let r = admit(
        &app,
        "/validate-core-spinkube-dev-v1alpha1-spinapp",
        &review("app", "CREATE", "web", object, Value::Null),
    )
    .await;
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("absent-config"), "{warnings}");
    assert!(
        !warnings.contains("absent-secret") && !warnings.contains("Secret"),
        "{warnings}"
    );
    let listed: Vec<String> = calls.lock().unwrap().clone();
    assert!(
        listed.iter().all(|c| !c.contains("/secrets")),
        "{listed:#?}"
    );
    assert!(
        listed.iter().any(|c| c.contains("/configmaps")),
        "{listed:#?}"
    );
    watches.abort();
}
