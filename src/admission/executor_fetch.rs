//! One GET for an executor the watch has not delivered yet.
//!
//! `kubectl apply -f dir/` creates an executor and then, milliseconds later, an app naming it;
//! the webhooks' executor watch may not have delivered the executor by then, and the app would
//! be denied "executor not found". So when a SpinApp review misses an executor in the cache —
//! and only then: a review answered from the cache makes no API call — the executor is fetched
//! once and the review decided again with it.
//!
//! A flood of misses (apps naming an executor that does not exist) must not become a flood of
//! GETs: concurrent misses of the same executor share one GET, at most [`MAX_CONCURRENT`] GETs
//! run at a time (a miss that cannot get a slot within the deadline is answered from the cache),
//! and each GET is bounded by [`FETCH_TIMEOUT`], well under the webhooks' deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::Response;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Semaphore;

use super::handler::{AdmissionState, handle};
use super::routes::{Route, WebhookResource};
use crate::api::SpinAppExecutor;
use crate::inventory::{Lookup, Presence};

/// Deadline of one fetch (waiting for a slot included): a fraction of the request deadline,
/// so the review is still decided in time when the API server is slow.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// GETs in flight at once, for all executors together.
pub const MAX_CONCURRENT: usize = 4;

type Key = (String, String);
type Fetch = Shared<BoxFuture<'static, Option<Arc<SpinAppExecutor>>>>;

/// Fetches executors by name for reviews that missed them in the cache. Cheap to clone.
#[derive(Clone)]
pub struct ExecutorFetch {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    timeout: Duration,
    slots: Semaphore,
    /// GETs in flight by executor, shared by the reviews waiting for them.
    in_flight: Mutex<HashMap<Key, Fetch>>,
    /// Reviews waiting for a fetch now.
    waiting: AtomicUsize,
}

