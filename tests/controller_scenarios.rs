//! The real controllers (`spin_operator::controller::run`) against the in-memory API server,
//! through a real `kube::Client`. Every wait is bounded; progress is observed (objects, reconcile
//! counts), never assumed from elapsed time.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use spin_operator::api::{
    APP_NAME_LABEL, EXECUTOR_FINALIZER, SpinApp, SpinAppExecutor, app_status_label,
};
use spin_operator::controller::{ControllerConfig, Settings};
use spin_operator::rbac::{self, PERMISSIONS};
use spin_test_apiserver::{RequestMatcher, RequestRecord, ResourceKey, TestApiServer, Verb};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "default";

#[path = "support/operator.rs"]
mod operator;
use operator::Running;

fn settings() -> Settings {
    Settings {
        resync: Duration::from_millis(300),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        concurrency: 4,
        // Nothing plays the Deployment controller in most tests: a short wait for its report.
        status_hold: Duration::from_millis(200),
        ..Settings::default()
    }
}

fn start_with(server: &TestApiServer, config: ControllerConfig) -> Running {
    operator::start(server.client(), config)
}

fn start(server: &TestApiServer) -> Running {
    let mut config = ControllerConfig::new("test-pod", NS);
    config.leader_election = None;
    config.settings = settings();
    start_with(server, config)
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    assert!(
        spin_test_apiserver::wait_for(&mut cond, WAIT).await,
        "timed out waiting for: {what}"
    );
}

fn executor(name: &str, create_deployment: bool) -> Value {
    let mut spec = json!({ "createDeployment": create_deployment });
    if create_deployment {
        spec["deploymentConfig"] =
            json!({ "runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": true });
    }
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": { "name": name, "namespace": NS }, "spec": spec
    })
}

fn app(name: &str, executor: &str) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "image": "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
            "executor": executor, "replicas": 2,
            "podAnnotations": { "example.com/team": "wasm" }
        }
    })
}

