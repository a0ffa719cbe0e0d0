//! An executor the webhook cache has not received yet (`kubectl apply -f dir/` with the executor
//! and its app) is fetched once on a miss: the app is admitted. Misses share GETs per executor
//! and a bounded number run at once; hits make no call; only the decision that answers a review
//! is logged and counted. The fake API server holds its answers behind a gate the test opens,
//! and the in-memory API server holds the executors' watch events until the test releases
//! them, so nothing here depends on timing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use kube::api::PostParams;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use spin_operator::admission::audit::AuditLog;
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::admission::executor_fetch::ExecutorFetch;
use spin_operator::admission::{AdmissionMetrics, AdmissionState, router};
use spin_operator::api::SpinAppExecutor;
use spin_operator::inventory::{Inventory, Lookup};
use spin_operator::rules::Options;
use spin_test_apiserver::{RequestMatcher, TestApiServer, Verb, wait_for};
use tokio::sync::watch;

mod admission_fake_api;
#[path = "support/logs.rs"]
mod support_logs;
use support_logs::Logs;

const WAIT: Duration = Duration::from_secs(30);

/// The fake API server's log and gate.
#[derive(Clone)]
struct Api {
    /// GETs by path.
    gets: Arc<Mutex<BTreeMap<String, usize>>>,
    /// GETs being answered now, and the most at once.
    in_flight: Arc<Mutex<(usize, usize)>>,
    /// Answers wait until this is true.
    open: watch::Sender<bool>,
}

impl Api {
    fn new(open: bool) -> Self {
        Api {
            gets: Arc::default(),
            in_flight: Arc::default(),
            open: watch::channel(open).0,
        }
    }

    fn total_gets(&self) -> usize {
        self.gets.lock().unwrap().values().sum()
    }

    fn in_flight(&self) -> (usize, usize) {
        *self.in_flight.lock().unwrap()
    }

    /// Executor `late` exists in namespace `apps`; every other name is 404.
    fn router(&self) -> axum::Router {
        let api = self.clone();
        axum::Router::new().fallback(move |req: Request<Body>| {
            let api = api.clone();
            async move {
                let path = req.uri().path().to_string();
                *api.gets.lock().unwrap().entry(path.clone()).or_default() += 1;
                {
                    let mut f = api.in_flight.lock().unwrap();
                    f.0 += 1;
                    f.1 = f.1.max(f.0);
                }
                let _ = api.open.subscribe().wait_for(|open| *open).await;
                api.in_flight.lock().unwrap().0 -= 1;
                if path == "/apis/core.spinkube.dev/v1alpha1/namespaces/apps/spinappexecutors/late"
                {
                    return Response::new(Body::from(executor("late").to_string()));
                }
                let mut r = Response::new(Body::from(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"})
                    .to_string(),
                ));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        })
    }
}

fn executor(name: &str) -> Value {
    executor_in("apps", name)
}

fn executor_in(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}},
    })
}

/// A validating review of app `name` naming `executor`.
fn review(name: &str, executor: &str) -> Value {
    review_in("apps", name, executor)
}

/// A validating review of app `namespace/name` naming `executor`.
fn review_in(namespace: &str, name: &str, executor: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{name}"),
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
            "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
            "name": name, "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"image": "ghcr.io/example/web:v1", "executor": executor, "replicas": 1},
            },
        }
    })
}

/// The production router over a cache holding `cached` executors, fetching with `fetch`.
fn webhook(cached: &[&str], fetch: &ExecutorFetch) -> axum::Router {
    let mut inventory = Inventory::default();
    for name in cached {
        inventory.add_executor(serde_json::from_value::<SpinAppExecutor>(executor(name)).unwrap());
    }
    router(
        AdmissionState::new(
            Arc::new(inventory),
            Options::default(),
            AdmissionMetrics::default(),
        )
        .with_executor_fetch(fetch.clone()),
    )
}

fn fetcher(api: &Api, timeout: Duration, concurrent: usize) -> ExecutorFetch {
    let client = kube::Client::new(api.router(), "default");
    ExecutorFetch::with_limits(client, timeout, concurrent)
}