/// Counts a waiting review while alive (also when the review is dropped mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ExecutorFetch {
    /// Fetches with `client`, each fetch bounded by [`FETCH_TIMEOUT`].
    pub fn new(client: Client) -> Self {
        Self::with_limits(client, FETCH_TIMEOUT, MAX_CONCURRENT)
    }

    /// Fetches with `client`, each fetch bounded by `timeout`, at most `concurrent` at a time.
    pub fn with_limits(client: Client, timeout: Duration, concurrent: usize) -> Self {
        ExecutorFetch {
            inner: Arc::new(Inner {
                client,
                timeout,
                slots: Semaphore::new(concurrent),
                in_flight: Mutex::default(),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The executor `namespace/name` as the API server has it now; `None` when it does not
    /// exist, or the fetch failed or ran out of time (the review is then answered from the
    /// cache, as without a fetch).
    pub async fn get(&self, namespace: &str, name: &str) -> Option<Arc<SpinAppExecutor>> {
        let key = (namespace.to_string(), name.to_string());
        let fetch = {
            let mut in_flight = self.lock();
            match in_flight.get(&key) {
                Some(fetch) => fetch.clone(),
                None => {
                    // Spawned, so a review that gives up (its client went away) does not
                    // cancel the GET others wait for; the task removes its entry when done
                    // (after this insert: it needs the lock held here).
                    let task = tokio::spawn(self.clone().fetch(key.clone()));
                    let fetch = async move { task.await.ok().flatten() }.boxed().shared();
                    in_flight.insert(key, fetch.clone());
                    fetch
                }
            }
        };
        let _waiting = Waiting::new(&self.inner.waiting);
        fetch.await
    }

    /// Reviews waiting for a fetch at this moment (tests observe coalescing with it).
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Fetch>> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(self, key: Key) -> Option<Arc<SpinAppExecutor>> {
        let (namespace, name) = &key;
        let found = tokio::time::timeout(self.inner.timeout, async {
            let _slot = self.inner.slots.acquire().await.ok()?;
            let api: Api<SpinAppExecutor> = Api::namespaced(self.inner.client.clone(), namespace);
            match api.get_opt(name).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(%namespace, executor = %name, %error, "fetching an executor the cache lacks failed");
                    None
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            tracing::warn!(%namespace, executor = %name, timeout = ?self.inner.timeout, "fetching an executor the cache lacks timed out");
            None
        });
        self.lock().remove(&key);
        found.map(|mut executor| {
            executor.managed_fields_mut().clear();
            executor.annotations_mut().clear();
            Arc::new(executor)
        })
    }
}

/// Decides a review; a SpinApp review that missed its executor in the cache is decided again
/// with the executor fetched (when it exists).
pub(crate) async fn handle_fetching(
    state: &AdmissionState,
    route: &'static Route,
    body: &[u8],
) -> Response {
    let Some(fetch) = state
        .executor_fetch
        .as_ref()
        .filter(|_| route.resource == WebhookResource::SpinApps)
    else {
        return handle(state, route, body);
    };
    let recording = Arc::new(Recording {
        inner: state.lookup.clone(),
        missed: Mutex::new(None),
    });
    let first = AdmissionState {
        lookup: recording.clone(),
        ..state.clone()
    };
    let response = handle(&first, route, body);
    let missed = recording
        .missed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some((namespace, name)) = missed else {
        return response;
    };
    let Some(executor) = fetch.get(&namespace, &name).await else {
        return response;
    };
    tracing::debug!(%namespace, executor = %name, "executor fetched for a review; deciding again");
    let again = AdmissionState {
        lookup: Arc::new(WithExecutor {
            inner: state.lookup.clone(),
            executor,
        }),
        ..state.clone()
    };
    handle(&again, route, body)
}

/// The cache, noting the first executor asked for by name and not found.
struct Recording {
    inner: Arc<dyn Lookup>,
    missed: Mutex<Option<Key>>,
}

impl Recording {
    fn note<T>(&self, namespace: &str, name: &str, found: Option<T>) -> Option<T> {
        if found.is_none() && !name.is_empty() {
            self.missed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| (namespace.to_string(), name.to_string()));
        }
        found
    }
}

impl Lookup for Recording {
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor> {
        self.note(namespace, name, self.inner.executor(namespace, name))
    }
    fn executor_creates_deployment(&self, namespace: &str, name: &str) -> Option<bool> {
        let found = self.inner.executor_creates_deployment(namespace, name);
        self.note(namespace, name, found)
    }
    fn executor_names(&self, namespace: &str) -> Vec<String> {
        self.inner.executor_names(namespace)
    }
    fn apps_using_executor(&self, namespace: &str, executor: &str) -> Vec<String> {
        self.inner.apps_using_executor(namespace, executor)
    }
    fn secret(&self, namespace: &str, name: &str) -> Presence {
        self.inner.secret(namespace, name)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Presence {
        self.inner.config_map(namespace, name)
    }
}

/// The cache plus one fetched executor (which the watch will deliver shortly).
struct WithExecutor {
    inner: Arc<dyn Lookup>,
    executor: Arc<SpinAppExecutor>,
}

impl WithExecutor {
    fn is(&self, namespace: &str, name: &str) -> bool {
        self.executor.metadata.namespace.as_deref() == Some(namespace)
            && self.executor.metadata.name.as_deref() == Some(name)
    }
}

impl Lookup for WithExecutor {
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor> {
        self.inner
            .executor(namespace, name)
            .or_else(|| self.is(namespace, name).then(|| (*self.executor).clone()))
    }
    fn executor_creates_deployment(&self, namespace: &str, name: &str) -> Option<bool> {
        self.inner
            .executor_creates_deployment(namespace, name)
            .or_else(|| {
                self.is(namespace, name)
                    .then_some(self.executor.spec.create_deployment)
            })
    }
    fn executor_names(&self, namespace: &str) -> Vec<String> {
        let mut names = self.inner.executor_names(namespace);
        if self.executor.metadata.namespace.as_deref() == Some(namespace) {
            names.push(self.executor.name_any());
            names.sort();
            names.dedup();
        }
        names
    }
    fn apps_using_executor(&self, namespace: &str, executor: &str) -> Vec<String> {
        self.inner.apps_using_executor(namespace, executor)
    }
    fn secret(&self, namespace: &str, name: &str) -> Presence {
        self.inner.secret(namespace, name)
    }
    fn config_map(&self, namespace: &str, name: &str) -> Presence {
        self.inner.config_map(namespace, name)
    }
}
