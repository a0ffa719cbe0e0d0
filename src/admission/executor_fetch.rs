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

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::{Api, Client, ResourceExt};
use tokio::sync::Semaphore;

use crate::api::SpinAppExecutor;
use crate::inventory::{Lookup, Presence};

/// Deadline of one fetch (waiting for a slot included): a fraction of the request deadline,
/// so the review is still decided in time when the API server is slow.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// GETs in flight at once, for all executors together.
pub const MAX_CONCURRENT: usize = 4;

pub(super) type Key = (String, String);
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

/// The cache as one review sees it: plus an executor fetched for it (which the watch will
/// deliver shortly), noting the first executor asked for by name and found in neither.
pub(super) struct Reviewing {
    inner: Arc<dyn Lookup>,
    fetched: Option<Arc<SpinAppExecutor>>,
    missed: Mutex<Option<Key>>,
}

impl Reviewing {
    pub(super) fn new(inner: Arc<dyn Lookup>, fetched: Option<Arc<SpinAppExecutor>>) -> Self {
        Reviewing {
            inner,
            fetched,
            missed: Mutex::new(None),
        }
    }

    pub(super) fn missed(&self) -> Option<Key> {
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether an executor was missed so far (the review may be decided again).
    pub(super) fn has_missed(&self) -> bool {
        self.missed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The fetched executor, when it is `namespace/name`.
    fn fetched(&self, namespace: &str, name: &str) -> Option<&SpinAppExecutor> {
        self.fetched.as_deref().filter(|e| {
            e.metadata.namespace.as_deref() == Some(namespace)
                && e.metadata.name.as_deref() == Some(name)
        })
    }

    /// `found` in the cache, else from the fetched executor; a miss of both is noted.
    fn find<T>(
        &self,
        namespace: &str,
        name: &str,
        found: Option<T>,
        of_fetched: impl FnOnce(&SpinAppExecutor) -> T,
    ) -> Option<T> {
        let found = found.or_else(|| self.fetched(namespace, name).map(of_fetched));
        if found.is_none() && !name.is_empty() {
            self.missed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| (namespace.to_string(), name.to_string()));
        }
        found
    }
}

impl Lookup for Reviewing {
    fn executor(&self, namespace: &str, name: &str) -> Option<SpinAppExecutor> {
        let cached = self.inner.executor(namespace, name);
        self.find(namespace, name, cached, Clone::clone)
    }
    fn executor_creates_deployment(&self, namespace: &str, name: &str) -> Option<bool> {
        let cached = self.inner.executor_creates_deployment(namespace, name);
        self.find(namespace, name, cached, |e| e.spec.create_deployment)
    }
    fn executor_names(&self, namespace: &str) -> Vec<String> {
        let mut names = self.inner.executor_names(namespace);
        if let Some(fetched) = self
            .fetched
            .as_deref()
            .filter(|e| e.metadata.namespace.as_deref() == Some(namespace))
        {
            names.push(fetched.name_any());
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