async fn admit(app: &axum::Router, review: &Value) -> Value {
    admission_fake_api::admit(app, "/validate-core-spinkube-dev-v1alpha1-spinapp", review).await
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_miss_fetches_the_executor_once_and_admits_and_a_hit_calls_nothing() {
    let api = Api::new(true);
    let fetch = fetcher(&api, Duration::from_secs(10), 4);
    let app = webhook(&["cached"], &fetch);

    // In the cache: decided without any call.
    let r = admit(&app, &review("a", "cached")).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(api.total_gets(), 0);

    // Created a moment ago, not in the cache yet: one GET, admitted.
    let r = admit(&app, &review("b", "late")).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        *api.gets.lock().unwrap(),
        BTreeMap::from([(
            "/apis/core.spinkube.dev/v1alpha1/namespaces/apps/spinappexecutors/late".to_string(),
            1
        )])
    );

    // Missing everywhere: denied as before, after one GET.
    let r = admit(&app, &review("c", "ghost")).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(r["status"]["message"].to_string().contains("ghost"), "{r}");
    assert_eq!(api.total_gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_executor_share_one_get() {
    let api = Api::new(false);
    let fetch = fetcher(&api, Duration::from_secs(20), 4);
    let app = webhook(&[], &fetch);
    let reviews: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { admit(&app, &review(&format!("app-{i}"), "ghost")).await })
        })
        .collect();
    wait("all 50 reviews wait on the fetch", || fetch.waiting() == 50).await;
    assert_eq!(api.total_gets(), 1);
    api.open.send_replace(true);
    for r in reviews {
        assert_eq!(r.await.unwrap()["allowed"], false);
    }
    assert_eq!(api.total_gets(), 1, "{:?}", api.gets.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_of_many_executors_run_a_bounded_number_of_gets() {
    let api = Api::new(false);
    let fetch = fetcher(&api, Duration::from_secs(20), 4);
    let app = webhook(&[], &fetch);
    let reviews: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                admit(&app, &review(&format!("app-{i}"), &format!("ghost-{i}"))).await
            })
        })
        .collect();
    wait("20 reviews waiting, 4 GETs at the API", || {
        fetch.waiting() == 20 && api.in_flight().0 == 4
    })
    .await;
    api.open.send_replace(true);
    for r in reviews {
        assert_eq!(r.await.unwrap()["allowed"], false);
    }
    assert_eq!(api.in_flight().1, 4, "at most 4 GETs at once");
    assert_eq!(api.total_gets(), 20, "each missing executor fetched once");
}

#[tokio::test]
async fn a_fetch_that_outlives_its_deadline_answers_from_the_cache() {
    // The API never answers: the review is still decided (denied), not left to the webhook's
    // own timeout.
    let api = Api::new(false);
    let fetch = fetcher(&api, Duration::from_millis(200), 4);
    let app = webhook(&[], &fetch);
    let r = tokio::time::timeout(WAIT, admit(&app, &review("a", "late")))
        .await
        .expect("answered");
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(api.total_gets(), 1);
}

