//! The other served kinds as the operator uses them: Events (via kube's Recorder), Leases,
//! cluster-scoped webhook configurations, discovery.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use serde_json::json;
use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer, Verb};

#[tokio::test]
async fn recorder_events_are_stored_and_deduplicated() {
    let server = TestApiServer::start().await;
    let recorder = Recorder::new(
        server.client(),
        Reporter {
            controller: "spin-operator".into(),
            instance: None,
        },
    );
    let reference = ObjectReference {
        api_version: Some("core.spinkube.dev/v1alpha1".into()),
        kind: Some("SpinApp".into()),
        name: Some("app".into()),
        namespace: Some("default".into()),
        uid: Some("u1".into()),
        ..Default::default()
    };
    let ev = KubeEvent {
        type_: EventType::Warning,
        reason: "ExecutorNotFound".into(),
        note: Some("executor missing".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.list(&ResourceKey::of::<Event>(), Some("default"));
    assert_eq!(events.len(), 1, "the second publish patches the series");
    assert_eq!(events[0]["reason"], "ExecutorNotFound");
    assert_eq!(events[0]["regarding"]["name"], "app");
    let writes: Vec<Verb> = server.writes().iter().map(|r| r.verb).collect();
    assert_eq!(writes, [Verb::Create, Verb::Patch]);
}

#[tokio::test]
async fn lease_optimistic_locking() {
    let server = TestApiServer::start().await;
    let api: Api<Lease> = Api::default_namespaced(server.client());
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "spin-operator"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    let first = api.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = first.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    api.replace("spin-operator", &PostParams::default(), &mine)
        .await
        .unwrap();
    // A second contender with the old resourceVersion loses.
    let mut theirs = first;
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = api
        .replace("spin-operator", &PostParams::default(), &theirs)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
    let held = api.get("spin-operator").await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("b"));
}

#[tokio::test]
async fn cluster_scoped_webhook_configuration() {
    let server = TestApiServer::start().await;
    let api: Api<MutatingWebhookConfiguration> = Api::all(server.client());
    let cfg: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "spin-operator"},
        "webhooks": [{"name": "mspinapp.kb.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"name": "svc", "namespace": "spin"}}}]
    }))
    .unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
    let patched = api
        .patch(
            "spin-operator",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "Q0E="}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .as_ref()
            .unwrap()
            .0,
        b"CA"
    );
    assert_eq!(patched.metadata.generation, Some(2));
    let stored = server
        .get(
            &ResourceKey::of::<MutatingWebhookConfiguration>(),
            None,
            "spin-operator",
        )
        .unwrap();
    assert!(stored["metadata"].get("namespace").is_none());
    let r = server
        .requests_matching(&RequestMatcher::any().verb(Verb::Patch))
        .remove(0);
    assert_eq!(
        (r.group.as_str(), r.namespace),
        ("admissionregistration.k8s.io", None)
    );
}

#[tokio::test]
async fn discovery_lists_served_resources() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let resources = client
        .list_api_group_resources("core.spinkube.dev/v1alpha1")
        .await
        .unwrap();
    let names: Vec<_> = resources
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "spinapps",
            "spinapps/status",
            "spinappexecutors",
            "spinappexecutors/status"
        ]
    );
}
