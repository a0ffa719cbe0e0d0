//! An in-memory, stateful fake of the Kubernetes API server, served over loopback HTTP so tests
//! drive it with the real `kube::Client` (and real `kube::runtime` watchers and controllers).
//!
//! Test support only: a dev-dependency, never part of the shipped binary.
//!
//! ```no_run
//! # async fn demo() {
//! use k8s_openapi::api::apps::v1::Deployment;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer, Verb, wait_for};
//! use std::time::Duration;
//!
//! let server = TestApiServer::start().await;
//! let client = server.client(); // give this to the code under test
//! // Play the Deployment controller:
//! server.set_status(&ResourceKey::of::<Deployment>(), Some("default"), "app",
//!     serde_json::json!({"replicas": 1, "readyReplicas": 1}));
//! // Wait for the code under test to converge, then check it stays quiet:
//! let converged = wait_for(|| server.get(&ResourceKey::of::<ConfigMap>(), None, "x").is_some(),
//!     Duration::from_secs(10)).await;
//! server.clear_requests();
//! // ... let several resyncs pass ...
//! assert_eq!(server.count_writes(), 0, "{:?}", server.writes());
//! // Faults: the next 2 Deployment patches fail with 500; open watches end.
//! server.faults().fail_next(2, 500, RequestMatcher::any().verb(Verb::Patch).resource("deployments"));
//! server.faults().drop_watches();
//! // The watches of executors fall behind: their events wait until released.
//! server.faults().hold_watch_events(RequestMatcher::any().resource("spinappexecutors"));
//! server.faults().release_watch_events();
//! // Fleet-level chaos: 15% of Deployment writes fail, every request waits up to 20ms.
//! server.faults().fail_randomly(RequestMatcher::writes().resource("deployments"), 0.15, 500, 7);
//! server.faults().delay_randomly(RequestMatcher::any(), Duration::from_millis(20), 8);
//! // Several operator replicas: tell their requests apart in the log.
//! let replica_a = server.client_named("pod-a");
//! let by_a = server.requests_matching(&RequestMatcher::writes().client("pod-a"));
//! # }
//! ```
//!
//! # Served API
//! Core `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced, cluster-scoped and
//! all-namespaces list/watch URLs for: SpinApp and SpinAppExecutor (`core.spinkube.dev/v1alpha1`),
//! Deployment, Service, Secret, ConfigMap, Namespace, Lease, Event (`v1` and `events.k8s.io/v1`,
//! stored separately), Mutating/ValidatingWebhookConfiguration; plus `/version` and discovery.
//!
//! # Semantics kept honest
//! - One global, monotonically increasing resourceVersion; lists carry it; no-op writes do not
//!   bump it (and send no watch event).
//! - Watches replay history after the requested version (410 `Expired` as an ERROR event when it
//!   is older than the history window), send synthetic ADDED for version ""/"0", honour
//!   selectors (objects entering/leaving a selector appear as ADDED/DELETED), periodic BOOKMARKs,
//!   `sendInitialEvents` (streaming lists) and `timeoutSeconds`; metadata-only
//!   (`PartialObjectMetadata`) requests work.
//! - create: 201, 409 AlreadyExists, generateName, uid, creationTimestamp, generation 1; status
//!   dropped for types with a status subresource. replace: 409 on stale resourceVersion; custom
//!   resources need a resourceVersion (422). generation bumps on any non-metadata, non-status
//!   change. `/status` changes only status; the main resource never changes status.
//! - patch: JSON patch, merge patch, strategic merge (as merge patch: lists replace), server-side
//!   apply with `managedFields` per manager and 409 conflicts (unless `force`) when another
//!   manager owns a field whose value would change; apply creates missing objects. Preconditions
//!   in a body: `metadata.resourceVersion` is ignored when an apply creates, else must match
//!   (409); `metadata.uid` refuses to create (409 "uid mismatch") and to write another object
//!   (422, `metadata.uid` immutable; a replace answers 409 "Precondition failed"). Non-apply
//!   writes take ownership of the fields they change (manager from `fieldManager`, else the user
//!   agent up to '/').
//! - Defaulting like the apiserver (Deployment, pod template, Service with a stable clusterIP,
//!   Secret `stringData` → `data`, Namespace phase), validation of names, labels, annotations and
//!   data keys (422), decoding of built-ins into their k8s-openapi types (400 on wrong types,
//!   unknown fields pruned) and structural pruning plus schema defaults for our CRDs (from
//!   `crds/`).
//! - delete: finalizers keep the object with deletionTimestamp until the last one is removed;
//!   built-ins answer an immediate delete with a success Status, custom resources with the
//!   object. Garbage collection removes dependents whose owners (by uid) are all gone,
//!   recursively (`Orphan` skips it); deleting a Namespace deletes its objects. `dryRun=All`.
//! - Errors are `Status` objects with reason, code, message and details.
//!
//! # Not modelled
//! Admission webhooks are not called; namespaces need not exist; lists are paginated
//! (`limit`/`continue`) but later pages read the current state, not a snapshot, and
//! `resourceVersionMatch` is ignored (always the latest state); as on the real API server, list
//! items of built-in kinds carry no `apiVersion`/`kind` (custom resources' do); field ownership
//! treats lists as atomic (no merge keys); quantities are not canonicalized; Foreground deletion
//! behaves like Background; no scale subresource. kube's client retries 429/503/504 by itself, so inject 500
//! or 409 to make a failure visible to the caller.

