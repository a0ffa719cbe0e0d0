//! `run --watch-namespaces`: the controllers and the webhooks' caches watch only the listed
//! namespaces, one watch per namespace and kind, against the in-memory API server.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use serde_json::{Value, json};
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::api::{EXECUTOR_FINALIZER, SpinApp, SpinAppExecutor};
use spin_operator::controller::{ControllerConfig, Settings};
use spin_operator::inventory::{Lookup, Presence};
use spin_operator::namespaces::WatchNamespaces;
use spin_test_apiserver::{RequestRecord, TestApiServer, Verb};

#[path = "support/operator.rs"]
mod operator;

const WAIT: Duration = Duration::from_secs(30);

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    assert!(
        spin_test_apiserver::wait_for(&mut cond, WAIT).await,
        "timed out waiting for: {what}"
    );
}

fn executor(ns: &str) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": { "name": "shim", "namespace": ns },
        "spec": {
            "createDeployment": true,
            "deploymentConfig": { "runtimeClassName": "wasmtime-spin-v2" }
        }
    })
}

fn app(ns: &str) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": { "name": "hello", "namespace": ns },
        "spec": { "image": "ghcr.io/example/hello:v1", "executor": "shim", "replicas": 1 }
    })
}

fn secret(ns: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "db", "namespace": ns },
        "data": { "password": "aHVudGVy" }
    })
}

fn watched() -> WatchNamespaces {
    WatchNamespaces::only(["a", "b"]).unwrap()
}

