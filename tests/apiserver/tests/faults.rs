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

#[tokio::test]
async fn random_failures_fail_some_requests_without_effect() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.faults().fail_randomly(
        RequestMatcher::any()
            .verb(Verb::Create)
            .resource("configmaps"),
        0.3,
        500,
        11,
    );
    let mut created = 0;
    for i in 0..200 {
        match api
            .create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
        {
            Ok(_) => created += 1,
            Err(kube::Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (500, "InternalError"))
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let failed = 200 - created;
    assert!((30..90).contains(&failed), "{failed} of 200 failed");
    // A failed create stored nothing; every success is stored.
    let stored = server
        .list(&spin_test_apiserver::ResourceKey::of::<ConfigMap>(), None)
        .len();
    assert_eq!(stored, created);
    let log = server.requests();
    assert_eq!(log.iter().filter(|r| r.injected).count(), failed);
    assert!(log.iter().all(|r| r.injected == (r.status == 500)));
    // Requests the matcher does not select never fail; clear ends the rule.
    server
        .faults()
        .fail_randomly(RequestMatcher::writes(), 1.0, 500, 1);
    api.list(&Default::default()).await.unwrap();
    assert!(api.create(&PostParams::default(), &cm("x")).await.is_err());
    server.faults().clear();
    api.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
}

#[tokio::test]
async fn random_conflicts_hit_patches_but_never_creates() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    server
        .faults()
        .fail_randomly(RequestMatcher::writes(), 1.0, 409, 5);
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let err = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"));
    let stored = server
        .get(
            &spin_test_apiserver::ResourceKey::of::<ConfigMap>(),
            None,
            "a",
        )
        .unwrap();
    assert!(
        stored.get("data").is_none(),
        "a failed patch has no effect: {stored}"
    );
}

#[tokio::test]
async fn random_delays_are_recorded_and_bounded() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let max = Duration::from_millis(20);
    server
        .faults()
        .delay_randomly(RequestMatcher::any().verb(Verb::Get), max, 3);
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    for _ in 0..20 {
        api.get("a").await.unwrap();
    }
    let gets = server.requests_matching(&RequestMatcher::any().verb(Verb::Get));
    assert_eq!(gets.len(), 20);
    assert!(gets.iter().all(|r| r.delay <= max));
    // 20 uniform draws in [0, 20ms]: at least one is not tiny.
    assert!(gets.iter().any(|r| r.delay > Duration::from_millis(1)));
    let create = &server.requests_matching(&RequestMatcher::writes())[0];
    assert_eq!(create.delay, Duration::ZERO);
}

#[tokio::test]
async fn named_clients_are_told_apart_and_sequence_numbers_order_effects() {
    let server = TestApiServer::start().await;
    let a: Api<ConfigMap> = Api::default_namespaced(server.client_named("pod-a"));
    let b: Api<ConfigMap> = Api::default_namespaced(server.client_named("pod-b"));
    let anonymous: Api<ConfigMap> = Api::default_namespaced(server.client());
    a.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mark = server.mark();
    b.create(&PostParams::default(), &cm("b")).await.unwrap();
    anonymous.get("a").await.unwrap();

    let log = server.requests();
    let clients: Vec<Option<&str>> = log.iter().map(|r| r.client.as_deref()).collect();
    assert_eq!(clients, [Some("pod-a"), Some("pod-b"), None]);
    assert!(log[0].arrival_seq < log[0].completion_seq);
    assert!(log[0].completion_seq < mark && mark < log[1].arrival_seq);
    assert!(log[1].completion_seq < log[2].arrival_seq);
    let by_b = server.requests_matching(&RequestMatcher::writes().client("pod-b"));
    assert_eq!(by_b.len(), 1);
    assert_eq!(by_b[0].verb, Verb::Create);

    // Requests held by a delay overlap: arrival and completion bracket the effect.
    server.faults().delay(
        RequestMatcher::any().client("pod-a"),
        Duration::from_millis(100),
    );
    let slow = tokio::spawn(async move { a.get("b").await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.get("a").await.unwrap();
    slow.await.unwrap().unwrap();
    let log = server.requests();
    let (slow_a, fast_b) = (&log[log.len() - 1], &log[log.len() - 2]);
    assert_eq!(slow_a.client.as_deref(), Some("pod-a"));
    assert!(
        slow_a.arrival_seq < fast_b.arrival_seq && fast_b.completion_seq < slow_a.completion_seq
    );
}

/// A reflector over ConfigMaps in `namespace`; its store's names.
fn reflect_names(server: &TestApiServer, namespace: &str) -> impl Fn() -> Vec<String> + use<> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let api: Api<ConfigMap> = Api::namespaced(server.client(), namespace);
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    move || {
        let mut names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        names.sort();
        names
    }
}

#[tokio::test]
async fn held_watch_events_wait_for_release_while_reads_see_the_write() {
    let server = TestApiServer::start().await;
    let wait = Duration::from_secs(10);
    let held = reflect_names(&server, "held");
    let free = reflect_names(&server, "free");
    let watching = || {
        server
            .requests_matching(&RequestMatcher::any().verb(Verb::Watch))
            .len()
            == 2
    };
    assert!(spin_test_apiserver::wait_for(watching, wait).await);
    server.faults().hold_watch_events(
        RequestMatcher::any()
            .verb(Verb::Watch)
            .resource("configmaps")
            .namespace("held"),
    );
    let in_held: Api<ConfigMap> = Api::namespaced(server.client(), "held");
    in_held
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(server.client(), "free")
        .create(&PostParams::default(), &cm("b"))
        .await
        .unwrap();
    // The write took effect: a GET sees it at once.
    in_held.get("a").await.unwrap();
    // The free watch got its event, sent after the held one: the held one is still waiting.
    assert!(spin_test_apiserver::wait_for(|| free() == ["b"], wait).await);
    assert!(held().is_empty(), "{:?}", held());

    server.faults().release_watch_events();
    assert!(spin_test_apiserver::wait_for(|| held() == ["a"], wait).await);
    // One watch each: the held stream stayed open and delivered, nothing was re-listed.
    assert_eq!(
        server
            .requests_matching(&RequestMatcher::any().verb(Verb::Watch))
            .len(),
        2
    );
}