/// The runtime-config example's objects (Secret, ConfigMap, SpinApp `stateful`).
fn runtime_config_objects() -> Vec<Value> {
    let text = std::fs::read_to_string("examples/runtime-config.yaml").unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn deployment(server: &TestApiServer, name: &str) -> Option<Deployment> {
    server.get_as::<Deployment>(Some(NS), name)
}

fn spinapp(server: &TestApiServer, name: &str) -> SpinApp {
    server
        .get_as::<SpinApp>(Some(NS), name)
        .expect("app exists")
}

fn ready_reason(app: &SpinApp) -> Option<(String, String)> {
    app.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn condition(app: &SpinApp, ty: &str) -> Option<(String, String)> {
    app.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn events(server: &TestApiServer) -> Vec<Value> {
    server.list(&ResourceKey::new("events.k8s.io", "v1", "events"), Some(NS))
}

fn has_event(server: &TestApiServer, regarding: &str, reason: &str) -> bool {
    events(server)
        .iter()
        .any(|e| e["reason"] == reason && e["regarding"]["name"].as_str() == Some(regarding))
}

/// Name of the Secret mounted as runtime config in the Deployment, if any.
fn runtime_config_secret_of(d: &Deployment) -> Option<String> {
    let pod = d.spec.template.spec.as_ref()?;
    pod.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .find(|n| n.starts_with("stateful-"))
}

fn generated_secrets(server: &TestApiServer, app: &str) -> BTreeSet<String> {
    server
        .list(&ResourceKey::of::<Secret>(), Some(NS))
        .iter()
        .filter(|s| s["metadata"]["labels"][APP_NAME_LABEL] == app)
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Waits until app `stateful` (examples/runtime-config.yaml) has its runtime config mounted.
async fn wait_runtime_config(server: &TestApiServer) {
    wait("Deployment with runtime config", || {
        deployment(server, "stateful")
            .as_ref()
            .and_then(runtime_config_secret_of)
            .is_some()
    })
    .await;
}

/// Waits until `n` more successful reconciles happened (resyncs included).
async fn wait_reconciles(running: &Running, n: u64) {
    let target = running.successes() + n;
    wait(&format!("{n} more reconciles"), || {
        running.successes() >= target
    })
    .await;
}

/// Plays the Deployment controller: all replicas ready and Available.
fn mark_deployment_available(server: &TestApiServer, name: &str, replicas: i32) {
    server.set_status(
        &ResourceKey::of::<Deployment>(),
        Some(NS),
        name,
        json!({
            "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
            "updatedReplicas": replicas, "observedGeneration": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet has successfully progressed."}
            ]
        }),
    );
}

/// The verbs the real API server authorizes a request with: a PATCH that creates the object
/// (server-side apply answered 201) needs `create` as well as `patch` (found on kube-apiserver,
/// tests/cluster: without `create` every first apply of a Deployment was forbidden).
fn authorized_verbs(r: &RequestRecord) -> Vec<&'static str> {
    match r.verb {
        Verb::Other => vec![],
        Verb::Patch if r.status == 201 => vec!["patch", "create"],
        verb => vec![verb.as_str()],
    }
}

fn assert_requests_covered(requests: &[RequestRecord]) {
    for r in requests {
        for verb in authorized_verbs(r) {
            assert!(
                rbac::allows_named(
                    verb,
                    &r.group,
                    &r.resource,
                    r.subresource.as_deref(),
                    r.name.as_deref().filter(|_| verb != "create"),
                ),
                "request not covered by rbac::PERMISSIONS: {} {}/{} {:?} {:?}",
                verb,
                r.group,
                r.resource,
                r.subresource,
                r.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_converges_mirrors_deployment_status_and_resync_writes_nothing() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    server.put(app("hello", "containerd-shim-spin"));
    let running = start(&server);

    wait("Deployment, Service and CA Secret", || {
        deployment(&server, "hello").is_some()
            && server.get_as::<Service>(Some(NS), "hello").is_some()
            && server.get_as::<Secret>(Some(NS), "spin-ca").is_some()
    })
    .await;
    let app_obj = spinapp(&server, "hello");
    let d = deployment(&server, "hello").unwrap();
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("SpinApp", "hello", Some(true))
    );
    assert_eq!(owner.uid, app_obj.uid().unwrap());
    assert_eq!(d.labels()[APP_NAME_LABEL], "hello");
    assert_eq!(d.spec.replicas, Some(2));
    let pod = d.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.runtime_class_name.as_deref(), Some("wasmtime-spin-v2"));
    assert_eq!(pod.containers[0].name, "hello");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0")
    );
    let template_meta = d.spec.template.metadata.as_ref().unwrap();
    assert_eq!(
        template_meta.labels.as_ref().unwrap()[&app_status_label("hello")],
        "ready"
    );
    assert_eq!(
        template_meta.annotations.as_ref().unwrap()["example.com/team"],
        "wasm"
    );
    let svc = server.get_as::<Service>(Some(NS), "hello").unwrap();
    assert_eq!(svc.owner_references()[0].name, "hello");
    // The CA Secret is shared: no owner.
    let ca = server.get_as::<Secret>(Some(NS), "spin-ca").unwrap();
    assert!(ca.metadata.owner_references.unwrap_or_default().is_empty());

    // Status before the Deployment is available.
    wait("status written", || {
        ready_reason(&spinapp(&server, "hello"))
            == Some(("False".into(), "DeploymentUnavailable".into()))
    })
    .await;
    let status = spinapp(&server, "hello").status.unwrap();
    assert_eq!(
        status.active_scheduler.as_deref(),
        Some("containerd-shim-spin")
    );
    assert_eq!(status.deployment_name.as_deref(), Some("hello"));
    assert_eq!(status.service_name.as_deref(), Some("hello"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.ready_replicas, 0);
    let selector = status.selector.unwrap();
    assert!(
        selector.contains(&format!("{APP_NAME_LABEL}=hello")),
        "{selector}"
    );

    // Play the Deployment controller: status mirrors it.
    mark_deployment_available(&server, "hello", 2);
    wait("readyReplicas and conditions mirrored", || {
        let a = spinapp(&server, "hello");
        a.status.as_ref().map(|s| s.ready_replicas) == Some(2)
            && ready_reason(&a) == Some(("True".into(), "Reconciled".into()))
            && condition(&a, "Available")
                == Some(("True".into(), "MinimumReplicasAvailable".into()))
            && condition(&a, "Progressing")
                == Some(("True".into(), "NewReplicaSetAvailable".into()))
    })
    .await;
    let ready_since = spinapp(&server, "hello")
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time;

    // Steady state: several resync periods (observed as reconciles) without a single write.
    wait_reconciles(&running, 1).await;
    server.clear_requests();
    wait_reconciles(&running, 5).await;
    let writes = server.writes();
    assert!(writes.is_empty(), "converged app made writes: {writes:#?}");
    let ready_after = spinapp(&server, "hello")
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time;
    assert_eq!(ready_since, ready_after);
    assert_requests_covered(&server.requests());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_change_patches_children_and_removes_dropped_fields() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    server.put(app("hello", "containerd-shim-spin"));
    let running = start(&server);
    wait("Deployment", || deployment(&server, "hello").is_some()).await;

    let apps: Api<SpinApp> = Api::namespaced(server.client(), NS);
    apps.patch(
        "hello",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "image": "ghcr.io/example/hello:v2", "replicas": 3,
            "podAnnotations": null
        }})),
    )
    .await
    .unwrap();
    wait("Deployment patched", || {
        deployment(&server, "hello").is_some_and(|d| {
            let pod = d.spec.template.spec.as_ref().unwrap();
            d.spec.replicas == Some(3)
                && pod.containers[0].image.as_deref() == Some("ghcr.io/example/hello:v2")
                && d.spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.as_ref())
                    .is_none_or(|a| !a.contains_key("example.com/team"))
        })
    })
    .await;
    wait("observedGeneration follows", || {
        spinapp(&server, "hello")
            .status
            .and_then(|s| s.observed_generation)
            == Some(2)
    })
    .await;

    // Drift: someone edits a field we own; the next resync restores it.
    let deployments: Api<Deployment> = Api::namespaced(server.client(), NS);
    deployments
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    wait("drift corrected", || {
        deployment(&server, "hello").and_then(|d| d.spec.replicas) == Some(3)
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_without_deployments_deletes_the_deployment_and_keeps_status() {
    let server = TestApiServer::start().await;
    server.put(executor("shim", true));
    server.put(app("hello", "shim"));
    let running = start(&server);
    wait("Deployment", || deployment(&server, "hello").is_some()).await;

    server.put(executor("shim", false));
    wait("Deployment deleted", || {
        deployment(&server, "hello").is_none()
    })
    .await;
    wait("status without Deployment", || {
        let a = spinapp(&server, "hello");
        let s = a.status.clone().unwrap_or_default();
        s.deployment_name.is_none()
            && s.service_name.as_deref() == Some("hello")
            && s.active_scheduler.as_deref() == Some("shim")
            && ready_reason(&a) == Some(("True".into(), "Reconciled".into()))
    })
    .await;
    assert!(server.get_as::<Service>(Some(NS), "hello").is_some());
    assert!(has_event(&server, "hello", "DeploymentDeleted"));

    // Converged without a Deployment: resyncs write nothing either.
    wait_reconciles(&running, 1).await;
    server.clear_requests();
    wait_reconciles(&running, 3).await;
    // A reconcile that starts before the Deployment's deletion reaches the operator's cache may
    // send one more DELETE, which finds nothing (404) and changes nothing; any other write fails.
    let effective: Vec<RequestRecord> = server
        .writes()
        .into_iter()
        .filter(|w| !(w.verb == Verb::Delete && w.status == 404))
        .collect();
    assert!(effective.is_empty(), "{effective:#?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_secret_change_rolls_the_runtime_config_secret() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    for obj in runtime_config_objects() {
        server.put(obj);
    }
    let running = start(&server);
    wait_runtime_config(&server).await;
    let first = runtime_config_secret_of(&deployment(&server, "stateful").unwrap()).unwrap();
    let rc = server.get_as::<Secret>(Some(NS), &first).unwrap();
    assert_eq!(rc.owner_references()[0].name, "stateful");
    assert!(rc.data.unwrap().contains_key("runtime-config.toml"));

    // The referenced Secret changes: new generated Secret, Deployment points to it, old deleted.
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    secrets
        .patch(
            "app-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"redis-url": "redis://other:6379"}})),
        )
        .await
        .unwrap();
    wait("Deployment points to a new runtime-config Secret", || {
        deployment(&server, "stateful")
            .as_ref()
            .and_then(runtime_config_secret_of)
            .is_some_and(|n| n != first)
    })
    .await;
    let second = runtime_config_secret_of(&deployment(&server, "stateful").unwrap()).unwrap();
    wait("old runtime-config Secret deleted", || {
        let names = generated_secrets(&server, "stateful");
        names.contains(&second) && !names.contains(&first)
    })
    .await;

    // A ConfigMap change rolls it as well.
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    cms.patch(
        "app-endpoints",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"llm-url": "https://llm2.example.com"}})),
    )
    .await
    .unwrap();
    wait("ConfigMap change rolls the runtime config", || {
        deployment(&server, "stateful")
            .as_ref()
            .and_then(runtime_config_secret_of)
            .is_some_and(|n| n != first && n != second)
    })
    .await;

    // Secret disappears: Ready=False MissingSecret, the Deployment is left alone.
    let before = runtime_config_secret_of(&deployment(&server, "stateful").unwrap());
    secrets
        .delete("app-credentials", &DeleteParams::default())
        .await
        .unwrap();
    wait("MissingSecret condition", || {
        ready_reason(&spinapp(&server, "stateful"))
            == Some(("False".into(), "MissingSecret".into()))
    })
    .await;
    assert_eq!(
        runtime_config_secret_of(&deployment(&server, "stateful").unwrap()),
        before
    );
    // No secret values leak into events or status.
    let status = serde_json::to_string(&spinapp(&server, "stateful").status).unwrap();
    let evs = serde_json::to_string(&events(&server)).unwrap();
    for secret_value in ["example-password", "redis://other", "example-libsql-token"] {
        assert!(!status.contains(secret_value) && !evs.contains(secret_value));
    }
    running.stop().await;
}

