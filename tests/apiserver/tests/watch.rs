//! Watches: raw watch semantics and the real kube::runtime watcher/reflector against the server.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, PartialObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use spin_test_apiserver::{RequestMatcher, TestApiServer, Verb, wait_for};

const WAIT: Duration = Duration::from_secs(10);

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "x"}}, "data": {"k": "v"}}))
    .unwrap()
}

fn put_cm(server: &TestApiServer, name: &str) {
    server.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}}));
}

/// Runs a reflector over ConfigMaps in `default` and returns its store.
fn reflect(api: Api<ConfigMap>, config: watcher::Config) -> reflector::Store<ConfigMap> {
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, config))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move {
        stream.for_each(|_| async {}).await;
    });
    reader
}

fn names(store: &reflector::Store<ConfigMap>) -> Vec<String> {
    let mut n: Vec<String> = store
        .state()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn raw_watch_streams_changes_from_a_resource_version() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();

    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while let Some(ev) = stream.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(c) => seen.push(format!("ADDED {}", c.metadata.name.unwrap())),
            WatchEvent::Modified(c) => seen.push(format!("MODIFIED {}", c.data.unwrap()["k"])),
            WatchEvent::Deleted(c) => seen.push(format!("DELETED {}", c.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("unexpected error {e:?}"),
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, ["MODIFIED w", "DELETED a"]);
}

#[tokio::test]
async fn watch_from_expired_version_gets_410() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    put_cm(&server, "b");
    server.faults().expire_watch_history();

    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn history_window_limits_resumable_versions() {
    let server = TestApiServer::start().await;
    server.faults().set_history_limit(2);
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let rv = api
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for n in ["b", "c", "d"] {
        put_cm(&server, n);
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Error(e)) if e.code == 410)
    );
    // The newest two changes (c, d) are still resumable.
    let recent = (server.resource_version() - 2).to_string();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &recent)
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Added(c)) if c.metadata.name.as_deref() == Some("c"))
    );
    assert!(
        matches!(stream.try_next().await.unwrap(), Some(WatchEvent::Added(c)) if c.metadata.name.as_deref() == Some("d"))
    );
}

#[tokio::test]
async fn bookmarks_carry_the_current_version() {
    let server = TestApiServer::start().await;
    server.set_bookmark_interval(Duration::from_millis(20));
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    put_cm(&server, "a");
    let rv = server.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn label_selected_watch_sees_objects_entering_and_leaving() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv = server.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().labels("app=y").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Added(_)) => kinds.push("ADDED"),
            Some(WatchEvent::Deleted(_)) => kinds.push("DELETED"),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
    let watch = server
        .requests_matching(&RequestMatcher::any().verb(Verb::Watch))
        .remove(0);
    assert_eq!(watch.label_selector.as_deref(), Some("app=y"));
}

#[tokio::test]
async fn reflector_follows_adds_updates_and_deletes() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let store = reflect(api.clone(), watcher::Config::default());
    assert!(wait_for(|| names(&store) == ["a"], WAIT).await);

    api.create(&PostParams::default(), &cm("b")).await.unwrap();
    assert!(wait_for(|| names(&store) == ["a", "b"], WAIT).await);

    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "new"}})),
    )
    .await
    .unwrap();
    let b_is_new = || {
        store.state().iter().any(|c| {
            c.metadata.name.as_deref() == Some("b")
                && c.data.as_ref().is_some_and(|d| d["k"] == "new")
        })
    };
    assert!(wait_for(b_is_new, WAIT).await);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(wait_for(|| names(&store) == ["b"], WAIT).await);
}

#[tokio::test]
async fn watcher_recovers_from_dropped_watches() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let store = reflect(api, watcher::Config::default());
    assert!(
        wait_for(
            || store.is_empty() && server.requests().iter().any(|r| r.verb == Verb::Watch),
            WAIT
        )
        .await
    );

    for round in 0..3 {
        server.faults().drop_watches();
        put_cm(&server, &format!("c{round}"));
        assert!(
            wait_for(|| store.len() == round + 1, WAIT).await,
            "round {round}"
        );
    }
    let watches = server
        .requests_matching(&RequestMatcher::any().verb(Verb::Watch))
        .len();
    assert!(
        watches >= 2,
        "watcher re-watched after drops ({watches} watches)"
    );
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let server = TestApiServer::start().await;
    server.set_bookmark_interval(Duration::from_secs(3600));
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    put_cm(&server, "a");
    let store = reflect(api, watcher::Config::default());
    assert!(
        wait_for(
            || names(&store) == ["a"]
                && !server
                    .requests_matching(&RequestMatcher::any().verb(Verb::Watch))
                    .is_empty(),
            WAIT
        )
        .await
    );

    // Hold re-watches back while changes happen and history is lost.
    server.faults().delay(
        RequestMatcher::any().verb(Verb::Watch),
        Duration::from_millis(300),
    );
    server.faults().drop_watches();
    put_cm(&server, "b");
    server
        .delete(
            &spin_test_apiserver::ResourceKey::of::<ConfigMap>(),
            None,
            "a",
        )
        .unwrap();
    server.faults().expire_watch_history();

    assert!(
        wait_for(|| names(&store) == ["b"], WAIT).await,
        "store: {:?}",
        names(&store)
    );
    let lists = server
        .requests_matching(&RequestMatcher::any().verb(Verb::List))
        .len();
    assert!(lists >= 2, "watcher relisted after 410 ({lists} lists)");
}

#[tokio::test]
async fn streaming_list_watcher_works() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    put_cm(&server, "a");
    put_cm(&server, "b");
    let store = reflect(api.clone(), watcher::Config::default().streaming_lists());
    assert!(wait_for(|| names(&store) == ["a", "b"], WAIT).await);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(wait_for(|| names(&store) == ["b"], WAIT).await);
    assert!(
        server
            .requests_matching(&RequestMatcher::any().verb(Verb::List))
            .is_empty()
    );
}

#[tokio::test]
async fn metadata_watcher_works() {
    let server = TestApiServer::start().await;
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(server.client());
    put_cm(&server, "a");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    tokio::spawn(async move { stream.for_each(|_| async {}).await });
    assert!(
        wait_for(
            || reader
                .state()
                .iter()
                .any(|m| m.metadata.name.as_deref() == Some("a")),
            WAIT
        )
        .await
    );
    // The log tells metadata-only lists and watches from full ones.
    let log = server.requests();
    assert!(!log.is_empty());
    assert!(log.iter().all(|r| r.metadata_only), "{log:?}");
    let _ = Api::<ConfigMap>::default_namespaced(server.client())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(!server.requests().last().unwrap().metadata_only);
}