mod crd;
mod defaults;
mod error;
mod faults;
mod http;
mod log;
mod managed;
mod resource;
mod selector;
mod store;
mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use faults::Faults;
pub use log::{RequestMatcher, RequestRecord, Verb};
pub use resource::ResourceKey;

use faults::FaultRules;
use selector::Selectors;
use store::State;

/// State shared by the HTTP handlers and the test-side handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    log: Mutex<Vec<RequestRecord>>,
    faults: Mutex<FaultRules>,
    bookmark_interval: Mutex<Duration>,
    /// Watches matching one of these deliver no event until released (see
    /// [`Faults::hold_watch_events`]); a watch channel, so held streams wake on release.
    held_watches: tokio::sync::watch::Sender<Vec<RequestMatcher>>,
    /// One counter for request arrival and completion (see `RequestRecord::arrival_seq`).
    seq: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge every other request.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultRules> {
        lock(&self.faults)
    }

    pub(crate) fn log_request(&self, r: RequestRecord) {
        lock(&self.log).push(r);
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn bookmark_interval(&self) -> Duration {
        *lock(&self.bookmark_interval)
    }

    pub(crate) fn held_watches(&self) -> &tokio::sync::watch::Sender<Vec<RequestMatcher>> {
        &self.held_watches
    }
}

struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Handle to a running test API server. Cheap to clone; the server stops when the last
/// handle is dropped (or its tokio runtime ends).
#[derive(Clone)]
pub struct TestApiServer {
    shared: Arc<Shared>,
    faults: Faults,
    addr: SocketAddr,
    _task: Arc<ServerTask>,
}

