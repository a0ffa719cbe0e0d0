//! Fault injection and the request log.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use spin_test_apiserver::{RequestMatcher, TestApiServer, Verb};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
    )
    .unwrap()
}

#[tokio::test]
async fn fail_next_n_matching_requests() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.faults().fail_next(
        2,
        500,
        RequestMatcher::any()
            .verb(Verb::Create)
            .resource("configmaps"),
    );
    server
        .faults()
        .fail_next(1, 429, RequestMatcher::any().verb(Verb::Get).name("a"));

    for _ in 0..2 {
        let err = api
            .create(&PostParams::default(), &cm("a"))
            .await
            .unwrap_err();
        assert!(matches!(err, kube::Error::Api(s) if s.code == 500 && s.reason == "InternalError"));
    }
    assert!(
        server
            .list(&spin_test_apiserver::ResourceKey::of::<ConfigMap>(), None)
            .is_empty()
    );
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    // kube's client retries 429/503/504 by itself (honouring Retry-After): the caller sees success.
    api.get("a").await.unwrap();

    let statuses: Vec<(Verb, u16)> = server
        .requests()
        .iter()
        .map(|r| (r.verb, r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (Verb::Create, 500),
            (Verb::Create, 500),
            (Verb::Create, 201),
            (Verb::Get, 429),
            (Verb::Get, 200)
        ]
    );
    assert_eq!(server.count_writes(), 3);
}

#[tokio::test]
async fn injected_conflict_on_patch() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    server.faults().fail_next(1, 409, RequestMatcher::writes());
    let patch = Patch::Merge(json!({"data": {"x": "1"}}));
    assert!(
        api.patch("a", &PatchParams::default(), &patch)
            .await
            .is_err()
    );
    assert!(
        api.patch("a", &PatchParams::default(), &patch)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn delays_hold_matching_requests() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.faults().delay(
        RequestMatcher::any().verb(Verb::List),
        Duration::from_secs(30),
    );
    let slow = tokio::spawn({
        let api = api.clone();
        async move { api.list(&Default::default()).await }
    });
    // Other verbs are not held.
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!slow.is_finished());
    assert!(
        server
            .requests_matching(&RequestMatcher::any().verb(Verb::List))
            .is_empty()
    );
    slow.abort();
    server.faults().clear();
    assert_eq!(api.list(&Default::default()).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn request_log_records_shape_of_requests() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    api.patch(
        "a",
        &PatchParams::apply("mgr"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})),
    )
    .await
    .unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        (
            r.method.as_str(),
            r.verb,
            r.group.as_str(),
            r.version.as_str(),
            r.resource.as_str()
        ),
        ("PATCH", Verb::Patch, "", "v1", "configmaps")
    );
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref()),
        (Some("ns"), Some("a"))
    );
    assert_eq!(
        r.patch_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(r.field_manager.as_deref(), Some("mgr"));
    server.clear_requests();
    assert_eq!(server.count_writes(), 0);
}