fn metrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[tokio::test(flavor = "current_thread")]
async fn only_the_decision_that_answers_a_review_is_logged_and_counted() {
    // Thread-local: the reviews, the fetch task and the held effects all run on this thread,
    // and the audit lines are written in place (the writer thread would log to the global
    // subscriber, which this capture does not see).
    let (logs, _guard) = Logs::capture();
    let api = Api::new(true);
    let fetch = fetcher(&api, Duration::from_secs(10), 4);
    let mut registry = Registry::default();
    let app = router(
        AdmissionState::new(
            Arc::new(Inventory::default()),
            Options::default(),
            AdmissionMetrics::register(&mut registry),
        )
        .with_audit(AuditLog::in_place(Counter::default()))
        .with_executor_fetch(fetch),
    );

    // Missed, fetched, decided again: admitted, and only that decision is audited and counted
    // (the first one, from the cache alone, was a denial).
    let r = admit(&app, &review("b", "late")).await;
    assert_eq!(r["allowed"], true, "{r}");
    let audit = logs.lines_with(&["admission decision", "uid=uid-b"]);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(audit[0].contains("allowed=true"), "{audit:#?}");
    let text = metrics_text(&registry);
    for series in [
        r#"spin_operator_admission_requests_total{webhook="vspinapp.kb.io",outcome="allowed"} 1"#,
        r#"spin_operator_admission_requests_total{webhook="vspinapp.kb.io",outcome="denied"} 0"#,
        r#"spin_operator_admission_duration_seconds_count{webhook="vspinapp.kb.io"} 1"#,
    ] {
        assert!(text.contains(series), "{series} missing in {text}");
    }
    assert!(!text.contains("SA-EXECUTOR-EXISTS"), "{text}");

    // Missed and not found either: the first decision is the answer, audited and counted once.
    let r = admit(&app, &review("c", "ghost")).await;
    assert_eq!(r["allowed"], false, "{r}");
    let audit = logs.lines_with(&["admission decision", "uid=uid-c"]);
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(
        audit[0].contains("allowed=false") && audit[0].contains("SA-EXECUTOR-EXISTS"),
        "{audit:#?}"
    );
    assert!(
        audit[0].contains(r#"claimed_user="alice""#) && audit[0].contains(r#"name="c""#),
        "{audit:#?}"
    );
    let text = metrics_text(&registry);
    for series in [
        r#"spin_operator_admission_requests_total{webhook="vspinapp.kb.io",outcome="allowed"} 1"#,
        r#"spin_operator_admission_requests_total{webhook="vspinapp.kb.io",outcome="denied"} 1"#,
        r#"spin_operator_admission_rule_hits_total{webhook="vspinapp.kb.io",rule="SA-EXECUTOR-EXISTS"} 1"#,
        r#"spin_operator_admission_duration_seconds_count{webhook="vspinapp.kb.io"} 2"#,
    ] {
        assert!(text.contains(series), "{series} missing in {text}");
    }
    assert_eq!(api.total_gets(), 2);
}

/// How many of `namespaces`' apps naming executor `exec` `app` denies.
async fn denials(app: &axum::Router, namespaces: &[String]) -> Vec<String> {
    let mut denied = Vec::new();
    for ns in namespaces {
        let r = admit(app, &review_in(ns, "web", "exec")).await;
        if r["allowed"] != true {
            denied.push(format!("{ns}: {}", r["status"]["message"]));
        }
    }
    denied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_created_while_the_watch_lags_are_admitted_by_fetching_them() {
    // The webhooks' caches over the in-memory API server, as `run` builds them.
    let server = TestApiServer::start().await;
    let (lookup, writers) = cache::stores(CacheConfig::default());
    let watches = tokio::spawn(writers.run(server.client()));
    lookup.wait_until_ready().await.unwrap();
    let executor_watch = RequestMatcher::any()
        .verb(Verb::Watch)
        .resource("spinappexecutors");
    assert!(
        wait_for(
            || !server.requests_matching(&executor_watch).is_empty(),
            WAIT
        )
        .await
    );
    let state = AdmissionState::new(
        cache::shared(lookup.clone()),
        Options::default(),
        AdmissionMetrics::default(),
    );
    let cache_only = router(state.clone());
    let fetching = router(state.with_executor_fetch(ExecutorFetch::new(server.client())));

    // `kubectl apply -f dir/` in 20 namespaces: each executor is created, and its app reviewed
    // right after, while the executors' watch lags (held) behind the writes.
    server.faults().hold_watch_events(executor_watch);
    let namespaces: Vec<String> = (0..20).map(|i| format!("together-{i}")).collect();
    for ns in &namespaces {
        let created: SpinAppExecutor = serde_json::from_value(executor_in(ns, "exec")).unwrap();
        kube::Api::<SpinAppExecutor>::namespaced(server.client(), ns)
            .create(&PostParams::default(), &created)
            .await
            .unwrap();
    }
    // Without the fetch, every app is denied "executor not found"; with it, none is, at one
    // GET per miss.
    let gets = RequestMatcher::any()
        .verb(Verb::Get)
        .resource("spinappexecutors");
    assert_eq!(
        denials(&cache_only, &namespaces).await.len(),
        namespaces.len()
    );
    assert_eq!(server.requests_matching(&gets).len(), 0);
    assert_eq!(denials(&fetching, &namespaces).await, Vec::<String>::new());
    assert_eq!(server.requests_matching(&gets).len(), namespaces.len());

    // Once the watch has caught up, the same reviews hit the cache: no API call at all.
    server.faults().release_watch_events();
    let caught_up = || {
        namespaces
            .iter()
            .all(|ns| lookup.executor(ns, "exec").is_some())
    };
    assert!(wait_for(caught_up, WAIT).await, "the watch delivered");
    server.clear_requests();
    assert_eq!(denials(&fetching, &namespaces).await, Vec::<String>::new());
    let calls: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.verb != Verb::Watch)
        .map(|r| format!("{} {}", r.verb.as_str(), r.resource))
        .collect();
    assert_eq!(calls, Vec::<String>::new());
    watches.abort();
}