/// Secret and ConfigMap requests of the operator: (verb, name, metadata only, label selector).
fn reads_of(
    server: &TestApiServer,
    resource: &str,
) -> Vec<(Verb, Option<String>, bool, Option<String>)> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.group.is_empty() && r.resource == resource && !r.verb.is_write())
        .map(|r| (r.verb, r.name, r.metadata_only, r.label_selector))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_referenced_secrets_and_config_maps_are_read_whole() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    for obj in runtime_config_objects() {
        server.put(obj);
    }
    for i in 0..20 {
        server.put(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("unrelated-{i}"), "namespace": NS},
            "stringData": {"token": format!("unrelated-value-{i}")}}));
        server.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("unrelated-{i}"), "namespace": NS},
            "data": {"k": "v"}}));
    }
    let running = start(&server);
    wait_runtime_config(&server).await;
    wait_reconciles(&running, 5).await;

    // Whole objects come only from the children's labelled watch and from GETs of what the app
    // references; everything else is metadata.
    let whole_or_named = |resource: &str| -> BTreeSet<String> {
        reads_of(&server, resource)
            .into_iter()
            .filter(|(_, _, metadata_only, _)| !metadata_only)
            .map(|(verb, name, _, selector)| match (verb, name, selector) {
                (Verb::Get, Some(name), _) => format!("get {name}"),
                (verb, None, Some(selector)) => format!("{} {selector}", verb.as_str()),
                (verb, name, selector) => format!("{} {name:?} {selector:?}", verb.as_str()),
            })
            .collect()
    };
    assert_eq!(
        whole_or_named("secrets"),
        BTreeSet::from([
            "get app-credentials".to_string(),
            format!("list {APP_NAME_LABEL}"),
            format!("watch {APP_NAME_LABEL}"),
        ])
    );
    assert_eq!(
        whole_or_named("configmaps"),
        BTreeSet::from(["get app-endpoints".to_string()])
    );
    let metadata_reads = reads_of(&server, "secrets")
        .into_iter()
        .filter(|(verb, _, metadata_only, selector)| {
            *metadata_only && selector.is_none() && matches!(verb, Verb::List | Verb::Watch)
        })
        .count();
    assert!(
        metadata_reads >= 2,
        "a metadata list and watch of all Secrets"
    );
    // The CA Secret's existence is a metadata GET; its bundle is never fetched.
    let ca_gets: Vec<_> = reads_of(&server, "secrets")
        .into_iter()
        .filter(|(verb, name, _, _)| {
            *verb == Verb::Get && name.as_deref() == Some(spin_operator::api::DEFAULT_CA_SECRET)
        })
        .collect();
    assert!(
        ca_gets
            .iter()
            .all(|(_, _, metadata_only, _)| *metadata_only),
        "{ca_gets:?}"
    );

    // Fetched once, then served from the cache until it changes: resyncs GET nothing.
    let gets_of = |resource: &str, name: &str| {
        reads_of(&server, resource)
            .into_iter()
            .filter(|(verb, n, _, _)| *verb == Verb::Get && n.as_deref() == Some(name))
            .count()
    };
    assert_eq!(gets_of("secrets", "app-credentials"), 1);
    assert_eq!(gets_of("configmaps", "app-endpoints"), 1);

    // Unrelated changes fetch nothing; a change of the referenced Secret fetches it once more.
    let secrets: Api<Secret> = Api::namespaced(server.client(), NS);
    for name in ["unrelated-3", "app-credentials"] {
        secrets
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"redis-url": "redis://changed:6379"}})),
            )
            .await
            .unwrap();
    }
    let first = runtime_config_secret_of(&deployment(&server, "stateful").unwrap());
    wait("the change rolls the runtime config", || {
        deployment(&server, "stateful")
            .as_ref()
            .and_then(runtime_config_secret_of)
            != first
    })
    .await;
    wait_reconciles(&running, 5).await;
    assert_eq!(gets_of("secrets", "app-credentials"), 2);
    assert_eq!(gets_of("secrets", "unrelated-3"), 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_writes_nothing_for_a_converged_fleet() {
    // Its caches start from lists, whose items of built-in kinds carry no apiVersion/kind on a
    // real API server (found with kube-apiserver: every child was re-applied after a restart).
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    for obj in runtime_config_objects() {
        server.put(obj);
    }
    server.put(app("hello", "containerd-shim-spin"));
    let first = start(&server);
    wait_runtime_config(&server).await;
    wait("hello converged", || deployment(&server, "hello").is_some()).await;
    wait_reconciles(&first, 6).await;
    first.stop().await;

    server.clear_requests();
    let second = start(&server);
    wait_reconciles(&second, 6).await;
    let writes: Vec<String> = server
        .writes()
        .iter()
        .filter(|w| w.resource != "events")
        .map(|w| format!("{} {}/{:?}", w.verb.as_str(), w.resource, w.name))
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_executor_reports_then_converges_when_created() {
    let server = TestApiServer::start().await;
    server.put(app("hello", "later"));
    let running = start(&server);
    wait("ExecutorNotFound condition and event", || {
        ready_reason(&spinapp(&server, "hello"))
            == Some(("False".into(), "ExecutorNotFound".into()))
            && has_event(&server, "hello", "ExecutorNotFound")
    })
    .await;
    assert!(deployment(&server, "hello").is_none());
    // No error loop: await_change, so nothing is retried while the executor is missing.
    assert_eq!(running.metrics.reconcile_count("spinapp", "api_error"), 0);

    server.put(executor("later", true));
    wait("converged after the executor appears", || {
        deployment(&server, "hello").is_some()
            && spinapp(&server, "hello")
                .status
                .and_then(|s| s.active_scheduler)
                .as_deref()
                == Some("later")
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_deletion_is_blocked_while_used_in_its_namespace() {
    let server = TestApiServer::start().await;
    server.put(executor("shim", true));
    // Same executor name in another namespace: its apps must not block this one.
    let mut other = executor("shim", true);
    other["metadata"]["namespace"] = json!("other");
    server.put(other);
    server.put(app("hello", "shim"));
    let running = start(&server);
    wait("finalizers added", || {
        [NS, "other"].iter().all(|ns| {
            server
                .get_as::<SpinAppExecutor>(Some(ns), "shim")
                .is_some_and(|e| e.finalizers().iter().any(|f| f == EXECUTOR_FINALIZER))
        })
    })
    .await;

    let executors: Api<SpinAppExecutor> = Api::namespaced(server.client(), NS);
    executors
        .delete("shim", &DeleteParams::default())
        .await
        .unwrap();
    wait("DeletionBlocked event", || {
        has_event(&server, "shim", "DeletionBlocked")
    })
    .await;
    let blocked = server.get_as::<SpinAppExecutor>(Some(NS), "shim").unwrap();
    assert!(blocked.metadata.deletion_timestamp.is_some());

    // The executor in the other namespace is unused: deleting it goes through.
    let other_api: Api<SpinAppExecutor> = Api::namespaced(server.client(), "other");
    other_api
        .delete("shim", &DeleteParams::default())
        .await
        .unwrap();
    wait("unused executor deleted", || {
        server
            .get_as::<SpinAppExecutor>(Some("other"), "shim")
            .is_none()
    })
    .await;

    let apps: Api<SpinApp> = Api::namespaced(server.client(), NS);
    apps.delete("hello", &DeleteParams::default())
        .await
        .unwrap();
    wait("executor deleted once unused", || {
        server.get_as::<SpinAppExecutor>(Some(NS), "shim").is_none()
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finalizer_is_added_once_while_the_executor_cache_lags() {
    let server = TestApiServer::start().await;
    server.put(executor("shim", true));
    // The executor watches fall behind (a loaded API server): the finalizer this operator adds
    // is not in its cache while apps keep triggering the executor's reconcile.
    server.faults().hold_watch_events(
        RequestMatcher::any()
            .verb(Verb::Watch)
            .resource("spinappexecutors"),
    );
    let running = start(&server);
    let finalizer_patches = || {
        server.requests_matching(
            &RequestMatcher::writes()
                .resource("spinappexecutors")
                .verb(Verb::Patch),
        )
    };
    wait("finalizer added", || {
        server
            .get_as::<SpinAppExecutor>(Some(NS), "shim")
            .is_some_and(|e| e.finalizers().iter().any(|f| f == EXECUTOR_FINALIZER))
    })
    .await;
    for i in 0..20 {
        server.put(app(&format!("app-{i}"), "shim"));
    }
    wait("the apps converged", || {
        (0..20).all(|i| {
            spinapp(&server, &format!("app-{i}"))
                .status
                .is_some_and(|s| s.deployment_name.is_some())
        })
    })
    .await;
    wait_reconciles(&running, 20).await;
    let patches = finalizer_patches();
    assert_eq!(
        patches.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200],
        "one finalizer patch, no 422 from a stale cache: {patches:#?}"
    );
    // The watch catches up: still nothing more to write.
    server.faults().release_watch_events();
    wait_reconciles(&running, 5).await;
    assert_eq!(finalizer_patches().len(), 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_and_dropped_watches_converge_and_bad_apps_do_not_stall_others() {
    let server = TestApiServer::start().await;
    server.put(executor("shim", true));
    // A broken app (missing referenced Secret) next to good ones.
    let mut broken = app("broken", "shim");
    broken["spec"]["runtimeConfig"] = json!({"loadFromSecret": "does-not-exist"});
    server.put(broken);
    server.faults().fail_next(
        3,
        500,
        RequestMatcher::any()
            .verb(Verb::Patch)
            .resource("deployments"),
    );
    server.faults().fail_next(
        2,
        409,
        RequestMatcher::any().verb(Verb::Patch).resource("services"),
    );
    server.faults().fail_next(
        2,
        500,
        RequestMatcher::any()
            .verb(Verb::Patch)
            .resource("spinapps")
            .subresource("status"),
    );
    server.put(app("one", "shim"));
    let running = start(&server);
    wait("first app converges despite 500s and conflicts", || {
        deployment(&server, "one").is_some()
            && server.get_as::<Service>(Some(NS), "one").is_some()
            && spinapp(&server, "one").status.is_some()
    })
    .await;
    assert!(running.metrics.reconcile_count("spinapp", "api_error") >= 1);

    // Watches drop and history expires (410): the controllers relist and keep going.
    server.faults().drop_watches();
    server.faults().expire_watch_history();
    server.put(app("two", "shim"));
    wait("second app converges after dropped watches", || {
        deployment(&server, "two").is_some()
    })
    .await;
    server.faults().drop_watches();
    let apps: Api<SpinApp> = Api::namespaced(server.client(), NS);
    apps.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    wait("change seen after another watch drop", || {
        deployment(&server, "one").and_then(|d| d.spec.replicas) == Some(5)
    })
    .await;
    wait("broken app reports its reason", || {
        ready_reason(&spinapp(&server, "broken")) == Some(("False".into(), "MissingSecret".into()))
    })
    .await;
    assert!(deployment(&server, "broken").is_none());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_handover_between_two_instances() {
    let server = TestApiServer::start().await;
    server.put(executor("shim", true));
    let config = |id: &str| {
        let mut c = ControllerConfig::new(id, NS);
        c.settings = settings();
        let le = c.leader_election.as_mut().unwrap();
        le.lease_duration = Duration::from_secs(2);
        le.renew_deadline = Duration::from_millis(1500);
        le.renew_interval = Duration::from_millis(200);
        le.retry_interval = Duration::from_millis(100);
        c
    };
    let a = start_with(&server, config("pod-a"));
    wait("pod-a leads", || a.state.is_leader()).await;
    let b = start_with(&server, config("pod-b"));
    // pod-b stays standby while pod-a renews: observe several of pod-a's renewals.
    let lease_updates = || {
        server
            .requests_matching(&RequestMatcher::any().verb(Verb::Update).resource("leases"))
            .len()
    };
    let seen = lease_updates();
    wait("pod-a renews", || lease_updates() >= seen + 3).await;
    assert!(a.state.is_leader() && !b.state.is_leader());
    assert!(b.state.is_ready(), "a standby replica is ready");
    let lease = server
        .get(
            &ResourceKey::new("coordination.k8s.io", "v1", "leases"),
            Some(NS),
            "spin-operator-leader",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-a");

    server.put(app("hello", "shim"));
    wait("leader reconciles", || {
        deployment(&server, "hello").is_some()
    })
    .await;

    // Graceful stop releases the lease; pod-b takes over and reconciles new work.
    a.stop().await;
    wait("pod-b leads", || {
        b.state.is_leader() && b.state.caches_synced()
    })
    .await;
    server.put(app("after", "shim"));
    wait("new leader reconciles", || {
        deployment(&server, "after").is_some()
    })
    .await;

    // A crashed leader (no release) is replaced once its lease expires.
    let c = start_with(&server, config("pod-c"));
    b.task.abort();
    wait("pod-c takes over an expired lease", || c.state.is_leader()).await;
    let lease = server
        .get(
            &ResourceKey::new("coordination.k8s.io", "v1", "leases"),
            Some(NS),
            "spin-operator-leader",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "pod-c");
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);
    c.stop().await;
}

/// Runs scenarios touching every code path that calls the API (with leader election on) and
/// checks the recorded requests against `rbac::PERMISSIONS` in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_permissions_cover_exactly_the_requests_made() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    for obj in runtime_config_objects() {
        server.put(obj);
    }
    let mut config = ControllerConfig::new("pod-a", NS);
    config.settings = settings();
    let running = start_with(&server, config);
    wait("runtime-config app converged", || {
        deployment(&server, "stateful")
            .as_ref()
            .and_then(runtime_config_secret_of)
            .is_some()
    })
    .await;
    // Children upstream left for an app are looked up (get) when their applies are refused.
    put_upstream_app(&server, "upstream");
    wait_adopted(&server, "upstream").await;
    // The test's own changes go through the direct handle, so the request log holds only the
    // operator's calls.
    let first = runtime_config_secret_of(&deployment(&server, "stateful").unwrap()).unwrap();
    let mut creds = server
        .get(&ResourceKey::of::<Secret>(), Some(NS), "app-credentials")
        .unwrap();
    creds["stringData"] = json!({"redis-url": "redis://other:6379"});
    server.put(creds);
    wait("stale runtime config deleted", || {
        !generated_secrets(&server, "stateful").contains(&first)
    })
    .await;
    // Deletion blocked twice (the second identical event is a patch of the event series).
    server
        .delete(
            &ResourceKey::of::<SpinAppExecutor>(),
            Some(NS),
            "containerd-shim-spin",
        )
        .unwrap();
    wait("blocked", || {
        has_event(&server, "containerd-shim-spin", "DeletionBlocked")
    })
    .await;
    let mut touched = server
        .get(&ResourceKey::of::<SpinApp>(), Some(NS), "stateful")
        .unwrap();
    touched["metadata"]["annotations"] = json!({"touch": "1"});
    server.put(touched);
    wait("repeated DeletionBlocked event patched", || {
        server
            .requests_matching(&RequestMatcher::any().verb(Verb::Patch).resource("events"))
            .iter()
            .any(|r| r.status < 300)
    })
    .await;
    // createDeployment=false on another executor: Deployment delete path.
    server.put(executor("ext", true));
    server.put(app("hello", "ext"));
    wait("hello Deployment", || {
        deployment(&server, "hello").is_some()
    })
    .await;
    server.put(executor("ext", false));
    wait("hello Deployment deleted", || {
        deployment(&server, "hello").is_none()
    })
    .await;
    running.stop().await;

    let requests = server.requests();
    assert_requests_covered(&requests);
    let used: BTreeSet<(String, String, Option<String>, String)> = requests
        .iter()
        .flat_map(|r| {
            authorized_verbs(r).into_iter().map(|verb| {
                (
                    r.group.clone(),
                    r.resource.clone(),
                    r.subresource.clone(),
                    verb.to_string(),
                )
            })
        })
        .collect();
    for p in PERMISSIONS
        .iter()
        .filter(|p| !p.checked_by_admission_only())
    {
        for verb in p.verbs {
            let key = (
                p.group.to_string(),
                p.resource.to_string(),
                p.subresource.map(str::to_string),
                verb.to_string(),
            );
            assert!(used.contains(&key), "permission never used: {key:?}");
        }
    }
}

/// Ready's message, if any.
fn ready_message(app: &SpinApp) -> String {
    app.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Events about `regarding` with `reason`.
fn events_with(server: &TestApiServer, regarding: &str, reason: &str) -> Vec<Value> {
    events(server)
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"].as_str() == Some(regarding))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_the_app_does_not_own_are_refused_reported_once_and_left_untouched() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    // Another team's Service, named like the app: a SpinApp must not redirect its selector.
    let foreign = server.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hello", "namespace": NS},
        "spec": {"selector": {"team": "payments"}, "ports": [{"port": 8080}]}
    }));
    // A child of a deleted app of the same name that the garbage collector has not removed yet
    // (in the labelled cache, owned by the old uid).
    let leftover = server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "again", "namespace": NS, "labels": {APP_NAME_LABEL: "again"},
            "ownerReferences": [{"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "name": "again", "uid": "uid-of-the-deleted-app", "controller": true}]},
        "spec": {"selector": {"matchLabels": {"x": "old"}},
            "template": {"metadata": {"labels": {"x": "old"}},
                "spec": {"containers": [{"name": "old", "image": "old:v1"}]}}}
    }));
    server.put(app("hello", "containerd-shim-spin"));
    server.put(app("again", "containerd-shim-spin"));
    let running = start(&server);

    wait("both refusals reported", || {
        ready_reason(&spinapp(&server, "hello")) == Some(("False".into(), "ChildNotOwned".into()))
            && ready_reason(&spinapp(&server, "again"))
                == Some(("False".into(), "ChildNotOwned".into()))
    })
    .await;
    let message = ready_message(&spinapp(&server, "hello"));
    assert!(
        message.contains("Service default/hello") && message.contains("no SpinApp owner"),
        "{message}"
    );
    let message = ready_message(&spinapp(&server, "again"));
    assert!(
        message.contains("Deployment default/again") && message.contains("uid-of-the-deleted-app"),
        "{message}"
    );
    // Retried with backoff (the foreign Service is not watched), reported once.
    wait("several refused reconciles", || {
        running.metrics.reconcile_count("spinapp", "not_owned") >= 6
    })
    .await;
    for name in ["hello", "again"] {
        let found = events_with(&server, name, "ChildNotOwned");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0]["type"], "Warning");
        assert!(found[0]["series"].is_null(), "repeated: {:#?}", found[0]);
    }
    // Nothing was written to either object: the only writes are applies the API server refused
    // on their precondition (the foreign Service is not in the labelled cache: its apply
    // asserted absence; the leftover is: its apply was never sent).
    let writes = |resource: &str, name: &str| {
        server.requests_matching(
            &RequestMatcher::writes()
                .resource(resource)
                .namespace(NS)
                .name(name),
        )
    };
    let refused = writes("services", "hello");
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|r| r.status == 409), "{refused:#?}");
    assert_eq!(writes("deployments", "again"), vec![]);
    assert_eq!(
        server.get(&ResourceKey::of::<Service>(), Some(NS), "hello"),
        Some(foreign)
    );
    assert_eq!(
        server.get(&ResourceKey::of::<Deployment>(), Some(NS), "again"),
        Some(leftover)
    );
    // The app's own Deployment (no conflict there) was created: a refusal stops only at the
    // object in the way.
    assert!(deployment(&server, "hello").is_some());

    // Once the objects in the way are gone (the leftover first: the test server collects
    // garbage on every delete, as the real collector would have by then), the apps converge
    // without any other trigger.
    server
        .delete(&ResourceKey::of::<Deployment>(), Some(NS), "again")
        .unwrap();
    server
        .delete(&ResourceKey::of::<Service>(), Some(NS), "hello")
        .unwrap();
    wait("both converge", || {
        ["hello", "again"].iter().all(|name| {
            ready_reason(&spinapp(&server, name))
                == Some(("False".into(), "DeploymentUnavailable".into()))
        })
    })
    .await;
    let svc = server.get_as::<Service>(Some(NS), "hello").unwrap();
    assert_eq!(
        svc.owner_references()[0].uid,
        spinapp(&server, "hello").uid().unwrap()
    );
    let d = deployment(&server, "again").unwrap();
    assert_eq!(
        d.owner_references()[0].uid,
        spinapp(&server, "again").uid().unwrap()
    );
    assert_requests_covered(&server.requests());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_app_costs_one_apply_per_child_and_one_status_write() {
    let server = TestApiServer::start().await;
    // No CA certificates: their Secret is the executor's, created once per namespace.
    server.put(
        json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": "plain", "namespace": NS},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "x"}}}),
    );
    let running = start(&server);
    server.put(app("hello", "plain"));
    wait("converged", || {
        ready_reason(&spinapp(&server, "hello"))
            == Some(("False".into(), "DeploymentUnavailable".into()))
    })
    .await;
    wait_reconciles(&running, 3).await;
    let mut calls: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| !matches!(r.verb, Verb::List | Verb::Watch | Verb::Other))
        // The executor controller's finalizer.
        .filter(|r| r.resource != "spinappexecutors")
        .map(|r| {
            let sub = r.subresource.as_deref().map(|s| format!("/{s}"));
            format!(
                "{} {}{}",
                r.verb.as_str(),
                r.resource,
                sub.unwrap_or_default()
            )
        })
        .collect();
    calls.sort();
    // No lookup before creating (the applies carry their precondition), and no Event for the
    // first, ordinary Ready condition (`creation_events` is off by default).
    assert_eq!(
        calls,
        [
            "patch deployments",
            "patch secrets",
            "patch services",
            "patch spinapps/status"
        ]
    );
    running.stop().await;

    // Asked for, the creation Event is one more request.
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    server.put(app("hello", "containerd-shim-spin"));
    let mut config = ControllerConfig::new("test-pod", NS);
    config.leader_election = None;
    config.settings = Settings {
        creation_events: true,
        ..settings()
    };
    let running = start_with(&server, config);
    wait("the creation Event", || {
        !events_with(&server, "hello", "DeploymentUnavailable").is_empty()
    })
    .await;
    running.stop().await;
}

/// The SpinApp status writes the operator made so far.
fn status_writes(server: &TestApiServer) -> Vec<RequestRecord> {
    server.requests_matching(
        &RequestMatcher::writes()
            .resource("spinapps")
            .subresource("status"),
    )
}

/// kube-controller-manager's Deployment status writes for a new 2-replica Deployment, in order
/// (k8s.io/kubernetes v1.37 pkg/controller/deployment): the new ReplicaSet's `Progressing`
/// condition (written before the controller records `observedGeneration`), its first full
/// report (pods unavailable), the ReplicaSet's pods created (`Progressing` moves to
/// `ReplicaSetUpdated`, with a new `lastUpdateTime`), then the pods ready.
fn deployment_controller_reports(rs: &str) -> [Value; 4] {
    let available = |status: &str, reason: &str, message: &str| {
        json!({"type": "Available", "status": status, "reason": reason, "message": message,
               "lastUpdateTime": "2026-01-01T00:00:01Z", "lastTransitionTime": "2026-01-01T00:00:01Z"})
    };
    let progressing = |reason: &str, message: String, updated: &str| {
        json!({"type": "Progressing", "status": "True", "reason": reason, "message": message,
               "lastUpdateTime": updated, "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    let unavailable = available(
        "False",
        "MinimumReplicasUnavailable",
        "Deployment does not have minimum availability.",
    );
    [
        json!({"conditions": [progressing("NewReplicaSetCreated",
            format!("Created new replica set \"{rs}\""), "2026-01-01T00:00:00Z")]}),
        json!({"observedGeneration": 1, "unavailableReplicas": 2, "conditions": [
            unavailable.clone(),
            progressing("NewReplicaSetCreated", format!("Created new replica set \"{rs}\""),
                        "2026-01-01T00:00:00Z")]}),
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "unavailableReplicas": 2,
            "conditions": [unavailable,
            progressing("ReplicaSetUpdated", format!("ReplicaSet \"{rs}\" is progressing."),
                        "2026-01-01T00:00:02Z")]}),
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
            "availableReplicas": 2, "conditions": [
            available("True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
            progressing("NewReplicaSetAvailable",
                        format!("ReplicaSet \"{rs}\" has successfully progressed."),
                        "2026-01-01T00:00:09Z")]}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_controller_reports_make_one_status_write_until_pods_are_ready() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    server.put(app("hello", "containerd-shim-spin"));
    let mut config = ControllerConfig::new("test-pod", NS);
    config.leader_election = None;
    // Longer than this test: every write below follows a report, none the end of a wait.
    config.settings = Settings {
        status_hold: Duration::from_secs(120),
        ..settings()
    };
    let running = start_with(&server, config);
    wait("the Deployment", || deployment(&server, "hello").is_some()).await;
    let [created, first_report, pods_created, pods_ready] =
        deployment_controller_reports("hello-5d4");
    let key = ResourceKey::of::<Deployment>();
    // Each report is seen (reconciled) before the next, as on a real control plane.
    for report in [created, first_report] {
        wait_reconciles(&running, 2).await;
        server.set_status(&key, Some(NS), "hello", report);
    }
    wait("Available mirrored", || {
        condition(&spinapp(&server, "hello"), "Available")
            == Some(("False".into(), "MinimumReplicasUnavailable".into()))
    })
    .await;
    wait_reconciles(&running, 2).await;
    server.set_status(&key, Some(NS), "hello", pods_created);
    wait_reconciles(&running, 3).await;

    let a = spinapp(&server, "hello");
    assert_eq!(
        ready_reason(&a),
        Some(("False".into(), "DeploymentUnavailable".into()))
    );
    let status = a.status.clone().unwrap();
    assert_eq!(
        (
            status.ready_replicas,
            status.deployment_name.as_deref(),
            status.service_name.as_deref()
        ),
        (0, Some("hello"), Some("hello"))
    );
    assert_eq!(
        condition(&a, "Progressing").map(|c| c.0),
        Some("True".into())
    );
    let writes = status_writes(&server);
    assert_eq!(
        writes.len(),
        1,
        "one status write while the Deployment controller reports: {writes:#?}"
    );
    let unready_since = ready_transition(&a);

    // Pods ready: Ready turns True, which is one more write with everything current.
    server.set_status(&key, Some(NS), "hello", pods_ready);
    wait("Ready", || {
        ready_reason(&spinapp(&server, "hello")) == Some(("True".into(), "Reconciled".into()))
    })
    .await;
    wait_reconciles(&running, 3).await;
    let a = spinapp(&server, "hello");
    assert_eq!(a.status.as_ref().unwrap().ready_replicas, 2);
    assert_eq!(
        condition(&a, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    assert!(ready_transition(&a) >= unready_since);
    assert_eq!(
        status_writes(&server).len(),
        2,
        "{:#?}",
        status_writes(&server)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deployment_controller_the_status_waits_one_hold_only() {
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    server.put(app("hello", "containerd-shim-spin"));
    let running = start(&server);
    // Nothing reports on the Deployment: the status is written once the hold (200 ms) is over.
    wait("status written", || {
        ready_reason(&spinapp(&server, "hello"))
            == Some(("False".into(), "DeploymentUnavailable".into()))
    })
    .await;
    wait_reconciles(&running, 3).await;
    assert_eq!(status_writes(&server).len(), 1);
    running.stop().await;
}

fn ready_transition(app: &SpinApp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    app.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.last_transition_time.clone())
        .expect("a Ready condition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_another_manager_made_for_the_same_app_uid_are_adopted() {
    // What upstream leaves behind when switching operators: children owned by the same SpinApp
    // object, written by another field manager, not carrying our labels yet.
    let server = TestApiServer::start().await;
    server.put(executor("containerd-shim-spin", true));
    put_upstream_app(&server, "hello");
    let running = start(&server);
    wait_adopted(&server, "hello").await;
    assert_eq!(running.metrics.reconcile_count("spinapp", "not_owned"), 0);
    // Each was looked up once, after the apply that assumed it absent was refused.
    for resource in ["deployments", "services"] {
        let calls = || {
            server
                .requests_matching(&RequestMatcher::any().resource(resource).name("hello"))
                .iter()
                .map(|r| (r.verb, r.status))
                .collect::<Vec<(Verb, u16)>>()
        };
        // The log entry of a request follows its effect.
        wait("three requests logged", || calls().len() >= 3).await;
        let by_verb = calls();
        assert_eq!(
            by_verb[..3],
            [(Verb::Patch, 409), (Verb::Get, 200), (Verb::Patch, 200)],
            "{resource}: {by_verb:?}"
        );
    }
    running.stop().await;
}

/// App `name` with the Deployment and Service upstream left for it: owned by the same SpinApp
/// object, written by another field manager, without our labels (so in no cache of ours).
fn put_upstream_app(server: &TestApiServer, name: &str) {
    let created = server.put(app(name, "containerd-shim-spin"));
    let owner = json!([{"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "name": name, "uid": created["metadata"]["uid"], "controller": true}]);
    server.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "ownerReferences": owner},
        "spec": {"selector": {"upstream": "selector"}, "ports": [{"port": 80}]}
    }));
    server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "ownerReferences": owner},
        "spec": {"selector": {"matchLabels": {"upstream": "selector"}},
            "template": {"metadata": {"labels": {"upstream": "selector"}},
                "spec": {"containers": [{"name": name, "image": "old:v1"}]}}}
    }));
}

/// Waits until both of [`put_upstream_app`]'s children carry our labels.
async fn wait_adopted(server: &TestApiServer, name: &str) {
    let label = app_status_label(name);
    wait(
        "the Service and the Deployment are adopted and updated",
        || {
            server
                .get_as::<Service>(Some(NS), name)
                .and_then(|s| s.spec?.selector)
                .is_some_and(|s| s.contains_key(&label))
                && deployment(server, name).is_some_and(|d| {
                    d.labels().get(APP_NAME_LABEL).map(String::as_str) == Some(name)
                })
        },
    )
    .await;
}