impl TestApiServer {
    /// Binds 127.0.0.1 on a free port and serves plain HTTP.
    ///
    /// # Panics
    /// If no loopback port can be bound (an environment failure, not a test outcome).
    pub async fn start() -> TestApiServer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(FaultRules::default()),
            bookmark_interval: Mutex::new(Duration::from_secs(1)),
            held_watches: tokio::sync::watch::Sender::new(Vec::new()),
            seq: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the test apiserver");
        let addr = listener
            .local_addr()
            .expect("local address of the test apiserver");
        let app = http::router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("test apiserver stopped: {e}");
            }
        });
        TestApiServer {
            faults: Faults {
                shared: shared.clone(),
            },
            shared,
            addr,
            _task: Arc::new(ServerTask(task)),
        }
    }

    /// A real `kube::Client` pointed at this server, default namespace `default`.
    ///
    /// # Panics
    /// If the client cannot be built (only on a broken kube/TLS setup).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("build kube::Client for the test apiserver")
    }

    /// Like [`Self::client`], but every request carries `X-Client-Id: <id>`, recorded as
    /// [`RequestRecord::client`]: tells apart several clients (e.g. operator replicas).
    ///
    /// # Panics
    /// If `id` is not a valid header value (e.g. contains a newline).
    pub fn client_named(&self, id: &str) -> kube::Client {
        let mut config = self.config();
        let value = axum::http::HeaderValue::from_str(id)
            .unwrap_or_else(|e| panic!("client id {id:?} is not a header value: {e}"));
        let name = axum::http::HeaderName::from_static(http::CLIENT_ID_HEADER);
        config.headers.push((name, value));
        kube::Client::try_from(config).expect("build kube::Client for the test apiserver")
    }

    fn config(&self) -> kube::Config {
        let url = self.url().parse().expect("server URL is a valid URI");
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".to_string();
        config
    }

    /// A point in the request sequence: a request that completed before this call has
    /// `completion_seq < mark`, one that arrives after it has `arrival_seq > mark`.
    pub fn mark(&self) -> u64 {
        self.shared.next_seq()
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state().current_rv()
    }

    /// An object as stored, bypassing HTTP. `namespace` is ignored for cluster-scoped resources.
    pub fn get(&self, res: &ResourceKey, namespace: Option<&str>, name: &str) -> Option<Value> {
        let ns = namespace_for(res, namespace);
        self.shared.state().get(res, &ns, name).cloned()
    }

    /// A stored object decoded as `K`.
    pub fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let v = self.get(&ResourceKey::of::<K>(), namespace, name)?;
        serde_json::from_value(v).ok()
    }

    /// All objects of a resource (in one namespace, or everywhere with `None`), sorted by
    /// namespace and name.
    pub fn list(&self, res: &ResourceKey, namespace: Option<&str>) -> Vec<Value> {
        self.shared
            .state()
            .list(res, namespace, &Selectors::default())
    }

    /// How many objects of a resource (in one namespace, or everywhere with `None`) satisfy
    /// `pred`, without copying them (for polling large stores).
    pub fn count_where(
        &self,
        res: &ResourceKey,
        namespace: Option<&str>,
        pred: impl Fn(&Value) -> bool,
    ) -> usize {
        self.shared
            .state()
            .objects_of(res, namespace)
            .filter(|o| pred(o))
            .count()
    }

    /// Creates or replaces an object (status included, no optimistic locking), bumping its
    /// resourceVersion like any write. Namespaced objects without a namespace go to `default`.
    ///
    /// # Panics
    /// On an unknown `apiVersion`/`kind` or an invalid object; use [`Self::try_put`] to handle that.
    pub fn put(&self, obj: Value) -> Value {
        self.try_put(obj)
            .unwrap_or_else(|e| panic!("TestApiServer::put: {e}"))
    }

    pub fn try_put(&self, obj: Value) -> Result<Value, ApiError> {
        self.shared.state().put(obj)
    }

    /// Replaces the status of an object, like a controller writing `/status` (e.g. play the
    /// Deployment controller by setting `readyReplicas`).
    ///
    /// # Panics
    /// When the object does not exist; use [`Self::try_set_status`] to handle that.
    pub fn set_status(
        &self,
        res: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> Value {
        self.try_set_status(res, namespace, name, status)
            .unwrap_or_else(|e| panic!("TestApiServer::set_status: {e}"))
    }

    pub fn try_set_status(
        &self,
        res: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let ns = namespace_for(res, namespace);
        self.shared.state().set_status(res, &ns, name, status)
    }

    /// Deletes an object like a client would (finalizers respected, dependents collected).
    pub fn delete(
        &self,
        res: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let ns = namespace_for(res, namespace);
        let rt = resource::lookup_key(res).ok_or_else(|| ApiError::not_found(res, name))?;
        self.shared
            .state()
            .delete(rt, &ns, name, &store::DeleteOpts::default())
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Requests matching `matcher`.
    pub fn requests_matching(&self, matcher: &RequestMatcher) -> Vec<RequestRecord> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| matcher.matches(r))
            .cloned()
            .collect()
    }

    /// create/update/patch/delete/deletecollection requests (including failed ones).
    pub fn writes(&self) -> Vec<RequestRecord> {
        self.requests_matching(&RequestMatcher::writes())
    }

    pub fn count_writes(&self) -> usize {
        self.writes().len()
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// How often open watches with `allowWatchBookmarks=true` get a BOOKMARK (default 1s).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        *lock(&self.shared.bookmark_interval) = interval;
    }
}

fn namespace_for(res: &ResourceKey, namespace: Option<&str>) -> String {
    match resource::lookup_key(res) {
        Some(rt) if !rt.namespaced => String::new(),
        _ => namespace.unwrap_or("default").to_string(),
    }
}

impl TestApiServer {
    /// Waits until the object exists and satisfies `condition`; returns it, or `None` on timeout.
    pub async fn wait_for_object<F: FnMut(&Value) -> bool>(
        &self,
        res: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        mut condition: F,
        timeout: Duration,
    ) -> Option<Value> {
        let mut found = None;
        let ok = wait_for(
            || {
                found = self.get(res, namespace, name).filter(|o| condition(o));
                found.is_some()
            },
            timeout,
        )
        .await;
        if ok { found } else { None }
    }
}

/// Polls `condition` every 10ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_for<F: FnMut() -> bool>(mut condition: F, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_for`] with an async condition.
pub async fn wait_for_async<F, Fut>(mut condition: F, timeout: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
