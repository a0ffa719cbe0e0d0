//! An executor the webhook cache has not received yet (`kubectl apply -f dir/` with the executor
//! and its app) is fetched once on a miss: the app is admitted. Misses share GETs per executor
//! and a bounded number run at once; hits make no call. The fake API server holds its answers
//! behind a gate the test opens, so nothing here depends on timing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use spin_operator::admission::executor_fetch::ExecutorFetch;
use spin_operator::admission::{AdmissionMetrics, AdmissionState, router};
use spin_operator::api::SpinAppExecutor;
use spin_operator::inventory::Inventory;
use spin_operator::rules::Options;
use tokio::sync::watch;

mod admission_fake_api;

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
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
        "metadata": {"name": name, "namespace": "apps", "resourceVersion": "1"},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}},
    })
}

/// A validating review of app `name` naming `executor`.
fn review(name: &str, executor: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{name}"),
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
            "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
            "name": name, "namespace": "apps", "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
                "metadata": {"name": name, "namespace": "apps"},
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
