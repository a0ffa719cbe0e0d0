//! The operator's event recorder against the in-memory API server: what it creates, when it
//! patches a series instead, and what it does when the Event to patch is gone.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::runtime::events::{Event as KubeEvent, EventType, Reporter};
use serde_json::Value;
use spin_operator::controller::events::Recorder;
use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer, Verb};

const NS: &str = "apps";

fn recorder(server: &TestApiServer) -> Recorder {
    Recorder::new(
        server.client(),
        Reporter {
            controller: "spin-operator".into(),
            instance: Some("spin-operator-7d9f-abcde".into()),
        },
    )
}

fn app(resource_version: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("core.spinkube.dev/v1alpha1".into()),
        kind: Some("SpinApp".into()),
        name: Some("web".into()),
        namespace: Some(NS.into()),
        uid: Some("6f1c7a52-0d7e-4d8e-9a51-5f8d7c1d0a01".into()),
        resource_version: Some(resource_version.into()),
        field_path: None,
    }
}

fn blocked() -> KubeEvent {
    KubeEvent {
        type_: EventType::Warning,
        reason: "DeploymentUnavailable".into(),
        note: Some("0 of 2 replicas available".into()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

fn events(server: &TestApiServer) -> Vec<Value> {
    server.list(&ResourceKey::of::<Event>(), Some(NS))
}

fn writes(server: &TestApiServer) -> Vec<Verb> {
    server.writes().iter().map(|r| r.verb).collect()
}

/// The next `verb` request on Events fails with a 500.
fn fail_next_event_write(server: &TestApiServer, verb: Verb) {
    server
        .faults()
        .fail_next(1, 500, RequestMatcher::any().verb(verb).resource("events"));
}

#[tokio::test]
async fn creates_the_event_kube_would_and_counts_repeats_in_its_series() {
    let server = TestApiServer::start().await;
    let recorder = recorder(&server);
    for _ in 0..3 {
        recorder.publish(&blocked(), &app("41")).await.unwrap();
    }
    let stored = events(&server);
    assert_eq!(stored.len(), 1, "repeats patch the first Event: {stored:?}");
    let e = &stored[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "DeploymentUnavailable");
    assert_eq!(e["action"], "Reconcile");
    assert_eq!(e["note"], "0 of 2 replicas available");
    assert_eq!(e["reportingController"], "spin-operator");
    assert_eq!(e["reportingInstance"], "spin-operator-7d9f-abcde");
    assert_eq!(e["regarding"]["name"], "web");
    assert_eq!(e["regarding"]["resourceVersion"], "41");
    assert!(e["eventTime"].is_string(), "{e}");
    let name = e["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("web."), "named after the object: {name}");
    assert_eq!(e["series"]["count"], 3, "{e}");
    assert!(e["series"]["lastObservedTime"].is_string(), "{e}");
    assert_eq!(writes(&server), [Verb::Create, Verb::Patch, Verb::Patch]);
}

#[tokio::test]
async fn a_new_resource_version_or_reason_is_a_new_event() {
    let server = TestApiServer::start().await;
    let recorder = recorder(&server);
    recorder.publish(&blocked(), &app("41")).await.unwrap();
    recorder.publish(&blocked(), &app("42")).await.unwrap();
    let mut ready = blocked();
    ready.type_ = EventType::Normal;
    ready.reason = "DeploymentReady".into();
    recorder.publish(&ready, &app("42")).await.unwrap();
    assert_eq!(events(&server).len(), 3);
    assert_eq!(writes(&server), [Verb::Create, Verb::Create, Verb::Create]);
    assert!(events(&server).iter().all(|e| e["series"].is_null()));
}

#[tokio::test]
async fn a_repeat_whose_event_was_deleted_starts_a_new_one() {
    let server = TestApiServer::start().await;
    let recorder = recorder(&server);
    recorder.publish(&blocked(), &app("41")).await.unwrap();
    let first = events(&server)[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    server
        .delete(&ResourceKey::of::<Event>(), Some(NS), &first)
        .unwrap();
    recorder.publish(&blocked(), &app("41")).await.unwrap();
    let stored = events(&server);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_ne!(stored[0]["metadata"]["name"], first.as_str());
    assert!(
        stored[0]["series"].is_null(),
        "a fresh Event: {}",
        stored[0]
    );
    // The next repeat counts on the new Event.
    recorder.publish(&blocked(), &app("41")).await.unwrap();
    assert_eq!(events(&server)[0]["series"]["count"], 2);
}

#[tokio::test]
async fn a_failed_write_is_an_error_and_not_counted() {
    let server = TestApiServer::start().await;
    let recorder = recorder(&server);
    fail_next_event_write(&server, Verb::Create);
    let failed = recorder.publish(&blocked(), &app("41")).await;
    assert!(failed.is_err(), "the 500 is returned");
    assert!(events(&server).is_empty());
    // Not remembered: the next publish creates the Event rather than patching a missing one.
    recorder.publish(&blocked(), &app("41")).await.unwrap();
    fail_next_event_write(&server, Verb::Patch);
    assert!(recorder.publish(&blocked(), &app("41")).await.is_err());
    // The failed repeat is not counted either: the next one is the second observation.
    recorder.publish(&blocked(), &app("41")).await.unwrap();
    assert_eq!(events(&server)[0]["series"]["count"], 2);
}

#[tokio::test]
async fn an_object_without_a_namespace_gets_its_event_in_default() {
    let server = TestApiServer::start().await;
    let recorder = recorder(&server);
    let mut cluster_scoped = app("41");
    cluster_scoped.namespace = None;
    recorder.publish(&blocked(), &cluster_scoped).await.unwrap();
    let stored = server.list(&ResourceKey::of::<Event>(), Some("default"));
    assert_eq!(stored.len(), 1, "as kube's Recorder: {stored:?}");
}