/// Every list and watch is namespaced to a watched namespace, and nothing touches `c`.
fn assert_only_watched_namespaces(requests: &[RequestRecord]) {
    let reads: Vec<&RequestRecord> = requests
        .iter()
        .filter(|r| matches!(r.verb, Verb::List | Verb::Watch))
        .collect();
    assert!(!reads.is_empty());
    for r in &reads {
        assert!(
            matches!(r.namespace.as_deref(), Some("a" | "b")),
            "cluster-wide or unwatched {:?} of {}/{} in {:?}",
            r.verb,
            r.group,
            r.resource,
            r.namespace
        );
    }
    for ns in ["a", "b"] {
        assert!(reads.iter().any(|r| r.namespace.as_deref() == Some(ns)));
    }
    assert!(
        requests.iter().all(|r| r.namespace.as_deref() != Some("c")),
        "a request in the unwatched namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_reconcile_only_the_watched_namespaces() {
    let server = TestApiServer::start().await;
    for ns in ["a", "b", "c"] {
        server.put(executor(ns));
        server.put(app(ns));
    }
    let mut config = ControllerConfig::new("test-pod", "a");
    config.leader_election = None;
    config.namespaces = watched();
    config.settings = Settings {
        resync: Duration::from_millis(300),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        concurrency: 4,
        // No Deployment controller in memory: nothing to wait for.
        status_hold: Duration::ZERO,
        ..Settings::default()
    };
    let running = operator::start(server.client(), config);

    wait("children in a and b", || {
        ["a", "b"].iter().all(|ns| {
            server.get_as::<Deployment>(Some(ns), "hello").is_some()
                && server.get_as::<Service>(Some(ns), "hello").is_some()
        })
    })
    .await;
    // Several resyncs of a and b later, c has still been left alone.
    let target = running.successes() + 6;
    wait("resyncs", || running.successes() >= target).await;
    assert!(server.get_as::<Deployment>(Some("c"), "hello").is_none());
    assert!(server.get_as::<Service>(Some("c"), "hello").is_none());
    assert!(server.get_as::<Secret>(Some("c"), "spin-ca").is_none());
    let unwatched = server.get_as::<SpinApp>(Some("c"), "hello").unwrap();
    assert!(unwatched.status.is_none(), "{:?}", unwatched.status);
    let finalizers = |ns: &str| {
        server
            .get_as::<SpinAppExecutor>(Some(ns), "shim")
            .unwrap()
            .metadata
            .finalizers
            .unwrap_or_default()
    };
    assert!(finalizers("a").iter().any(|f| f == EXECUTOR_FINALIZER));
    assert!(finalizers("c").is_empty());

    // A change in one namespace after the initial lists still reaches the controller.
    server.put(app("b").tap_name("second"));
    wait("second app in b", || {
        server.get_as::<Deployment>(Some("b"), "second").is_some()
    })
    .await;

    running.stop().await;
    assert_only_watched_namespaces(&server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_caches_hold_only_the_watched_namespaces() {
    let server = TestApiServer::start().await;
    for ns in ["a", "b", "c"] {
        server.put(executor(ns));
        server.put(app(ns));
        server.put(secret(ns));
    }
    let (lookup, writers) = cache::stores(CacheConfig {
        namespaces: watched(),
        ..CacheConfig::default()
    });
    let watches = tokio::spawn(writers.run(server.client()));
    tokio::time::timeout(WAIT, lookup.wait_until_ready())
        .await
        .expect("caches sync")
        .unwrap();

    for ns in ["a", "b"] {
        assert_eq!(lookup.executor_names(ns), ["shim"]);
        assert_eq!(lookup.apps_using_executor(ns, "shim"), ["hello"]);
        assert_eq!(lookup.secret(ns, "db"), Presence::Present);
    }
    assert!(lookup.executor_names("c").is_empty());
    assert!(lookup.apps_using_executor("c", "shim").is_empty());
    assert_eq!(lookup.secret("c", "db"), Presence::Absent);

    // Later changes in each watched namespace arrive through that namespace's watch.
    server.put(secret("b").tap_name("later"));
    wait("later Secret in b", || {
        lookup.secret("b", "later") == Presence::Present
    })
    .await;

    watches.abort();
    assert_only_watched_namespaces(&server.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_lost_history_drops_deletes_and_keeps_the_other_namespace() {
    let server = TestApiServer::start().await;
    server.set_bookmark_interval(Duration::from_secs(3600));
    for ns in ["a", "b"] {
        server.put(executor(ns));
        server.put(secret(ns));
    }
    let (lookup, writers) = cache::stores(CacheConfig {
        namespaces: watched(),
        ..CacheConfig::default()
    });
    let watches = tokio::spawn(writers.run(server.client()));
    tokio::time::timeout(WAIT, lookup.wait_until_ready())
        .await
        .expect("caches sync")
        .unwrap();
    wait("watches open", || {
        server
            .requests()
            .iter()
            .filter(|r| r.verb == Verb::Watch && r.resource == "secrets")
            .count()
            >= 2
    })
    .await;

    // Re-watches are held back while `a` changes and the history is lost: each namespace
    // relists, and a's deletion is seen only as an absence from its new list.
    server.faults().delay(
        spin_test_apiserver::RequestMatcher::any().verb(Verb::Watch),
        Duration::from_millis(300),
    );
    server.faults().drop_watches();
    server
        .delete(
            &spin_test_apiserver::ResourceKey::of::<Secret>(),
            Some("a"),
            "db",
        )
        .unwrap();
    server.put(secret("a").tap_name("new"));
    server.faults().expire_watch_history();

    wait("a relisted", || {
        lookup.secret("a", "db") == Presence::Absent
            && lookup.secret("a", "new") == Presence::Present
    })
    .await;
    assert_eq!(lookup.secret("b", "db"), Presence::Present);
    assert_eq!(lookup.executor_names("b"), ["shim"]);
    let secret_lists = |ns: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.verb == Verb::List && r.resource == "secrets")
            .filter(|r| r.namespace.as_deref() == Some(ns))
            .count()
    };
    assert!(secret_lists("a") >= 2, "a relisted");
    watches.abort();
    assert_only_watched_namespaces(&server.requests());
}

/// Renames a test object.
trait TapName {
    fn tap_name(self, name: &str) -> Self;
}

impl TapName for Value {
    fn tap_name(mut self, name: &str) -> Self {
        self["metadata"]["name"] = json!(name);
        self
    }
}
